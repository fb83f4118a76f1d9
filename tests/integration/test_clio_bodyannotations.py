"""clio's body annotations (the bodyannotations function), replayed as its clients call them
(malevnc, clio-py, the clio website, coda, neuclease): what reaches DVID (the stand-in,
tools/dvid_standin.py: method, path, query and body byte for byte, a body id above 2^53 among
them) and what the client gets back; then Gatehouse's rules (roles, versions, DVID's failures)."""

from __future__ import annotations

import gzip
import json
import urllib.request

import pytest

from tests.conftest import OWNER
from tests.utils import assert_error

WRITER, GENERAL, READER = "writer@example.com", "general@example.com", "reader@example.com"
HEAD, OLD = "a1b2c3d4", "f00d0001"  # DVID nodes: the dataset's `uuid`, and v1.0's
BIG = (1 << 60) + 7  # a body id a float cannot hold (above 2^53)
BASE = "/v2/json-annotations/manc/neurons"
INSTANCE = "segmentation_annotations"
NEURONS = {
    "tag_to_uuid": {"v1.0": OLD, "v1.1": HEAD},
    "uuid_to_tag": {OLD: "v1.0", HEAD: "v1.1"},
    "head_tag": "v1.1",
    "head_uuid": HEAD,
}
RECORDS = [
    {"bodyid": 10005, "type": "DNa01", "instance": "DNa01_L", "type_user": "a@example.com"},
    {"bodyid": 24053, "type": "IN08B", "status": "Traced"},
    {"bodyid": BIG, "type": "MN1", "group": BIG},
]


@pytest.fixture
def manc(api, dvid_service):
    api.add_user(WRITER, datasets={"manc": ["clio_write"]})
    api.add_user(GENERAL, datasets={"manc": ["clio_general"]})
    api.add_user(READER, datasets={"manc": ["clio_read"]})
    api.add_dataset("manc", dvid=dvid_service.url, uuid=HEAD, tag="v1.1", neurons=NEURONS)
    dvid_service.add_node(HEAD, RECORDS)
    dvid_service.add_node(OLD, RECORDS[:2])
    return dvid_service


def _node(uuid: str = HEAD) -> str:
    return f"/api/node/{uuid}/{INSTANCE}"


def _direct(service, path: str, headers: dict[str, str] | None = None) -> bytes:
    """What the stand-in answers when asked directly (not recorded as the proxy's call)."""
    before = len(service.calls)
    with urllib.request.urlopen(urllib.request.Request(service.url + path, headers=headers or {})) as r:
        data = r.read()
    del service.calls[before:]
    return data


def _only_call(service):
    assert len(service.calls) == 1, service.calls
    return service.calls[0]


# -- malevnc (R/annotations.R, R/annotate.R) ----------------------------------------------------


def test_malevnc_reads_the_fields(api, manc):
    r = api.get(f"{BASE}/fields?app=natverse", user=READER)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert set(r.get_json()) == {"bodyid", "type", "instance", "status", "group"}
    call = _only_call(manc)
    assert (call.method, call.path, call.query, call.body) == ("GET", _node() + "/fields", "", b"")


def test_malevnc_reads_all_as_dvid_sends_them(api, manc):
    """manc_body_annotations with no ids: the bytes DVID sends, streamed through."""
    r = api.get(f"{BASE}/all?app=natverse", user=READER)
    assert r.status_code == 200, r.get_data(as_text=True)
    call = _only_call(manc)
    assert (call.method, call.path, call.query) == ("GET", _node() + "/all", "")
    assert r.get_data() == _direct(manc, _node() + "/all")
    assert BIG in [record["bodyid"] for record in json.loads(r.get_data())]  # exact, as sent
    assert "Content-Length" not in r.headers  # streamed (chunked), never held whole


def test_neuclease_reads_all_with_show_and_gzip_passes_through(api, manc):
    r = api.get(f"{BASE}/all?show=user", user=READER, headers={"Accept-Encoding": "gzip, deflate"})
    assert r.status_code == 200
    assert r.headers["Content-Encoding"] == "gzip"  # DVID's encoding, passed on untouched
    assert gzip.decompress(r.get_data()) == _direct(manc, _node() + "/all?show=user")
    assert _only_call(manc).query == "show=user"
    assert "type_user" in json.loads(gzip.decompress(r.get_data()))[0]


def test_malevnc_reads_ids_with_a_big_body_id(api, manc):
    """manc_body_annotations(ids=): `changes` and `id_field` are malevnc's own (ignored), `show`
    goes to DVID; DVID's keyvalues map is answered as a list in the order asked."""
    r = api.get(
        f"{BASE}/id-number/{BIG},10005,77?changes=false&id_field=bodyid&show=user&app=natverse", user=READER
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    call = _only_call(manc)
    assert (call.method, call.path, call.query) == ("GET", _node() + "/keyvalues", "json=true&show=user")
    assert call.body == f"[{BIG},10005,77]".encode()
    records = json.loads(r.get_data())
    assert [x["bodyid"] for x in records] == [BIG, 10005]  # 77 has none
    assert records[0]["group"] == BIG
    assert records[1]["type_user"] == "a@example.com"
    assert f'"bodyid":{BIG}'.encode() in r.get_data()  # DVID's bytes, not re-encoded


def test_malevnc_writes_fifty_records_each_as_sent(api, manc):
    """manc_annotate_body: a list of 50 (jsonlite's spacing and a big id among them), version,
    conditional fields and a designated user; one DVID write per record, its bytes verbatim."""
    items = [f'{{"bodyid":{20000 + i},"type":"T{i}","instance":"I{i}"}}' for i in range(49)]
    items.append(f'{{"bodyid": {BIG}, "instance" : "big_R",  "note":"\\u00e9 \\"q\\""}}')
    body = "[" + ",\n  ".join(items) + "]"
    r = api.post(
        f"{BASE}?version=v1.0&conditional=instance,type&designated_user=x@example.com&app=natverse",
        user=WRITER,
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json() is None
    assert len(manc.calls) == 50
    for call, item in zip(manc.calls, items, strict=True):
        bodyid = json.loads(item)["bodyid"]
        assert (call.method, call.path) == ("POST", f"{_node(OLD)}/key/{bodyid}")
        assert call.query == "conditional=instance,type&u=x@example.com"
        assert call.body == item.encode()
    stored = manc.nodes[OLD][BIG]
    assert stored["instance"] == "big_R" and stored["instance_user"] == "x@example.com"


# -- the clio website (src/Annotation/AnnotationRequest.js) -------------------------------------


def test_the_website_reads_queries_and_writes_at_a_version(api, manc):
    r = api.get(f"{BASE}/id-number/24053?version=v1.0", user=WRITER)
    assert r.status_code == 200 and r.get_json() == [{"bodyid": 24053, "type": "IN08B", "status": "Traced"}]
    assert manc.calls[-1].path == _node(OLD) + "/keyvalues"

    query = b'{"bodyid":[154109,24053]}'
    r = api.post(
        f"{BASE}/query?version=v1.0", user=WRITER, data=query, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    assert list(r.get_json()) == [{"bodyid": 24053, "type": "IN08B", "status": "Traced"}]  # Object.values
    call = manc.calls[-1]
    assert (call.method, call.path, call.query, call.body) == ("POST", _node(OLD) + "/query", "", query)

    one = b'{"bodyid":24053,"type":"IN08B_a","status":null}'
    r = api.post(
        f"{BASE}?version=v1.0&replace=true",
        user=WRITER,
        data=one,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200 and r.get_json() is None
    call = manc.calls[-1]
    assert (call.path, call.query, call.body) == (f"{_node(OLD)}/key/24053", f"replace=true&u={WRITER}", one)
    r = api.get(f"{BASE}/id-number/24053?version=v1.0&show=all", user=WRITER)
    record = r.get_json()[0]
    assert record["type"] == "IN08B_a" and record["type_user"] == WRITER and "status" not in record


# -- clio-py (schlegelp clio/client.py, pull.py, push.py; janelia clio-py) -----------------------


def test_clio_py_reads_versions_and_queries(api, manc):
    get = lambda path: api.get(f"{BASE}/{path}?app=clio-py", user=READER)  # noqa: E731
    assert get("head_tag").get_json() == "v1.1"
    assert get("head_uuid").get_json() == HEAD
    assert get("versions").get_json() == {"v1.0": OLD, "v1.1": HEAD}
    assert get("tag_to_uuid/v1.0").get_json() == OLD
    assert get("uuid_to_tag/f00d").get_json() == "v1.0"  # a prefix, as DVID names nodes
    assert get(f"uuid_to_tag/{HEAD}0099").get_json() == "v1.1"
    assert_error(get("tag_to_uuid/v9"), 404, "not_found")
    assert not manc.calls  # the version map is the dataset's metadata, DVID is not asked

    r = api.post(
        f"{BASE}/query?show=user&version=v1.1&app=clio-py",
        user=READER,
        data=json.dumps({"type": ["MN1", "DNa01"]}),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    assert [x["bodyid"] for x in json.loads(r.get_data())] == [10005, BIG]
    assert manc.calls[-1].query == "show=user"


def test_clio_py_and_coda_write_without_a_version(api, manc):
    """schlegelp's `?{version}` has no `=` (dropped by parse_qsl): `app` only; coda writes one
    record whose big id it spelt from text."""
    body = b'[{"bodyid": 10005, "type": "DNa02"}, {"bodyid": 24053, "type": "IN08C"}]'
    r = api.post(f"{BASE}?app=clio-py", user=WRITER, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert [c.body for c in manc.calls] == [
        b'{"bodyid": 10005, "type": "DNa02"}',
        b'{"bodyid": 24053, "type": "IN08C"}',
    ]
    assert {c.query for c in manc.calls} == {f"u={WRITER}"}
    coda = f'{{"bodyid":{BIG},"type":"MN2"}}'.encode()
    r = api.post(f"{BASE}/?app=coda", user=WRITER, data=coda, headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert (manc.calls[-1].path, manc.calls[-1].body) == (f"{_node()}/key/{BIG}", coda)
    assert manc.nodes[HEAD][BIG]["type"] == "MN2"


def test_a_query_with_a_big_body_id_reaches_dvid_as_written(api, manc):
    query = f'{{"bodyid": [{BIG}, 10005], "type": "exists/1"}}'.encode()
    r = api.post(
        f"{BASE}/query?app=coda", user=READER, data=query, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200
    assert manc.calls[-1].body == query
    assert [x["bodyid"] for x in json.loads(r.get_data())] == [10005, BIG]
    r = api.post(
        f"{BASE}/query?onlyid=true", user=READER, data=query, headers={"Content-Type": "application/json"}
    )
    assert json.loads(r.get_data()) == [10005, BIG] and manc.calls[-1].query == "onlyid=true"


def test_delete_by_id_number(api, manc):
    r = api.delete(f"{BASE}/id-number/24053,{BIG}", user=WRITER)
    assert r.status_code == 200 and r.get_json() is None
    assert [(c.method, c.path, c.query) for c in manc.calls] == [
        ("DELETE", f"{_node()}/key/24053", f"u={WRITER}"),
        ("DELETE", f"{_node()}/key/{BIG}", f"u={WRITER}"),
    ]
    assert set(manc.nodes[HEAD]) == {10005}


# -- Gatehouse's rules --------------------------------------------------------------------------


@pytest.mark.parametrize("user", [READER, GENERAL, "stranger@example.com"])
def test_a_refused_write_never_reaches_dvid(api, manc, user):
    """Writes need clio_write (write_others) on the dataset, clio_general included (clio never
    enforced it); whoever may not read the dataset is told it does not exist."""
    body = json.dumps({"bodyid": 10005, "type": "X"})
    r = api.post(f"{BASE}?app=natverse", user=user, data=body, headers={"Content-Type": "application/json"})
    body = assert_error(
        r,
        404 if user.startswith("stranger") else 403,
        "not_found" if user.startswith("stranger") else "forbidden",
    )
    assert body["detail"] == body["message"]
    r = api.delete(f"{BASE}/id-number/10005", user=user)
    assert r.status_code in (403, 404)
    assert not manc.calls


def test_an_unknown_version_is_400_and_dvid_is_not_asked(api, manc):
    for call in (
        lambda: api.get(f"{BASE}/id-number/1?version=v9.9", user=READER),
        lambda: api.post(f"{BASE}/query?version=v9.9", user=READER, json={"bodyid": 1}),
        lambda: api.post(f"{BASE}?version=v9.9", user=WRITER, json={"bodyid": 1}),
    ):
        body = assert_error(call(), 400, "bad_request")
        assert "v9.9" in body["detail"]
    assert not manc.calls


def test_bad_bodies_are_refused_before_any_write(api, manc):
    headers = {"Content-Type": "application/json"}
    for body in (
        b'[{"bodyid": 1}, {"type": "no id"}]',
        b'{"bodyid": "10005"}',
        b"[1, 2]",
        b'{"bodyid": 1',
        b"3",
    ):
        r = api.post(BASE, user=WRITER, data=body, headers=headers)
        assert r.status_code == 400, (body, r.get_data(as_text=True))
    assert_error(api.get(f"{BASE}/id-number/1,x", user=READER), 400, "bad_request")
    assert_error(api.get(f"{BASE}/id-number/{1 << 64}", user=READER), 400, "bad_request")
    assert_error(api.post(f"{BASE}/query", user=READER, json=[1]), 400, "bad_request")
    assert not manc.calls


def test_a_dataset_without_dvid_is_404(api, manc):
    api.add_dataset("nodvid", uuid="abc")
    api.add_user(READER, datasets={"nodvid": ["clio_read"]})
    body = assert_error(api.get("/v2/json-annotations/nodvid/neurons/fields", user=READER), 404, "not_found")
    assert "dvid" in body["detail"]
    assert_error(api.get("/v2/json-annotations/nodvid/neurons/head_tag", user=READER), 404, "not_found")


def test_only_admins_set_or_change_dvid(api, manc):
    """`dvid` says where the dataset's users' reads and writes go: a dataset manager may not
    point it at a server of their own (as for `location` and `neuprintHTTP`)."""
    manager = "manager@example.com"
    api.add_user(manager, datasets={"manc": ["dataset_admin"]})
    evil = {"dvid": "https://dvid.evil.example"}
    assert_error(api.put("/datasets/manc", user=manager, json=evil), 403, "forbidden")
    assert (
        api.put("/datasets/manc", user=manager, json={"dvid": manc.url, "description": "d"}).status_code
        == 200
    )
    assert api.put("/datasets/manc", user=OWNER, json=evil).status_code == 200


def test_dvids_refusal_is_passed_on_with_its_words(api, manc):
    """DVID answers 400 with its reason as text: the client gets 400 and that reason in
    `detail`."""
    api.put("/datasets/manc", user=OWNER, json={"uuid": "feedface"})  # a node DVID does not have
    body = assert_error(api.get(f"{BASE}/fields", user=READER), 400, "bad_request")
    assert "DVID refused" in body["detail"] and "no node feedface" in body["detail"]


@pytest.mark.parametrize("failure", ["fail", "hang", "down"])
def test_dvid_failing_is_503_with_retry_after(api, manc, failure):
    """DVID failing (5xx), too slow (DVID_TIMEOUT_SECONDS: 1 s here) or down: 503 with
    Retry-After, never a hang."""
    import time

    from tools.emulators import free_port

    if failure == "down":
        api.put("/datasets/manc", user=OWNER, json={"dvid": f"http://127.0.0.1:{free_port()}"})
    else:
        manc.script = lambda call: failure
    for path in ("fields", "all", "id-number/1"):
        started = time.monotonic()
        r = api.get(f"{BASE}/{path}", user=READER)
        assert time.monotonic() - started < 2.5, path
        body = assert_error(r, 503, "unavailable")
        assert int(r.headers["Retry-After"]) >= 1 and body["detail"]


def test_values_in_dvids_urls_are_encoded(api, manc):
    r = api.post(
        f"{BASE}?conditional=a%26b%3Dc,type&designated_user=x%2By@example.com",
        user=WRITER,
        json={"bodyid": 10005, "type": "Y"},
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    call = manc.calls[-1]
    assert call.query == "conditional=a%26b%3Dc,type&u=x%2By@example.com"
    assert call.args == {"conditional": "a&b=c,type", "u": "x+y@example.com"}


def test_a_client_leaving_midway_leaves_no_half_read_connection(api, manc):
    """The function's connection to DVID is closed, not reused, when the client stops reading
    `/all` midway: the next call reads its own answer."""
    manc.add_node(HEAD, [{"bodyid": i, "note": "x" * 100} for i in range(1, 20_001)])  # ~2.5 MB
    client = api.client("bodyannotations")
    r = client.get(f"{BASE}/all", headers={"Authorization": f"Bearer {api.token(READER)}"}, buffered=False)
    assert r.status_code == 200
    first = next(iter(r.response))
    assert first.startswith(b'[{"bodyid":1,')
    r.close()
    for _ in range(3):
        r = api.get(f"{BASE}/fields", user=READER)
        assert r.status_code == 200 and r.get_json() == ["bodyid", "note"]
