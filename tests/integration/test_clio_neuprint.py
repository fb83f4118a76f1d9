"""clio's neuPrint proxy (the neuprint function, `POST /v2/neuprint/{ds}`) against the neuPrint
stand-in (tools/neuprint_standin.py): the clio website's connections panel replayed as it sends
its queries (NeuPrintManager.doQuery: `{cypher, dataset}` as text, no Content-Type of its own),
what reaches neuPrint, and what Gatehouse adds: only the dataset's own neuPrint dataset, the
server from metadata only admins write, 503 when neuPrint does not answer, and the token never
shown or logged."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import OWNER
from tests.utils import assert_error, load_function
from tools import neuprint_standin
from tools.emulators import free_port

DS = "hemibrain"
TAG = "v1.2.1"
READER = "reader@example.com"
STRANGER = "stranger@example.com"
BIG = 2**53 + 1  # a body id a float cannot hold
TEXT = {"Content-Type": "text/plain;charset=UTF-8"}  # fetch() with a string body


@pytest.fixture
def dataset(api, neuprint_service):
    """The website's dataset: key `hemibrain`, tag `v1.2.1`, on the stand-in's neuPrint."""
    api.add_dataset(DS, tag=TAG, neuprintHTTP={"server": neuprint_service.server, "dataset": DS})
    api.add_user(READER, datasets={DS: ["clio_read"]})
    return neuprint_service


# -- the website (src/Connections/NeuPrintManager.js) ------------------------------------------


def get_types_cypher(ids) -> str:
    """getTypes: `[${ids}]` is the ids joined with commas."""
    return (
        "MATCH (n: Neuron) "
        + f"WHERE n.bodyId in [{','.join(map(str, ids))}] "
        + "RETURN n.bodyId AS id, n.type AS type"
    )


def get_connections_cypher(ids, which: str) -> str:
    if which == "pre":
        cypher = "MATCH (m :Neuron)-[e:ConnectsTo]->(n :Neuron) "
    else:
        cypher = "MATCH (m :Neuron)<-[e:ConnectsTo]-(n :Neuron) "
    return (
        cypher
        + f"WHERE m.bodyId in [{','.join(map(str, ids))}] "
        + "RETURN n.bodyId AS id, n.type AS type, sum(e.weight) AS weight "
        + "ORDER BY weight DESC, id"
    )


def do_query(api, cypher: str, *, user: str = READER, key: str = DS, tag: str | None = TAG, headers=None):
    """doQuery: POST `${projectUrl}/neuprint/${dataset.key}` with `{cypher, dataset}`, dataset
    `key[:tag]`, as JSON.stringify writes it; only `res.ok` and `res.json()` are read."""
    dataset = f"{key}:{tag}" if tag else key
    body = json.dumps({"cypher": cypher, "dataset": dataset}, separators=(",", ":"))
    return api.post(f"/v2/neuprint/{key}", user=user, data=body, headers=headers)


@pytest.mark.parametrize("headers", [TEXT, None], ids=["text/plain", "no content type"])
def test_the_connections_panel_gets_types_and_partners(api, dataset, headers):
    ids = [10017, 10043, BIG]
    cypher = get_types_cypher(ids)
    r = do_query(api, cypher, headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)  # res.ok
    # What reached neuPrint: its custom query path, the deployment's token, {cypher, dataset}.
    [received] = dataset.received
    assert received.path == "/api/custom/custom"
    assert received.authorization == f"Bearer {dataset.token}"
    assert received.content_type == "application/json"
    assert received.json() == {"cypher": cypher, "dataset": f"{DS}:{TAG}"}
    assert str(BIG).encode() in received.body
    # neuPrint's answer, byte for byte; getTypes maps `data` to {id, type}.
    expected = json.dumps(neuprint_standin.run(cypher)).encode()
    assert r.get_data() == expected and r.mimetype == "application/json"
    types = [{"id": row[0], "type": row[1]} for row in r.get_json()["data"]]
    assert types == [{"id": i, "type": neuprint_standin.neuron_type(i)} for i in ids]
    assert str(BIG).encode() in r.get_data()  # the id as digits, never rounded

    for which in ("pre", "post"):
        r = do_query(api, get_connections_cypher([10017], which), headers=headers)
        assert r.status_code == 200, r.get_data(as_text=True)
        partners = [{"id": row[0], "type": row[1], "weight": row[2]} for row in r.get_json()["data"]]
        assert len(partners) == 3 and partners == sorted(partners, key=lambda p: (-p["weight"], p["id"]))


def test_a_dataset_without_a_tag_sends_its_key(api, dataset):
    r = do_query(api, get_types_cypher([1]), tag=None)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert dataset.received[0].json()["dataset"] == DS


def test_a_bad_query_is_neuprints_error_as_neuprint_sent_it(api, dataset):
    r = do_query(api, "MATCH (n) DETACH DELETE n")
    assert r.status_code == 400
    assert r.get_json() == {"error": "Invalid input: the stand-in cannot run 'MATCH (n) DETACH DELETE n'"}


# -- the dataset the body names ----------------------------------------------------------------


@pytest.mark.parametrize("asked", [DS, f"{DS}:{TAG}", f"{DS}:v1.1"])
def test_the_datasets_neuprint_dataset_or_a_version_of_it_is_queried(api, dataset, asked):
    body = {"cypher": get_types_cypher([1]), "dataset": asked}
    r = api.post(f"/v2/neuprint/{DS}", user=READER, json=body)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert dataset.received[0].json()["dataset"] == asked


@pytest.mark.parametrize("asked", ["manc:v1.0", "manc", f"{DS}:", f"{DS}x", f"{DS}:v1:x", f"x{DS}"])
def test_another_neuprint_dataset_is_403_and_reaches_neuprint_not_at_all(api, dataset, asked):
    """clio sent any dataset the body named to neuPrint with its own service token."""
    body = {"cypher": get_types_cypher([1]), "dataset": asked}
    r = api.post(f"/v2/neuprint/{DS}", user=READER, json=body)
    error = assert_error(r, 403, "forbidden")
    assert error["detail"] == error["message"] and repr(asked) in error["message"]
    assert dataset.received == []


def test_the_neuprint_dataset_defaults_to_the_datasets_name(api, neuprint_service):
    api.add_dataset("manc:v1.0", neuprintHTTP={"server": neuprint_service.server})
    body = {"cypher": get_types_cypher([1]), "dataset": "manc:v1.0"}
    assert api.post("/v2/neuprint/manc:v1.0", user=OWNER, json=body).status_code == 200
    body["dataset"] = "hemibrain"
    assert_error(api.post("/v2/neuprint/manc:v1.0", user=OWNER, json=body), 403, "forbidden")


def test_a_caller_who_may_not_read_the_dataset_reaches_neuprint_not_at_all(api, dataset):
    assert_error(do_query(api, get_types_cypher([1]), user=STRANGER), 404, "not_found")
    assert dataset.received == []


# -- the server ----------------------------------------------------------------------------------


def test_a_dataset_without_neuprint_is_400(api, dataset):
    api.add_dataset("mb20")
    body = {"cypher": get_types_cypher([1]), "dataset": "mb20"}
    error = assert_error(api.post("/v2/neuprint/mb20", user=OWNER, json=body), 400, "bad_request")
    assert "no neuPrint server" in error["detail"]
    api.add_dataset("mb21", neuprintHTTP={"dataset": "mb21"})  # a dataset there, no server
    body["dataset"] = "mb21"
    assert_error(api.post("/v2/neuprint/mb21", user=OWNER, json=body), 400, "bad_request")


@pytest.mark.parametrize(
    "server, url",
    [
        ("neuprint.janelia.org", "https://neuprint.janelia.org/api/custom/custom"),
        ("https://neuprint.janelia.org/", "https://neuprint.janelia.org/api/custom/custom"),
        (
            "HTTPS://neuprint-test.janelia.org:8443",
            "https://neuprint-test.janelia.org:8443/api/custom/custom",
        ),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000/api/custom/custom"),  # dev mode only
    ],
)
def test_the_server_is_a_host_with_or_without_https(test_env, server, url):
    from common.storage.datasets import Dataset

    neuprint = load_function("neuprint")
    assert neuprint.destination(Dataset(DS, {"neuprintHTTP": {"server": server}})).url == url


@pytest.mark.parametrize(
    "server",
    [
        "user@neuprint.janelia.org",
        "neuprint.janelia.org/api",
        "neuprint.janelia.org?x=1",
        "neuprint.janelia.org#x",
        "ftp://neuprint.janelia.org",
        "neuprint.janelia.org:port",
        "neu print.janelia.org",
        "https://",
    ],
)
def test_a_server_that_is_not_a_host_is_400(test_env, server):
    from common import errors
    from common.storage.datasets import Dataset

    neuprint = load_function("neuprint")
    with pytest.raises(errors.BadRequest):
        neuprint.destination(Dataset(DS, {"neuprintHTTP": {"server": server}}))


def test_plain_http_is_refused_outside_dev_mode(test_env, setting):
    """A deployment (never in dev mode) sends its token over https only."""
    from common import errors
    from common.storage.datasets import Dataset

    setting("GATEHOUSE_DEV_MODE", "")
    neuprint = load_function("neuprint")
    with pytest.raises(errors.BadRequest, match="https only"):
        neuprint.destination(Dataset(DS, {"neuprintHTTP": {"server": "http://neuprint.janelia.org"}}))


def test_only_admins_set_or_change_neuprint_http(api, neuprint_service):
    """It says where the deployment's neuPrint token goes: a dataset manager may not point it
    at a server of their own."""
    manager = "manager@example.com"
    api.add_dataset(DS, neuprintHTTP={"server": neuprint_service.server, "dataset": DS})
    api.add_user(manager, datasets={DS: ["dataset_admin"]})
    evil = {"neuprintHTTP": {"server": "neuprint.evil.example", "dataset": DS}}
    assert_error(api.put(f"/datasets/{DS}", user=manager, json=evil), 403, "forbidden")
    unchanged = {"neuprintHTTP": {"server": neuprint_service.server, "dataset": DS}, "description": "d"}
    assert api.put(f"/datasets/{DS}", user=manager, json=unchanged).status_code == 200
    assert api.put(f"/datasets/{DS}", user=OWNER, json=evil).status_code == 200


# -- neuPrint failing ------------------------------------------------------------------------------


def test_an_unreachable_neuprint_is_503_with_retry_after(api):
    api.add_dataset(DS, neuprintHTTP={"server": f"http://127.0.0.1:{free_port()}"})
    r = api.post(f"/v2/neuprint/{DS}", user=OWNER, json={"cypher": "MATCH (n) RETURN n", "dataset": DS})
    error = assert_error(r, 503, "unavailable")
    assert int(r.headers["Retry-After"]) >= 1 and "unreachable" in error["detail"]


def test_a_neuprint_that_does_not_answer_is_503_within_the_timeout(api, dataset, setting):
    setting("NEUPRINT_TIMEOUT_SECONDS", "0.5")
    dataset.delay = 3
    started = time.monotonic()
    r = do_query(api, get_types_cypher([1]))
    assert time.monotonic() - started < 2.5
    error = assert_error(r, 503, "unavailable")
    assert int(r.headers["Retry-After"]) >= 1 and "did not answer within 0.5 s" in error["detail"]


def test_neuprint_refusing_the_deployments_token_is_502_not_the_callers_401(api, dataset, setting):
    setting("NEUPRINT_TOKEN", "a-token-neuprint-does-not-know")
    error = assert_error(do_query(api, get_types_cypher([1])), 502, "bad_gateway")
    assert "NEUPRINT_TOKEN" in error["detail"]
    assert dataset.received[0].authorization == "Bearer a-token-neuprint-does-not-know"


@pytest.mark.parametrize(
    "status, code, expected",
    [
        (502, "unavailable", 503),
        (504, "unavailable", 503),
        (500, "bad_gateway", 502),
        (404, "not_found", 404),
    ],
)
def test_an_answer_that_is_not_json_is_the_envelope_with_detail(api, dataset, status, code, expected):
    """A proxy before neuPrint answers with a page: its status (503 with Retry-After when it
    says neuPrint is down) in our envelope, with `detail`."""
    dataset.script = lambda received: (status, "text/html", b"<html><body>nginx</body></html>")
    r = do_query(api, get_types_cypher([1]))
    error = assert_error(r, expected, code)
    assert f"HTTP {status}" in error["detail"]
    assert ("Retry-After" in r.headers) == (expected == 503)


def test_a_json_error_passes_through_with_its_status(api, dataset):
    dataset.script = lambda received: (429, "application/json", b'{"error": "too many queries"}')
    r = do_query(api, get_types_cypher([1]))
    assert r.status_code == 429 and r.get_data() == b'{"error": "too many queries"}'


def test_a_redirect_is_not_followed(api, dataset):
    dataset.script = lambda received: (301, "text/html", b"moved")
    assert_error(do_query(api, get_types_cypher([1])), 502, "bad_gateway")
    assert len(dataset.received) == 1


# -- the token -----------------------------------------------------------------------------------


def test_the_token_is_in_no_answer_and_no_log_line(api, dataset, setting, capfd):
    """Every outcome: a result, neuPrint's error, a refused token, a timeout, a refused dataset."""
    token = dataset.token
    capfd.readouterr()
    answers = [
        do_query(api, get_types_cypher([1])),
        do_query(api, "MATCH (n) RETURN n"),
        do_query(api, get_types_cypher([1]), key=DS, tag="other:x"),
    ]
    dataset.script = lambda received: (500, "text/plain", b"neuPrint crashed")
    answers.append(do_query(api, get_types_cypher([1])))
    dataset.script = lambda received: None
    setting("NEUPRINT_TIMEOUT_SECONDS", "0.2")
    dataset.delay = 1
    answers.append(do_query(api, get_types_cypher([1])))
    dataset.delay = 0
    setting("NEUPRINT_TOKEN", "wrong-" + token)
    answers.append(do_query(api, get_types_cypher([1])))
    assert [r.status_code for r in answers] == [200, 400, 403, 502, 503, 502]
    for r in answers:
        assert token not in r.get_data(as_text=True)
        assert not any(token in value for _, value in r.headers.items())
    logged = capfd.readouterr()
    lines = [json.loads(line) for line in logged.err.splitlines() if line.strip()]
    assert len([line for line in lines if "httpRequest" in line]) == len(answers)
    assert token not in logged.err and token not in logged.out
