"""The audit log (SPEC: every change leaves an entry): each action the functions write, with the
request that made it, and each entry's expiry, which Firestore's TTL policy on `expire_at`
carries out (terraform/firestore.tf)."""

from __future__ import annotations

import ast
import datetime
import io
import os
import re

from tests.conftest import OWNER, ROOT

READER = "reader@example.com"
AT = "x=1&y=2&z=3"
CODE = "def f(context, n: int = 0):\n    return n\n"

# Every action an audit entry can name: (action, target_type). The last test checks this list
# against the sources, so an action added without a test here fails.
ACTIONS = {
    "dataset_create": "dataset",
    "dataset_replace": "dataset",
    "dataset_update": "dataset",
    "finalize": "dataset",
    "dataset_delete": "dataset",
    "attachment_upload": "attachment",
    "attachment_delete": "attachment",
    "user_create": "user",
    "user_update": "user",
    "user_delete": "user",
    "key_issue": "api_key",
    "key_revoke": "api_key",
    "token_issue": "api_key",  # a clio token (POST /v2/server/token) is kept as a key record
    "annotation_v1_put": "annotation_v1",
    "annotation_v1_delete": "annotation_v1",
    "saved_search_put": "saved_search",
    "saved_search_delete": "saved_search",
    "annotations_write": "annotation",
    "annotation_delete": "annotation",
    "atlas_create": "atlas",
    "atlas_update": "atlas",
    "verify": "atlas",
    "atlas_delete": "atlas",
    "twin_create": "twin",
    "twin_update": "twin",
    "twin_delete": "twin",
    "twin_request_submit": "twin_request",
    "twin_request_approve": "twin_request",
    "twin_request_deny": "twin_request",
    "twin_request_run": "twin_request",
    "kv_put": "kv",
    "kv_delete": "kv",
    "pull_request_submit": "pull_request",
    "body_annotations_write": "body_annotation",
    "body_annotation_delete": "body_annotation",
}


def _entries(response) -> list[dict]:
    """The audit entries written by the request that answered `response`."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from common import audit
    from common.storage import store

    request_id = response.headers["X-Request-Id"]
    entries = store.collection(audit.COLLECTION).where(filter=FieldFilter("request_id", "==", request_id))
    return [s.to_dict() for s in entries.stream()]


def _actions(api, dvid_service) -> dict[str, tuple]:
    """Each action done once through the HTTP API: action -> (response, caller, dataset)."""
    done: dict[str, tuple] = {}

    def do(action, method, path, user=OWNER, dataset=None, ok=(200, 201, 204), **kw):
        r = api.call(method, path, user=user, **kw)
        assert r.status_code in ok, (action, r.status_code, r.get_data(as_text=True))
        done[action] = (r, user, dataset)
        return r

    do("user_create", "POST", "/users", json={READER: {"datasets": {"d1": ["clio_write"]}}})
    do("user_update", "POST", "/users", json={READER: {"datasets": {"d1": ["clio_write"]}, "name": "R"}})
    do("dataset_create", "POST", "/datasets", json={"d1": {"description": "one"}}, dataset="d1")
    do("dataset_replace", "POST", "/datasets", json={"d1": {"description": "two"}}, dataset="d1")
    do("dataset_update", "PUT", "/datasets/d1", json={"description": "three"}, dataset="d1")
    upload = {"name": "notes.txt", "attachment": (io.BytesIO(b"hello"), "notes.txt")}
    do("attachment_upload", "POST", "/datasets/d1/attachments", data=upload, dataset="d1",
       content_type="multipart/form-data")  # fmt: skip
    do("attachment_delete", "DELETE", "/datasets/d1/attachments/notes.txt", dataset="d1")
    key = do("key_issue", "POST", "/users/me/keys", user=READER, json={"name": "k"}).get_json()["id"]
    do("key_revoke", "DELETE", f"/users/me/keys/{key}", user=READER)
    do("annotation_v1_put", "POST", f"/annotations/d1?{AT}", user=READER, json={"n": 1}, dataset="d1")
    do("annotation_v1_delete", "DELETE", f"/annotations/d1?{AT}", user=READER, dataset="d1")
    do("saved_search_put", "POST", f"/savedsearches/d1?{AT}", user=READER, json={"q": 1}, dataset="d1")
    do("saved_search_delete", "DELETE", f"/savedsearches/d1?{AT}", user=READER, dataset="d1")
    point = {"kind": "point", "pos": [1, 2, 3]}
    do("annotations_write", "POST", "/annotations/v2/d1", user=READER, json=point, dataset="d1")
    do("annotation_delete", "DELETE", "/annotations/v2/d1/Pt1_2_3", user=READER, dataset="d1")
    do("atlas_create", "POST", f"/atlas/d1?{AT}", user=READER, json={"title": "t"}, dataset="d1")
    entry = do("atlas_update", "POST", f"/atlas/d1?{AT}", user=READER, json={"title": "u"}, dataset="d1")
    do("verify", "POST", f"/atlas/verify/{entry.get_json()['id']}", dataset="d1")
    do("atlas_delete", "DELETE", f"/atlas/d1?{AT}", user=READER, dataset="d1")
    twin = {
        "path": "t.one",
        "description": "d",
        "dataset": "d1",
        "mock": {"code": CODE},
        "private": {"code": CODE},
    }
    do("twin_create", "POST", "/twins", json=twin, dataset="d1")
    do("twin_update", "PATCH", "/twins/t.one", json={"description": "new"})
    request = {"endpoints": {"t": "t.one"}, "code": "def f(t):\n    return t(n=1)\n"}
    denied = do("twin_request_submit", "POST", "/twins/requests", user=READER, json=request).get_json()["id"]
    do("twin_request_deny", "POST", f"/twins/requests/{denied}/deny")
    approved = api.post("/twins/requests", user=READER, json=request).get_json()["id"]
    do("twin_request_approve", "POST", f"/twins/requests/{approved}/approve")
    do("twin_request_run", "POST", f"/twins/requests/{approved}/run", user=READER)
    do("twin_delete", "DELETE", "/twins/t.one")
    do("token_issue", "POST", "/v2/server/token", user=READER)
    do("kv_put", "POST", "/v2/kv/merges-d1/mainToOthers", user=READER, json={"1": [2]})
    do(
        "pull_request_submit",
        "POST",
        "/v2/pull-request",
        user=READER,
        json={"pull": "kv/merges-d1/mainToOthers"},
    )
    do("kv_delete", "DELETE", "/v2/kv/merges-d1/mainToOthers", user=READER)
    # body annotations, kept by DVID (a stand-in's node n1)
    dvid_service.add_node("n1")
    assert (
        api.put("/datasets/d1", user=OWNER, json={"dvid": dvid_service.url, "uuid": "n1"}).status_code == 200
    )
    neurons = "/v2/json-annotations/d1/neurons"
    do("body_annotations_write", "POST", neurons, user=READER, json=[{"bodyid": 7}], dataset="d1")
    do("body_annotation_delete", "DELETE", f"{neurons}/id-number/7", user=READER, dataset="d1")
    do("finalize", "POST", "/datasets/d1/finalize", dataset="d1")
    do("user_delete", "DELETE", "/users", json=[READER])
    do("dataset_delete", "DELETE", "/datasets", json=["d1"], dataset="d1")
    return done


def test_every_audit_action_is_written_with_its_request_and_its_expiry(api, dvid_service):
    """Each action leaves exactly one entry of its name in the request that did it: by the
    caller, of the right target type, about the dataset when there is one, and set to expire
    AUDIT_RETENTION_DAYS after it was written (Firestore's TTL policy deletes it then)."""
    from common.config import settings

    retention = datetime.timedelta(days=settings().audit_retention_days)
    assert retention == datetime.timedelta(days=int(os.environ.get("AUDIT_RETENTION_DAYS", "400")))
    done = _actions(api, dvid_service)
    assert set(done) == set(ACTIONS)
    for action, (response, caller, dataset) in done.items():
        entries = [e for e in _entries(response) if e["action"] == action]
        assert len(entries) == 1, (action, _entries(response))
        entry = entries[0]
        assert entry["actor"] == caller and entry["target_type"] == ACTIONS[action], (action, entry)
        assert entry["target_id"], action
        if dataset is not None:
            assert entry["dataset"] == dataset, (action, entry)
        assert entry["expire_at"] == entry["at"] + retention, (action, entry)
        assert entry["at"] <= datetime.datetime.now(datetime.UTC), action


def test_audit_retention_is_configurable(api, monkeypatch):
    """AUDIT_RETENTION_DAYS sets how long an entry is kept (the TTL deletes it at expire_at)."""
    from common import audit, config

    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "7")
    monkeypatch.setattr(audit, "settings", config.load)  # the cached settings are left alone
    r = api.post("/datasets", user=OWNER, json={"d7": {"description": "seven days"}})
    assert r.status_code == 200
    (entry,) = _entries(r)
    assert entry["expire_at"] - entry["at"] == datetime.timedelta(days=7)


def test_the_ttl_policy_deletes_audit_entries_at_expire_at():
    """The deletion itself is Firestore's: a TTL policy on the audit collection's `expire_at`."""
    with open(os.path.join(ROOT, "terraform", "firestore.tf")) as f:
        tf = f.read()
    policy = tf[tf.index('resource "google_firestore_field" "ttl"') :]
    policy = policy[: policy.index("\n}\n")]
    assert 'field      = "expire_at"' in policy and "ttl_config {}" in policy
    assert re.search(r'collection\s*=\s*(each\.(key|value)|"audit")', policy), policy
    assert '"audit"' in tf


def _strings(node, assigned) -> set[str]:
    """The action names an argument can be: a literal, either side of `a if c else b`, or what a
    variable of that name is assigned in the module."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body, assigned) | _strings(node.orelse, assigned)
    if isinstance(node, ast.Name):
        return {s for value in assigned.get(node.id, []) for s in _strings(value, assigned)}
    return set()


def _written_actions() -> set[str]:
    """Every action name the sources can write, read from the code (ast): the action argument of
    audit.record / audit.write / _change_dataset, the `action=` of audit.delete_existing and
    other helpers, and the `<kind>_put` / `<kind>_delete` of each LocationStore."""
    written = set()
    positions = {"record": 2, "write": 1, "entry_write": 1, "_change_dataset": 2}
    for base in ("common", "functions"):
        for folder, _, files in os.walk(os.path.join(ROOT, base)):
            for name in (n for n in files if n.endswith(".py")):
                with open(os.path.join(folder, name)) as f:
                    tree = ast.parse(f.read())
                assigned: dict[str, list] = {}
                for node in ast.walk(tree):
                    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                        assigned.setdefault(node.targets[0].id, []).append(node.value)
                for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
                    func = call.func
                    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    audit_call = isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "audit"
                    at = positions.get(called)
                    if at is not None and (audit_call or called == "_change_dataset") and len(call.args) > at:
                        written |= _strings(call.args[at], assigned)
                    for keyword in call.keywords:
                        if keyword.arg == "action":
                            written |= _strings(keyword.value, assigned)
                    if called == "LocationStore":
                        kind = call.args[2].value
                        written |= {f"{kind}_put", f"{kind}_delete"}
    return written


def test_every_action_in_the_sources_is_in_the_list():
    """The ACTIONS above (each done and checked by the first test) are exactly the actions the
    code can write: a new action without a test fails this."""
    written = _written_actions()
    assert written == set(ACTIONS), (sorted(written - set(ACTIONS)), sorted(set(ACTIONS) - written))
