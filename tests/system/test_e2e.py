"""End to end over HTTP: each function in its own functions-framework process, and the local
gateway that `make dev` serves, running the README's curl lines as written."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import requests

from common.version import VERSION
from tests.conftest import BUCKETS, OWNER, ROOT
from tests.utils import load_function, server_env, start_server
from tools import build_signatures, dev
from tools.emulators import free_port
from tools.gateway import function_names

FUNCTIONS = function_names()  # every functions/<name>/main.py


@pytest.fixture(scope="session")
def servers(test_env, workdir):
    """{function: base URL}, one functions-framework process each."""
    bindir = os.path.dirname(sys.executable)
    processes, urls = [], {}
    try:
        for name in FUNCTIONS:
            port = free_port()
            argv = [
                os.path.join(bindir, "functions-framework"),
                "--target",
                "handle",
                "--host",
                "127.0.0.1",
                "--source",
                os.path.join(ROOT, "functions", name, "main.py"),
                "--port",
                str(port),
            ]
            base = f"http://127.0.0.1:{port}"
            processes.append(
                start_server(
                    argv, server_env(test_env), f"{base}/_health", os.path.join(workdir, f"{name}.log")
                )
            )
            urls[name] = base
        yield urls
    finally:
        for p in processes:
            p.terminate()
            p.wait(timeout=10)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_health_over_http(servers, function):
    r = requests.get(f"{servers[function]}/_health", timeout=5)
    assert r.json() == {"status": "ok", "function": function, "version": f"{VERSION}+test"}
    assert r.headers["X-Request-Id"]


def test_google_token_over_http(servers, api):
    r = requests.get(
        f"{servers['roles']}/", headers=bearer(api.google_token("Reader@Example.com")), timeout=5
    )
    assert r.status_code == 200 and r.json()["email"] == "reader@example.com"
    r = requests.get(f"{servers['roles']}/", headers=bearer(api.google_token(aud="other")), timeout=5)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert r.json()["error"] == "unauthenticated"


def test_dataset_flow_over_http(servers, api):
    owner, researcher = bearer(api.token(OWNER)), bearer(api.token("researcher@example.com"))
    users, datasets = servers["users"], servers["datasets"]
    r = requests.post(f"{datasets}/", headers=owner, json={"manc": {"description": "nerve cord"}}, timeout=10)
    assert r.status_code == 200
    stranger = bearer(api.token("stranger@example.com"))
    assert requests.get(f"{datasets}/manc", headers=stranger, timeout=5).status_code == 404
    r = requests.post(
        f"{users}/",
        headers=owner,
        timeout=10,
        json={"researcher@example.com": {"datasets": {"manc": ["clio_read"]}}},
    )
    assert r.status_code == 200
    assert (
        requests.get(f"{datasets}/manc", headers=researcher, timeout=5).json()["description"] == "nerve cord"
    )
    files = {"attachment": ("notes.txt", b"hello", "text/plain")}
    r = requests.post(
        f"{datasets}/manc/attachments", headers=owner, data={"name": "notes.txt"}, files=files, timeout=10
    )
    assert r.status_code == 201
    listed = requests.get(f"{datasets}/manc/attachments", headers=researcher, timeout=5).json()
    assert requests.get(listed[0]["url"], timeout=5).content == b"hello"
    r = requests.post(
        f"{datasets}/manc/attachments", headers=researcher, data={"name": "x"}, files=files, timeout=10
    )
    assert r.status_code == 403 and r.json()["error"] == "forbidden"


def readme_curl_lines() -> list[str]:
    return [line for line, _ in readme_curl_runs()]


def readme_curl_runs() -> list[tuple[str, str | None]]:
    """(curl line, as whom), as the sh blocks run pasted in order in one shell: the owner (None)
    at first, then whoever the last `export TOKEN=$(make -s token EMAIL=x)` line made TOKEN's."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    runs: list[tuple[str, str | None]] = []
    who: str | None = None
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            export = re.match(r"export TOKEN=\$\(make -s token EMAIL=(\S+)\)", line)
            if export:
                who = None if export.group(1) == OWNER else export.group(1)
            elif line.startswith("curl "):
                runs.append((line.split("  #")[0].strip(), who))
    return runs


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_lines_work_as_written(gateway, api, workdir, s3_server):
    lines = readme_curl_lines()
    seed = [
        'datasets -d \'{"mb20"',
        'annotations/mb20?x=50\\&y=30\\&z=50 -d \'{"foo": "bar"}\'',
        "savedsearches/mb20?x=50\\&y=30\\&z=50",
        "$BASE/atlas/all",
        "atlas/verify/PRIMARYKEY",
    ]
    assert all(any(s in line for line in lines) for s in seed)  # the seed's own examples
    api.add_dataset("hemibrain", public=True)
    demo = dev.demo_signatures(os.path.join(workdir, "hemibrain-signatures.npy"))
    build_signatures.build(BUCKETS[1], "hemibrain", build_signatures.read_records(demo), progress=False)
    api.add_user("researcher@example.com", global_roles=["clio_general"], datasets={"manc": ["clio_read"]})
    api.add_dataset("manc")
    from examples import warehouse  # the twins example, as make dev seeds it

    s3_server.reset()
    warehouse.upload_table(s3_server.credentials)
    for body in warehouse.definitions(s3_server.credentials, dataset="manc"):
        assert api.post("/twins", user=OWNER, json=body).status_code == 201
    key_id = api.post("/users/me/keys", user=OWNER, json={"name": "to-revoke"}).get_json()["id"]
    from common.storage import datasets, store
    from functions.twins import results

    answers: dict[str, list] = {}  # README line -> the JSON bodies it answered, in order
    for line, who in readme_curl_runs():
        written = line
        env = {**os.environ, "BASE": gateway, "TOKEN": api.token(who or OWNER)}
        if "PRIMARYKEY" in line:  # the entry the README posted (its id depends on mb20's generation)
            datasets.forget("mb20")
            line = line.replace("PRIMARYKEY", load_function("atlas").entry_id("mb20", OWNER, "50_30_50"))
        for placeholder, collection in (("REQUEST_ID", "twin_requests"), ("TWIN_JOB_ID", "twin_jobs")):
            if placeholder in line:  # the newest the README made (its answer carries the id)
                newest = store.collection(collection).order_by("created_at", direction="DESCENDING").limit(1)
                line = line.replace(placeholder, next(newest.stream()).id)
        if "JOB_ID" in line:  # the README polls a job of the owner's, made after mb20
            job = store.collection("transfer_jobs").document()
            job.set({"user": OWNER, "dataset": "mb20", "status": "done", "created_at": store.now()})
            line = line.replace("JOB_ID", job.id)
        line = line.replace("KEY_ID", key_id)
        script = 'curl() { command curl -sS -f -H "Authorization: Bearer $TOKEN" "$@"; }\n' + line
        done = subprocess.run(
            ["bash", "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, (line, done.stderr)
        answers.setdefault(written, []).append(json.loads(done.stdout) if done.stdout.strip() else None)
    _check_readme_answers(answers, key_id)
    # The README's request ran once, on the private data, and its async call finished.
    request = next(store.collection("twin_requests").stream()).to_dict()
    assert request["status"] == "done", request.get("outcome")
    with open(os.path.join(ROOT, "examples", "warehouse", "cells.csv")) as f:
        rows = list(csv.DictReader(f))
    regions = {row["region"] for row in rows}
    means = {
        r: round(
            sum(int(x["synapses"]) for x in rows if x["region"] == r) / sum(x["region"] == r for x in rows), 1
        )
        for r in regions
    }
    assert results.loaded(request) == means  # computed from the private table, not the mock's rows
    assert _answer(answers, "curl -X POST $BASE/twins/requests/REQUEST_ID/run")["result"] == means
    assert sum(
        n for _, n in _answer(answers, "curl -X POST $BASE/twins/warehouse.query/private")["result"]["rows"]
    ) == len(rows)
    # The revoked key is gone.
    assert key_id not in {k["id"] for k in api.get("/users/me/keys", user=OWNER).get_json()}


def _answer(answers: dict[str, list], line: str, nth: int = -1):
    """The JSON body the README line `line` answered (a line is named whole, or by its unique
    beginning); `nth` picks among the answers of a line the README runs more than once."""
    if line not in answers:
        named = [k for k in answers if k.startswith(line)]
        assert len(named) == 1, (line, named)
        line = named[0]
    return answers[line][nth]


def _check_readme_answers(answers: dict[str, list], key_id: str) -> None:
    """What the README's lines answered, beyond their status: each change is seen by the reads
    after it, with the values the README sent."""
    from urllib.parse import unquote

    def a(line, nth=-1):
        return _answer(answers, line, nth)

    # users and keys
    me = a("curl $BASE/roles")
    assert me["email"] == OWNER and me["global_roles"] == ["admin"]
    someone = {"datasets": {"hemibrain": ["clio_write"]}, "global_roles": ["clio_general"]}
    assert a("curl -X POST $BASE/users ")["someone@example.com"].items() >= someone.items()
    assert a("curl $BASE/users")["someone@example.com"].items() >= someone.items()
    assert a("curl -X DELETE $BASE/users ") == {"deleted": ["someone@example.com"]}
    assert a("curl $BASE/users/me")["email"] == OWNER
    laptop = a("curl -X POST $BASE/users/me/keys ")
    assert laptop["name"] == "laptop" and laptop["key"].startswith(f"ghk_{laptop['id']}_")
    listed = a("curl $BASE/users/me/keys")
    assert {k["id"] for k in listed} == {laptop["id"], key_id} and not any("key" in k for k in listed)
    assert a("curl -X POST $BASE/users/researcher@example.com/keys")["key"].startswith("ghk_")
    # datasets and attachments
    made = a('curl -X POST -H "Content-Type: application/json" $BASE/datasets')["mb20"]
    assert made["description"] == "4nm MB" and made["location"] == "gs://em-data/mb20"
    assert "mb20" in a("curl $BASE/datasets")
    assert a("curl $BASE/datasets/mb20")["description"] == "4nm MB"
    changed = a("curl -X PUT $BASE/datasets/mb20")
    assert changed["public"] is True and changed["tags"] == ["fly"] and changed["transfer"] == ["denoise"]
    size = os.path.getsize(os.path.join(ROOT, "README.md"))
    assert a("curl -X POST $BASE/datasets/mb20/attachments") == {"name": "notes.txt", "size": size}
    assert [(f["name"], f["size"]) for f in a("curl $BASE/datasets/mb20/attachments")] == [
        ("notes.txt", size)
    ]
    assert a("curl -X POST $BASE/datasets/mb20/finalize")["finalized_by"] == OWNER
    assert [e["action"] for e in a('curl "$BASE/datasets/mb20/logs')] == [
        "finalize",
        "attachment_delete",
        "attachment_upload",
        "dataset_update",
        "dataset_create",
    ]
    # annotations, saved searches, atlas: what was posted is read back
    assert a("curl $BASE/annotations/mb20")["50_30_50"]["foo"] == "bar"
    assert a("curl -X DELETE $BASE/annotations/mb20") == {"deleted": "50_30_50"}
    moved = a('curl "$BASE/annotations/v2/mb20?kind=point&tag=synapse"')
    assert [(x["key"], x["pos"], x["tags"]) for x in moved] == [("Pt51_30_50", [51, 30, 50], ["synapse"])]
    assert {x["key"] for x in a('curl "$BASE/annotations/v2/mb20?limit=100"')} == {
        "Ln0_0_0_10_10_10",
        "Pt51_30_50",
        "Sp5_5_5_9_9_9",
    }
    others = a('curl "$BASE/annotations/v2/mb20?user=researcher@example.com"')
    assert [(x["key"], x["user"]) for x in others] == [("Pt1_2_3", "researcher@example.com")]
    assert a("curl $BASE/savedsearches/mb20")["50_30_50"]["foo"] == "bar"
    entry = a("curl -X POST $BASE/atlas/mb20")
    assert entry["title"] == "weird point" and entry["verified"] is False
    assert a("curl $BASE/atlas/mb20")["50_30_50"]["id"] == entry["id"]
    assert entry["id"] in {e["id"] for e in a("curl $BASE/atlas/all")}
    assert a("curl -X POST $BASE/atlas/verify/PRIMARYKEY", 0)["verified"] is True  # toggled
    assert a("curl -X POST $BASE/atlas/verify/PRIMARYKEY -d")["verified"] is True  # set
    assert a("curl -X DELETE $BASE/atlas/mb20") == {"deleted": entry["id"]}
    # signatures
    point = a('curl "$BASE/signatures/atlocation/hemibrain')["point"]
    assert sum((p - q) ** 2 for p, q in zip(point, (17000, 20000, 18010))) <= 100**2
    matches = a('curl "$BASE/signatures/likelocation/hemibrain')["matches"]
    assert matches and [m["dist"] for m in matches] == sorted(m["dist"] for m in matches)
    assert all(m["score"] == 1 - m["dist"] / 8 for m in matches)
    # transfer: where the volume is written, and the neuroglancer link shows that source
    transfer = a("curl -X POST $BASE/transfer")
    assert transfer["source"].startswith(f"precomputed://gs://{BUCKETS[2]}/volumes/")
    assert f'"source":"{transfer["source"]}"' in unquote(transfer["addr"])
    assert transfer["job"] in {j["id"] for j in a('curl "$BASE/transfer?limit=20"')}
    deleted = a("curl -X DELETE $BASE/datasets -d")
    assert deleted["deleted"] == ["mb20"]
    assert deleted["deletions"][0]["id"] in {d["id"] for d in a("curl $BASE/datasets/_deletions")}
    # twins: each side's result, the definition's view
    assert a("curl -X POST $BASE/twins -d")["path"] == "demo.greet"
    assert "demo.greet" in {t["path"] for t in a("curl $BASE/twins")}
    assert a("curl $BASE/twins/demo.greet")["mock"]["code"].startswith("def greet(context, name: str)")
    assert set(a('curl "$BASE/twins/demo.greet?full=true"')["sides"]) == {"mock", "private"}
    assert a("curl -X POST $BASE/twins/demo.greet -d") == {"result": "bonjour Ada"}
    assert a("curl -X POST $BASE/twins/demo.greet/mock") == {"result": "hello Ada (mock)"}
    patched = a("curl -X PATCH $BASE/twins/demo.greet")
    assert (
        patched["rate_limit"] == {"calls": 100, "per_seconds": 60} and patched["hide_mock_definition"] is True
    )
    assert {c["side"] for c in a("curl $BASE/twins/demo.greet/calls")} == {"mock", "private"}
    assert "cells" in a("curl -X POST $BASE/twins/warehouse.schema")["result"]["tables"]
    mock = a("curl -X POST $BASE/twins/warehouse.query -d")["result"]
    assert mock["columns"] == ["region", "avg(synapses)"] and mock["rows"]
    request = a("curl -X POST $BASE/twins/requests -d")
    assert request["status"] == "pending" and request["requester"] == "researcher@example.com"
    assert request["id"] in {r["id"] for r in a('curl "$BASE/twins/requests?status=pending"')}
    approved = a("curl -X POST $BASE/twins/requests/REQUEST_ID/approve")
    assert approved["status"] == "approved" and approved["decided_by"] == OWNER
    job = a('curl -X POST "$BASE/twins/requests/REQUEST_ID/run?async=1"')
    assert a("curl $BASE/twins/jobs/TWIN_JOB_ID")["id"] == job["id"]
    assert a("curl $BASE/twins/requests/REQUEST_ID")["status"] == "done"
