"""End to end over HTTP: each function in its own functions-framework process, and the local
gateway that `make dev` serves, running the README's curl lines as written."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import requests

from common.version import VERSION
from tests.conftest import BUCKETS, OWNER, ROOT
from tests.utils import load_function
from tools import build_signatures, dev
from tools.emulators import free_port
from tools.gateway import function_names

FUNCTIONS = function_names()  # every functions/<name>/main.py


def _start(argv: list[str], env: dict[str, str], health: str, log_path: str) -> subprocess.Popen:
    log = open(log_path, "ab")
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{argv} exited; see {log_path}")
        try:
            if requests.get(health, timeout=1).status_code == 200:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{health} did not come up; see {log_path}")


def _env(test_env):
    return {**os.environ, **test_env, "PYTHONPATH": ROOT}


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
                _start(argv, _env(test_env), f"{base}/_health", os.path.join(workdir, f"{name}.log"))
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
    """(curl line, as whom): a block that starts `export TOKEN=$(make -s token EMAIL=x)` runs as x,
    the others as the owner (None)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    runs = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        who = re.match(r"export TOKEN=\$\(make -s token EMAIL=(\S+)\)", block)
        runs += [
            (line.split("  #")[0].strip(), who and who.group(1))
            for line in block.splitlines()
            if line.startswith("curl ")
        ]
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
    from common import authz, store, twinresults

    for line, who in readme_curl_runs():
        env = {**os.environ, "BASE": gateway, "TOKEN": api.token(who or OWNER)}
        if "PRIMARYKEY" in line:  # the entry the README posted (its id depends on mb20's generation)
            authz.forget_dataset("mb20")
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
        script = (
            'curl() { command curl -sS -f -o /dev/null -H "Authorization: Bearer $TOKEN" "$@"; }\n' + line
        )
        done = subprocess.run(
            ["bash", "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, (line, done.stderr)
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
    assert twinresults.loaded(request) == means  # computed from the private table, not the mock's rows
