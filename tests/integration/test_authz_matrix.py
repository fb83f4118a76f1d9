"""Every route, allowed and refused, for each kind of caller (SPEC §2)."""

import io
import time

import pytest

from tests.conftest import OWNER
from tests.utils import app_functions, assert_request_logged_without_secrets, load_function

PRIV, PUB = "priv", "pub"
PERSONAS = {
    "owner": (OWNER, None),  # the OWNER env var: admin without a user record
    "admin": ("admin@example.com", {"global_roles": ["admin"]}),
    "ds_admin": ("dsadmin@example.com", {"datasets": {PRIV: ["dataset_admin"]}}),
    "global_ds_admin": ("gdsadmin@example.com", {"global_roles": ["dataset_admin"]}),
    "writer": ("writer@example.com", {"datasets": {PRIV: ["clio_write"]}}),
    "general": ("general@example.com", {"datasets": {PRIV: ["clio_general"]}}),
    "reader": ("reader@example.com", {"datasets": {PRIV: ["clio_read"]}}),
    "stranger": ("stranger@example.com", None),  # authenticated, no record
    "disabled": ("disabled@example.com", {"global_roles": ["admin"], "disabled": True}),
}
ADMINS = {"owner", "admin"}
MANAGERS = ADMINS | {"ds_admin"}
READERS = MANAGERS | {"global_ds_admin", "writer", "general", "reader"}
WRITE_OTHERS = MANAGERS | {"global_ds_admin", "writer"}
WRITE_OWN = WRITE_OTHERS | {"general"}
EVERYONE = set(PERSONAS) - {"disabled"}
AT = "x=1&y=2&z=3"
READER = PERSONAS["reader"][0]
NEURONS = f"/v2/json-annotations/{PRIV}/neurons"
CYPHER = "MATCH (n: Neuron) WHERE n.bodyId in [1] RETURN n.bodyId AS id, n.type AS type"
OTHER = "someone@example.com"  # a user who is none of the personas


def _upload():
    return {
        "data": {"name": "notes.txt", "attachment": (io.BytesIO(b"hello"), "notes.txt")},
        "content_type": "multipart/form-data",
    }


# (method, path, body, who may, status when allowed, status when refused)
ROUTES = [
    ("GET", "/roles", None, EVERYONE, 200, 403),
    ("GET", "/users", None, ADMINS, 200, 403),
    ("POST", "/users", {"new@example.com": {"global_roles": ["clio_read"]}}, ADMINS, 200, 403),
    ("DELETE", "/users", ["reader@example.com"], ADMINS, 200, 403),
    ("GET", "/users/me", None, EVERYONE, 200, 403),
    ("POST", "/users/me/keys", {"name": "k"}, EVERYONE, 201, 403),
    ("GET", "/users/me/keys", None, EVERYONE, 200, 403),
    ("POST", "/users/reader@example.com/keys", {"name": "k"}, ADMINS, 201, 403),
    ("GET", "/users/reader@example.com/keys", None, ADMINS, 200, 403),
    ("DELETE", "/users/reader@example.com/keys/READER_KEY", None, ADMINS, 204, 403),
    ("DELETE", "/users/me/keys/MY_KEY", None, EVERYONE, 204, 403),
    ("DELETE", "/users/me/keys/READER_KEY", None, {"reader"}, 204, 404),  # only one's own key
    ("GET", "/datasets", None, EVERYONE, 200, 403),
    ("POST", "/datasets", {"new": {"description": "d"}}, ADMINS, 200, 403),
    ("DELETE", "/datasets", [PUB], ADMINS, 200, 403),
    ("GET", f"/datasets/{PRIV}", None, READERS, 200, 404),
    ("GET", f"/datasets/{PUB}", None, EVERYONE, 200, 403),
    ("PUT", f"/datasets/{PRIV}", {"description": "new"}, MANAGERS, 200, None),
    ("PUT", f"/datasets/{PUB}", {"description": "new"}, ADMINS, 200, 403),
    ("PUT", f"/datasets/{PRIV}", {"location": "gs://em-data/moved"}, ADMINS, 200, None),  # admins set it
    ("PUT", f"/datasets/{PRIV}", {"neuprintHTTP": {"server": "neuprint.example.org"}}, ADMINS, 200, None),
    ("POST", f"/datasets/{PRIV}/finalize", None, MANAGERS, 200, None),
    ("GET", f"/datasets/{PRIV}/logs", None, MANAGERS, 200, None),
    ("GET", f"/datasets/{PUB}/logs", None, ADMINS, 200, 403),  # public: readable, not managed
    ("GET", "/datasets/_deletions", None, ADMINS, 200, 403),
    ("GET", "/datasets/_deletions/DELETION", None, ADMINS, 200, 403),
    ("POST", "/datasets/_deletions/DELETION/resume", None, ADMINS, 200, 403),
    ("GET", "/datasets/_deletions/DELETION/logs", None, ADMINS, 200, 403),
    ("POST", f"/datasets/{PRIV}/attachments", "upload", MANAGERS, 201, None),
    ("POST", f"/datasets/{PUB}/attachments", "upload", ADMINS, 201, 403),
    ("GET", f"/datasets/{PRIV}/attachments", None, READERS, 200, 404),
    ("GET", f"/datasets/{PUB}/attachments", None, EVERYONE, 200, 403),
    ("DELETE", f"/datasets/{PRIV}/attachments/notes.txt", None, MANAGERS, 204, None),
    # annotations v1, saved searches: the caller's own, at a location
    ("POST", f"/annotations/{PRIV}?{AT}", {"note": "n"}, WRITE_OWN, 200, None),
    ("POST", f"/annotations/{PUB}?{AT}", {"note": "n"}, EVERYONE, 200, None),
    ("GET", f"/annotations/{PRIV}", None, READERS, 200, 404),
    ("DELETE", f"/annotations/{PRIV}?{AT}", None, WRITE_OWN, 200, None),
    ("POST", f"/savedsearches/{PRIV}?{AT}", {"q": "s"}, WRITE_OWN, 200, None),
    ("POST", f"/savedsearches/{PUB}?{AT}", {"q": "s"}, EVERYONE, 200, None),
    ("GET", f"/savedsearches/{PRIV}", None, READERS, 200, 404),
    ("DELETE", f"/savedsearches/{PRIV}?{AT}", None, WRITE_OWN, 200, None),
    ("POST", f"/v2/savedsearches/{PRIV}?{AT}", {"q": "s"}, WRITE_OWN, 200, None),
    ("GET", f"/v2/savedsearches/{PRIV}", None, READERS, 200, 404),
    ("DELETE", f"/v2/savedsearches/{PRIV}?{AT}", None, WRITE_OWN, 200, None),
    # annotations v2: own with write_own, another user's with write_others
    ("POST", f"/annotations/v2/{PRIV}", {"kind": "point", "pos": [1, 2, 3]}, WRITE_OWN, 200, None),
    ("POST", f"/annotations/v2/{PUB}", {"kind": "point", "pos": [1, 2, 3]}, EVERYONE, 200, None),
    (
        "POST",
        f"/annotations/v2/{PRIV}",
        {"kind": "point", "pos": [1, 2, 3], "user": OTHER},
        WRITE_OTHERS,
        200,
        None,
    ),
    (
        "POST",
        f"/annotations/v2/{PUB}",
        {"kind": "point", "pos": [1, 2, 3], "user": OTHER},
        ADMINS | {"global_ds_admin"},
        200,
        403,
    ),
    ("GET", f"/annotations/v2/{PRIV}", None, READERS, 200, 404),
    ("GET", f"/annotations/v2/{PRIV}?user={OTHER}", None, WRITE_OTHERS, 200, None),
    ("GET", f"/annotations/v2/{PUB}?user={OTHER}", None, ADMINS | {"global_ds_admin"}, 200, 403),
    ("DELETE", f"/annotations/v2/{PRIV}/Pt1_2_3", None, WRITE_OWN, 204, None),
    ("DELETE", f"/annotations/v2/{PRIV}/Pt1_2_3?user={READER}", None, WRITE_OTHERS, 204, None),
    # atlas: own entries; verifying needs write_others on the entry's dataset
    ("POST", f"/atlas/{PRIV}?{AT}", {"title": "t"}, WRITE_OWN, 200, None),
    ("GET", f"/atlas/{PRIV}", None, READERS, 200, 404),
    ("GET", "/atlas/all", None, EVERYONE, 200, 403),
    ("DELETE", f"/atlas/{PRIV}?{AT}", None, WRITE_OWN, 200, None),
    ("POST", "/atlas/verify/READER_ENTRY", None, WRITE_OTHERS, 200, None),
    # clio's /v2 annotations and atlas: the same checks as Gatehouse's own routes; verifying by
    # POST (`verified` changed, or another user's entry) needs write_others
    ("GET", f"/v2/annotations/{PRIV}?app=matrix", None, READERS, 200, 404),
    ("GET", f"/v2/annotations/{PRIV}?user={OTHER}", None, WRITE_OTHERS, 200, None),
    (
        "POST",
        f"/v2/annotations/{PRIV}",
        {"kind": "point", "pos": [1, 2, 3], "verified": True},
        WRITE_OWN,
        200,
        None,
    ),
    (
        "POST",
        f"/v2/annotations/{PRIV}",
        {"kind": "point", "pos": [1, 2, 3], "user": OTHER},
        WRITE_OTHERS,
        200,
        None,
    ),
    ("DELETE", f"/v2/annotations/{PRIV}/Pt1_2_3", None, WRITE_OWN, 200, None),
    ("DELETE", f"/v2/annotations/{PRIV}/Pt1_2_3?user_email={READER}", None, WRITE_OTHERS, 200, None),
    ("GET", f"/v2/atlas/{PRIV}", None, READERS, 200, 404),
    ("GET", "/v2/atlas/all", None, EVERYONE, 200, 403),
    ("POST", f"/v2/atlas/{PRIV}?{AT}", {"title": "t", "verified": False}, WRITE_OWN, 200, None),
    (
        "POST",
        f"/v2/atlas/{PRIV}?{AT}",
        {"title": "t", "user": READER, "verified": True},
        WRITE_OTHERS,
        200,
        None,
    ),
    ("DELETE", f"/v2/atlas/{PRIV}?{AT}", None, WRITE_OWN, 200, None),
    # signatures: read on the dataset
    ("GET", f"/signatures/atlocation/{PRIV}?{AT}", None, READERS, 200, 404),
    ("GET", f"/signatures/likelocation/{PRIV}?{AT}", None, READERS, 200, 404),
    ("GET", f"/signatures/atlocation/{PUB}?{AT}", None, EVERYONE, 200, 403),
    ("GET", f"/v2/signatures/likelocation/{PRIV}?{AT}", None, READERS, 200, 404),
    # transfer: read on the dataset named in the body
    (
        "POST",
        "/transfer",
        {"dataset": PRIV, "model_name": "denoise", "center": [500, 500, 500]},
        READERS,
        200,
        404,
    ),
    (
        "POST",
        "/v2/transfer",
        {"dataset": PRIV, "model_name": "denoise", "center": [500, 500, 500]},
        READERS,
        200,
        404,
    ),
    ("GET", "/transfer", None, EVERYONE, 200, 403),  # the caller's own jobs (admins: all)
    # clio's key-value store and pull requests: the caller's own; others' pull requests for admins
    ("GET", "/v2/kv/s", None, EVERYONE, 200, 403),
    ("GET", "/v2/kv/s/k", None, EVERYONE, 200, 403),
    ("POST", "/v2/kv/s/k", {"a": 1}, EVERYONE, 200, 403),
    ("DELETE", "/v2/kv/s/k", None, EVERYONE, 200, 403),
    ("POST", "/v2/pull-request", {"pull": "kv/s/k"}, EVERYONE, 200, 403),
    ("GET", "/v2/pull-request", None, EVERYONE, 200, 403),
    ("GET", f"/v2/pull-request?user_email={OTHER}", None, ADMINS, 200, 403),
    ("GET", "/v2/pull-request?user_email=all", None, ADMINS, 200, 403),
    ("GET", "/transfer/READER_JOB", None, ADMINS | {"reader"}, 200, 404),  # its requester and admins
    # clio's body annotations (kept by DVID): read on the dataset; writes need write_others
    ("GET", f"{NEURONS}/fields", None, READERS, 200, None),
    ("GET", f"{NEURONS}/all", None, READERS, 200, None),
    ("GET", f"{NEURONS}/id-number/1,2", None, READERS, 200, None),
    ("POST", f"{NEURONS}/query", {"bodyid": [1]}, READERS, 200, None),
    ("GET", f"{NEURONS}/versions", None, READERS, 200, None),
    ("GET", f"{NEURONS}/head_tag", None, READERS, 200, None),
    ("GET", f"{NEURONS}/head_uuid", None, READERS, 200, None),
    ("GET", f"{NEURONS}/tag_to_uuid/v1", None, READERS, 200, None),
    ("GET", f"{NEURONS}/uuid_to_tag/abc1", None, READERS, 200, None),
    ("POST", NEURONS, {"bodyid": 1, "type": "t"}, WRITE_OTHERS, 200, None),
    ("POST", f"{NEURONS}?designated_user={OTHER}", [{"bodyid": 1}], WRITE_OTHERS, 200, None),
    ("DELETE", f"{NEURONS}/id-number/1", None, WRITE_OTHERS, 200, None),
    # clio's neuPrint proxy: read on the dataset (a refused query reaches neuPrint not at all)
    ("POST", f"/v2/neuprint/{PRIV}", {"cypher": CYPHER, "dataset": PRIV}, READERS, 200, 404),
    ("POST", f"/v2/neuprint/{PUB}", {"cypher": CYPHER, "dataset": f"{PUB}:v1"}, EVERYONE, 200, 403),
    # twins: definitions by admins; an endpoint on PRIV is read-gated, its private side manage-gated
    (
        "POST",
        "/twins",
        {"path": "m.new", "description": "d", "public": {"code": "def f(context):\n    return 1\n"}},
        ADMINS,
        201,
        403,
    ),
    ("GET", "/twins", None, EVERYONE, 200, 403),
    ("GET", "/twins/t.priv", None, READERS, 200, 404),
    ("GET", "/twins/t.priv?full=true", None, ADMINS, 200, None),
    ("PATCH", "/twins/t.priv", {"description": "new"}, ADMINS, 200, 403),
    ("DELETE", "/twins/t.priv", None, ADMINS, 204, 403),
    ("POST", "/twins/t.priv", {"n": 1}, READERS, 200, 404),
    ("POST", "/twins/t.priv/mock", {"n": 1}, READERS, 200, 404),
    ("POST", "/twins/t.priv/private", {"n": 1}, MANAGERS, 200, None),
    ("GET", "/twins/t.priv/calls", None, MANAGERS, 200, None),
    ("POST", "/twins/t.open", {"n": 1}, EVERYONE, 200, 403),
    ("POST", "/twins/t.priv?async=1", {"n": 1}, READERS, 202, 404),
    ("POST", "/twins/t.priv/private?async=1", {"n": 1}, MANAGERS, 202, None),
    # approval requests: READER's request on t.priv, seen by its requester and t.priv's owners
    (
        "POST",
        "/twins/requests",
        {"endpoints": {"t": "t.open"}, "code": "def f(t):\n    return t(n=1)\n"},
        EVERYONE,
        201,
        403,
    ),
    ("GET", "/twins/requests", None, EVERYONE, 200, 403),
    ("GET", "/twins/requests/READER_REQUEST", None, MANAGERS | {"reader"}, 200, 404),
    ("POST", "/twins/requests/READER_REQUEST/approve", None, MANAGERS, 200, {"reader": 403}),
    ("POST", "/twins/requests/READER_REQUEST/deny", None, MANAGERS, 200, {"reader": 403}),
    ("POST", "/twins/requests/READER_REQUEST/try", None, MANAGERS, 200, {"reader": 403}),
    ("POST", "/twins/requests/READER_APPROVED/run", None, {"reader"}, 200, {p: 403 for p in MANAGERS}),
    ("GET", "/twins/jobs/READER_TWIN_JOB", None, MANAGERS | {"reader"}, 200, 404),
    # clio's /v2 routes (common.web.clio): the same checks as the routes they adapt.
    ("POST", "/v2/server/token", None, EVERYONE, 200, 403),
    ("GET", "/v2/roles", None, EVERYONE, 200, 403),
    ("GET", "/v2/users", None, ADMINS, 200, 403),
    ("POST", "/v2/users", {"new@example.com": {"global_roles": ["clio_read"]}}, ADMINS, 200, 403),
    ("DELETE", "/v2/users", ["reader@example.com"], ADMINS, 200, 403),
    ("GET", "/v2/datasets", None, EVERYONE, 200, 403),
]


def _refused_status(persona, route_refused):
    if persona == "disabled":
        return 403
    if isinstance(route_refused, dict):  # who sees the thing but may not act on it; 404 for the rest
        return route_refused.get(persona, 404)
    if route_refused is not None:
        return route_refused
    # A private dataset the caller cannot even read is answered as missing.
    return 403 if persona in READERS else 404


@pytest.fixture
def world(api, dvid_service, neuprint_service):
    for email, record in PERSONAS.values():
        if record is not None:
            api.add_user(email, **record)
    # PRIV's body annotations: at a DVID stand-in's node abc1 (version v1)
    neurons = {
        "tag_to_uuid": {"v1": "abc1"},
        "uuid_to_tag": {"abc1": "v1"},
        "head_tag": "v1",
        "head_uuid": "abc1",
    }
    dvid_service.add_node("abc1", [{"bodyid": 1, "type": "t"}])
    neuprint = {"server": neuprint_service.server}  # its neuPrint dataset: the dataset's name
    api.add_dataset(
        PRIV,
        location="gs://em-data/priv",
        transfer=["denoise"],
        dvid=dvid_service.url,
        uuid="abc1",
        neurons=neurons,
        neuprintHTTP=neuprint,
    )
    api.add_dataset(PUB, public=True, neuprintHTTP=neuprint)


def _signatures():
    """One signature at 1,2,3 in each dataset (`read` then gets 200, not 404)."""
    import numpy as np

    from common.catalog import sigindex
    from tests.conftest import BUCKETS
    from tools.build_signatures import build

    records = np.array([(1, 2, 3, 42)], dtype=sigindex.record_dtype())
    for dataset in (PRIV, PUB):
        build(BUCKETS[1], dataset, records, progress=False)


def _twins(api):
    """A twin on PRIV and a public endpoint with no dataset, defined by the owner."""
    code = "def f(context, n: int = 0):\n    return n\n"
    for body in (
        {
            "path": "t.priv",
            "description": "d",
            "dataset": PRIV,
            "mock": {"code": code},
            "private": {"code": code},
        },
        {"path": "t.open", "description": "d", "public": {"code": code}},
    ):
        r = api.post("/twins", user=OWNER, json=body)
        assert r.status_code == 201, r.get_data(as_text=True)


def _reader_request(api, approved: bool) -> str:
    """A request of READER's naming t.priv (approved by the owner when `approved`)."""
    code = "def f(t):\n    return t(n=1)\n"
    r = api.post("/twins/requests", user=READER, json={"endpoints": {"t": "t.priv"}, "code": code})
    assert r.status_code == 201, r.get_data(as_text=True)
    if approved:
        assert api.post(f"/twins/requests/{r.get_json()['id']}/approve", user=OWNER).status_code == 200
    return r.get_json()["id"]


def _reader_twin_job() -> str:
    """A finished twin job of READER's on t.priv (this endpoint, by its generation), written
    straight into Firestore."""
    from common.storage import store

    generation = store.collection("twins").document("t.priv").get().get("generation")
    job = {"id": "0" * 32, "kind": "call", "endpoint": "t.priv", "side": None, "caller": READER}
    job["endpoint_generation"] = generation
    job.update(status="done", result=1, attempts=1, created_at=store.now())
    store.collection("twin_jobs").document(job["id"]).set(job)
    return job["id"]


def _own_data(email):
    """Each persona's annotation, saved search and atlas entry at 1,2,3 in PRIV (and key-value
    document s/k), written
    straight into Firestore (most personas may not write there themselves), under the dataset's
    generation as the functions store it."""
    from common.catalog.locations import user_doc_id
    from common.storage import datasets, keyvalue, store

    atlas = load_function("atlas")
    key = datasets.data_key(PRIV)
    base = {"user": email, "location": [1, 2, 3], "locationkey": "1_2_3", "timestamp": 0, "payload": {}}
    annotations = store.collection("annotations").document(key)
    annotations.collection("v1_annotations").document(user_doc_id(email, "1_2_3")).set(base)
    annotations.collection("v2_annotations").document(user_doc_id(email, "Pt1_2_3")).set(
        {"key": "Pt1_2_3", "user": email, "kind": "point", "pos": [1, 2, 3]}
    )
    store.collection("savedsearches").document(key).collection("searches").document(
        user_doc_id(email, "1_2_3")
    ).set(base)
    keyvalue.user_root(keyvalue.KV, email).collection("s").document("k").set({"a": 1, "_timestamp": 0.0})
    entry = atlas.entry_id(PRIV, email, "1_2_3")
    store.collection("atlas").document(entry).set(
        {
            "id": entry,
            "user": email,
            "dataset": PRIV,
            "locationref": "1_2_3",
            "verified": False,
            "generation": key,
        }
    )
    return entry


def _deletion(api) -> str:
    """The id of a dataset deletion (of a dataset made and deleted for it)."""
    api.add_dataset("gone")
    return api.delete("/datasets", user=OWNER, json=["gone"]).get_json()["deletions"][0]["id"]


def _key(api, email: str = READER) -> str:
    """The id of an API key of `email`'s (READER's unless told), issued by the owner."""
    r = api.post(f"/users/{email}/keys", user=OWNER, json={"name": "k"})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()["id"]


def _reader_job() -> str:
    """A finished transfer job of READER's, written straight into Firestore."""
    from common.storage import store

    job = store.collection("transfer_jobs").document("readerjob")
    job.set({"user": READER, "dataset": PRIV, "status": "done", "created_at": store.now()})
    return job.id


@pytest.mark.parametrize("persona", sorted(PERSONAS))
@pytest.mark.parametrize(
    "method,path,body,allowed,ok,refused", ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES]
)
def test_route_matrix(
    api, world, dvid_service, neuprint_service, capsys, persona, method, path, body, allowed, ok, refused
):
    email = PERSONAS[persona][0]
    path = path.replace("READER_ENTRY", _own_data(READER)).replace("READER_JOB", _reader_job())
    if "READER_KEY" in path:
        path = path.replace("READER_KEY", _key(api))
    if "MY_KEY" in path:
        path = path.replace("MY_KEY", _key(api, email))
    if "DELETION" in path:
        path = path.replace("DELETION", _deletion(api))
    _own_data(email)
    if path.startswith(("/signatures/", "/v2/signatures/")):
        _signatures()
    if path.startswith("/twins"):
        _twins(api)
        path = path.replace("READER_TWIN_JOB", _reader_twin_job())
        if "READER_REQUEST" in path:
            path = path.replace("READER_REQUEST", _reader_request(api, approved=False))
        if "READER_APPROVED" in path:
            path = path.replace("READER_APPROVED", _reader_request(api, approved=True))
    kwargs = _upload() if body == "upload" else ({"json": body} if body is not None else {})
    capsys.readouterr()
    r = api.call(method, path, user=email, **kwargs)
    expected = ok if persona in allowed else _refused_status(persona, refused)
    assert r.status_code == expected, (persona, method, path, r.get_data(as_text=True))
    if expected >= 400:
        assert r.get_json()["error"] in {"forbidden", "not_found"}
        assert not dvid_service.calls, "a refused request reached DVID"
    if path.startswith("/v2/neuprint/"):
        assert len(neuprint_service.received) == (1 if expected < 400 else 0)
    assert_request_logged_without_secrets(capsys.readouterr().err, api.token(email), body, r, path, email)


@pytest.mark.parametrize("persona", sorted(EVERYONE))
def test_dataset_list_shows_only_readable(api, world, persona):
    names = set(api.get("/datasets", user=PERSONAS[persona][0]).get_json())
    assert names == ({PRIV, PUB} if persona in READERS else {PUB})


def test_roles_lists_no_public_grants(api, world):
    body = api.get("/roles", user="reader@example.com").get_json()
    assert body == {
        "email": "reader@example.com",
        "name": "",
        "global_roles": [],
        "datasets": {PRIV: ["clio_read"]},
        "groups": [],
    }


def test_owner_is_always_admin(api, world):
    assert api.get("/roles", user=OWNER).get_json()["global_roles"] == ["admin"]
    api.add_user(OWNER, global_roles=[])  # a record without admin does not demote the owner
    assert api.get("/users", user=OWNER).status_code == 200


def test_role_change_applies_at_once_on_this_instance(api, world):
    assert api.get(f"/datasets/{PRIV}", user="stranger@example.com").status_code == 404
    api.add_user("stranger@example.com", datasets={PRIV: ["clio_read"]})
    assert api.get(f"/datasets/{PRIV}", user="stranger@example.com").status_code == 200
    api.delete("/users", user=OWNER, json=["stranger@example.com"])
    assert api.get(f"/datasets/{PRIV}", user="stranger@example.com").status_code == 404


def test_public_flag_change_applies_at_once(api, world):
    assert api.get(f"/datasets/{PRIV}", user="stranger@example.com").status_code == 404
    assert api.put(f"/datasets/{PRIV}", user=OWNER, json={"public": True}).status_code == 200
    assert api.get(f"/datasets/{PRIV}", user="stranger@example.com").status_code == 200
    assert api.put(f"/datasets/{PRIV}", user=OWNER, json={"public": False}).status_code == 200
    assert api.get(f"/datasets/{PRIV}", user="stranger@example.com").status_code == 404


def test_other_instances_see_role_changes_within_the_cache_window(api, world, monkeypatch):
    """Another instance's cache is bounded by ROLE_CACHE_SECONDS (30 s in production)."""
    from common.identity import authz
    from common.storage import store

    assert api.get(f"/datasets/{PRIV}", user="stranger@example.com").status_code == 404
    # The change is made "elsewhere": straight into Firestore, this instance is not told.
    store.collection("users").document("stranger@example.com").set({"datasets": {PRIV: ["clio_read"]}})
    assert api.get(f"/datasets/{PRIV}", user="stranger@example.com").status_code == 404  # cached
    monkeypatch.setattr(authz._users, "clock", lambda: time.monotonic() + 31)
    assert api.get(f"/datasets/{PRIV}", user="stranger@example.com").status_code == 200


def test_every_role_checked_route_of_every_function_is_in_the_matrix(test_env):
    """The matrix is complete: each function's role-checked routes (its own route table, not a
    list kept by hand) are each reached by at least one ROUTES row, and each is refused to
    someone in the matrix (at least the disabled account)."""
    from werkzeug.exceptions import HTTPException

    covered: dict[tuple[str, str], set[str]] = {}
    unmatched = []
    apps = {name: load_function(name).app for name in app_functions()}
    for method, path, _body, allowed, _ok, _refused in ROUTES:
        app = apps[_function_of(path)]
        adapter = app._map.bind("localhost")
        try:
            route, _ = adapter.match(path.split("?")[0], method=method)
        except HTTPException:
            unmatched.append((method, path))
            continue
        covered.setdefault((route.method, route.path), set()).update(allowed)
    assert not unmatched, f"ROUTES rows no function serves: {unmatched}"
    checked = {(r.method, r.path) for app in apps.values() for r in app.routes if r.check is not None}
    assert not checked - set(covered), (
        f"role-checked routes missing from ROUTES: {sorted(checked - set(covered))}"
    )
    for route, allowed in covered.items():
        assert set(PERSONAS) - allowed, f"{route} is refused to nobody in the matrix"


def _function_of(path: str) -> str:
    """The function that serves `path` (clio's /v2/<resource>: the one common.web.clio names)."""
    from common.web import clio

    _, first, second, *_ = (path.split("?")[0] + "/").split("/")
    return clio.RESOURCES[second] if first == "v2" else first


# -- grants given after their dataset was made ---------------------------------------------------
# The world above grants before the datasets exist (a grant then binds to no generation). A grant
# given on an existing dataset is bound to its generation: each persona with a dataset grant
# gets a twin granted after the datasets, and every listing must show both the same.
GRANTED = sorted(p for p, (_, record) in PERSONAS.items() if record and record.get("datasets"))
LATE = {p: PERSONAS[p][0].replace("@", "-late@") for p in GRANTED}
GROUP = "lab"
LISTINGS = [
    "/datasets",
    "/v2/datasets",
    "/atlas/all",
    "/roles",
    "/transfer",
    "/twins",
    f"/annotations/v2/{PRIV}?groups={GROUP}",
    "/v2/atlas/all",
    f"/v2/annotations/{PRIV}?groups={GROUP}",
]
_VOLATILE = {"id", "created_at", "modified_at", "timestamp", "expire_at", "addr", "source"}


@pytest.fixture
def late_world(api):
    """PERSONAS' dataset roles given twice: before the datasets (early) and after (late), each
    persona in one group, with their own annotation, atlas entry and transfer job on PRIV."""
    for persona in GRANTED:
        api.add_user(PERSONAS[persona][0], **PERSONAS[persona][1], groups=[GROUP])
    api.add_dataset(PRIV, location="gs://em-data/priv", transfer=["denoise"])
    api.add_dataset(PUB, public=True)
    for persona in GRANTED:
        api.add_user(LATE[persona], **PERSONAS[persona][1], groups=[GROUP])
    _twins(api)
    from common.storage import store

    for email in (*(PERSONAS[p][0] for p in GRANTED), *LATE.values()):
        _own_data(email)
        store.collection("transfer_jobs").document().set(
            {"user": email, "dataset": PRIV, "status": "done", "created_at": store.now()}
        )


def _as_early(value, late: str, early: str):
    """An answer seen by the late twin, written as the early one would see it: the twins' emails
    swapped, and what differs anyway (ids, times) left out."""
    import json

    text = json.dumps(value).replace(late, "\0").replace(early, late).replace("\0", early)
    return _canonical(json.loads(text))


def _canonical(value):
    import json

    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=json.dumps)
    return value


@pytest.mark.parametrize("path", LISTINGS)
def test_a_grant_given_after_its_dataset_lists_the_same(api, late_world, path):
    """GET /datasets once left out a dataset granted after it was made (the check read the record
    without its generation): the late twin must see what the early one sees, for every listing."""
    for persona in GRANTED:
        early, late = PERSONAS[persona][0], LATE[persona]
        seen_early, seen_late = api.get(path, user=early), api.get(path, user=late)
        assert seen_early.status_code == seen_late.status_code == 200, (persona, seen_late.get_data())
        assert seen_late.get_json(), (persona, path)  # something to compare
        assert _as_early(seen_late.get_json(), late, early) == _canonical(seen_early.get_json()), persona
        if path == "/datasets":
            assert set(seen_late.get_json()) == {PRIV, PUB}, persona
