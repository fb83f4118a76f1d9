"""The README's "Python" section, run as written (as tests/test_e2e.py runs its curl lines)
against the local stack seeded as `make dev` seeds it, in a fresh process: as a file, and fed
line by line to a plain `python -i` prompt, where a function typed in keeps no source."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import OWNER, ROOT

MAKE_DEV_URL = "http://127.0.0.1:8080"
# What the section prints: the frame, the matches, the transfer, the twin, the review, the try,
# the request's run, the job's frame.
PRINTED = (
    "Pt50_30_50",
    "'dist': ",
    "done",
    "'columns': ['region'",
    "  1 | def regional_means(query):",
    "Approving binds this code exactly",
    "{'AL': ",
    "count(*)",
)


def readme_python_blocks() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = re.search(r"^## Python\n(.*?)^## ", text, re.S | re.M).group(1)
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def seeded(gateway, api, workdir, s3_server):
    """The stack as `make dev` seeds it: hemibrain with signatures, manc with the warehouse twins."""
    from examples import warehouse
    from tests.conftest import BUCKETS
    from tools import build_signatures, dev

    api.add_dataset("hemibrain", public=True)
    demo = dev.demo_signatures(os.path.join(workdir, "readme-signatures.npy"))
    build_signatures.build(BUCKETS[1], "hemibrain", build_signatures.read_records(demo), progress=False)
    api.add_dataset("manc")
    s3_server.reset()
    warehouse.upload_table(s3_server.credentials)
    for body in warehouse.definitions(s3_server.credentials, dataset="manc"):
        assert api.post("/twins", user=OWNER, json=body).status_code == 201
    return {
        **os.environ,
        "GATEHOUSE_TOKEN": api.token(OWNER),
        "PYTHONPATH": os.path.join(ROOT, "client"),
    }


def _source(gateway: str) -> str:
    blocks = readme_python_blocks()
    assert blocks and len(blocks[0].strip().splitlines()) <= 14  # about ten lines
    assert all(MAKE_DEV_URL in block for block in blocks[:1])
    return "\n".join(blocks).replace(MAKE_DEV_URL, gateway)


def test_readme_python_section_runs_as_written_as_a_file_and_line_by_line(seeded, gateway, api, tmp_path):
    """As a file, then each line typed at `python -i`'s prompt in turn (stdin is the lines): a
    line the prompt cannot take as typed (an indented block not closed by a blank line, say), or
    any error, shows up as a traceback on stderr. (One test on one seeded stack: the gateway's
    signatures process keeps a dataset's index info for a while.)"""
    script = tmp_path / "readme.py"
    script.write_text(_source(gateway))
    done = subprocess.run(
        [sys.executable, str(script)], env=seeded, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    for text in PRINTED:
        assert text in done.stdout, (text, done.stdout)
    assert "mb20" not in api.get("/datasets", user=OWNER).get_json()

    lines = _source(gateway).splitlines()
    typed = subprocess.run(
        [sys.executable, "-i", "-q"],
        input="\n".join(lines) + "\n\nimport sys; sys.exit(0)\n",
        env=seeded,
        capture_output=True,
        text=True,
        timeout=180,
    )
    errors = [line for line in typed.stderr.splitlines() if "Error" in line or "Traceback" in line]
    assert typed.returncode == 0 and not errors, typed.stderr
    assert typed.stderr.count(">>> ") >= len([x for x in lines if x and not x[0].isspace()])  # typed in
    for text in PRINTED:
        assert text in typed.stdout, (text, typed.stdout)
    assert "mb20" not in api.get("/datasets", user=OWNER).get_json()
