"""The OpenAPI documents are true: schemathesis runs every function's document against the local
stack (tools/gateway.py over HTTP, on the session's emulators), seeded with the `make dev`
demo and called with the owner's bearer token. Bounded (MAX_EXAMPLES per operation) and
deterministic (derandomized: the same cases every run): no answer may be a 5xx, and every answer must have a status,
content type, headers and body its document allows."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import BUCKETS, OWNER
from tools import build_signatures, dev
from tools.gateway import function_names

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))
# What the run asserts (SCHEMATHESIS_CHECKS=all adds the data-acceptance checks, which need the
# typed query parameters of route declarations to pass; SCHEMATHESIS_REPORTS keeps the reports).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
)
# One public endpoint whose code cannot fail, so generated calls reach it and answer 200 or 4xx.
ECHO_TWIN = {
    "path": "warehouse.query",
    "description": "Echoes its argument.",
    "public": {"code": "def echo(context, text=None):\n    return {'text': repr(text)}\n"},
}


def seed_demo(api, workdir) -> None:
    """What `make dev` seeds (tools/dev.py), through the API, plus one public twin endpoint."""
    for method, path, body in dev.demo(OWNER):
        r = api.call(method, path, user=OWNER, json=body)
        assert r.status_code in (200, 201), (path, r.get_data(as_text=True))
    r = api.post("/twins", user=OWNER, json=ECHO_TWIN)
    assert r.status_code == 201, r.get_data(as_text=True)
    points = dev.demo_signatures(os.path.join(workdir, "schemathesis-signatures.npy"), count=50, copies=5)
    build_signatures.build(BUCKETS[1], "hemibrain", build_signatures.read_records(points))


def run_schemathesis(base: str, function: str, token: str, report: str) -> subprocess.CompletedProcess:
    argv = [
        os.path.join(os.path.dirname(sys.executable), "st"),
        "run",
        f"{base}/{function}/_openapi.json",
        "--url",
        base,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        os.environ.get("SCHEMATHESIS_CHECKS", ",".join(CHECKS)),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-deterministic",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        report,
    ]
    # In a directory of its own: schemathesis keeps a cache of past failures in its working
    # directory and replays them, which would make one run depend on the last.
    cwd = os.path.join(os.path.dirname(report), f"schemathesis-{function}")
    os.makedirs(cwd, exist_ok=True)
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=cwd)


@pytest.mark.parametrize("function", function_names())
def test_the_document_is_true_of_the_running_stack(gateway, api, workdir, function):
    seed_demo(api, workdir)
    report = os.path.join(os.environ.get("SCHEMATHESIS_REPORTS", workdir), f"schemathesis-{function}.ndjson")
    done = run_schemathesis(gateway, function, api.token(OWNER), report)
    summary = done.stdout[-8000:] + done.stderr[-2000:]
    with open(report + ".txt", "w") as f:
        f.write(done.stdout)
    assert done.returncode == 0, summary
    figures = figures_of(done.stdout)
    print(f"\nschemathesis {function}: {figures}")
    assert figures["operations"] > 0 and figures["examples"] > 0 and figures["failures"] == 0, summary


def figures_of(output: str) -> dict[str, int]:
    """Operations tested, test cases (examples) run and failures, from the run's summary."""
    import re

    def number(pattern: str) -> int:
        found = re.search(pattern, output)
        return int(found.group(1)) if found else 0

    return {
        "operations": number(r"Tested: (\d+)"),
        "examples": number(r"(\d+) generated"),
        "failures": number(r"(\d+) failed"),
    }
