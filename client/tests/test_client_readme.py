"""The README's "Python" section, run as written (as tests/test_e2e.py runs its curl lines)
against the local stack seeded as `make dev` seeds it, in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import OWNER, ROOT

MAKE_DEV_URL = "http://127.0.0.1:8080"


def readme_python_blocks() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = re.search(r"^## Python\n(.*?)^## ", text, re.S | re.M).group(1)
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_python_section_runs_as_written(gateway, api, workdir, s3_server, tmp_path):
    blocks = readme_python_blocks()
    assert blocks and len(blocks[0].strip().splitlines()) <= 14  # about ten lines
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

    env = {
        **os.environ,
        "GATEHOUSE_TOKEN": api.token(OWNER),
        "PYTHONPATH": os.path.join(ROOT, "client"),
    }
    script = tmp_path / "readme.py"  # a file, as inspect.getsource needs one for submit()
    script.write_text("\n".join(blocks).replace(MAKE_DEV_URL, gateway))
    assert all(MAKE_DEV_URL in block for block in blocks[:1])
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    printed = ("Pt50_30_50", "'dist': ", "done", "'columns': ['region'", "{'AL': ", "'rows': [[")
    for text in printed:  # the frame, the matches, the transfer, the twin, the request's run, the job
        assert text in done.stdout, (text, done.stdout)
    assert "mb20" not in api.get("/datasets", user=OWNER).get_json()
