"""examples/walkthrough.py, the researcher's and the owner's journey cell by cell (`# %%`), run
against the test session's stack as `make dev` serves it, so it cannot rot: as a script, and
cell by cell in one namespace as a notebook kernel runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import OWNER, RESEARCHER, ROOT

WALKTHROUGH = os.path.join(ROOT, "examples", "walkthrough.py")


def _env(gateway, api):
    return {
        **os.environ,
        "GATEHOUSE_URL": gateway,
        "OWNER_TOKEN": api.token(OWNER),
        "RESEARCHER_TOKEN": api.token(RESEARCHER),
        "PYTHONPATH": os.path.join(ROOT, "client"),
    }


def test_the_walkthrough_runs_cell_by_cell_to_a_governed_private_result(gateway, api, warehouse, tmp_path):
    with open(WALKTHROUGH) as f:
        source = f.read()
    cells = [c for c in re.split(r"^# %%.*$", source, flags=re.M) if c.strip()]
    code_cells = [c for c in cells if any(line and not line.startswith("#") for line in c.splitlines())]
    assert len(code_cells) >= 6
    # A notebook kernel: each cell executed in turn in one namespace, its output after a marker,
    # its source kept in linecache under the cell's name as IPython keeps it (so a function
    # defined in a cell has its source, as in Jupyter).
    runner = tmp_path / "kernel.py"
    runner.write_text(
        "import linecache, re, sys\n"
        "source = open(sys.argv[1]).read()\n"
        "namespace = {'__name__': '__main__'}\n"
        "for n, cell in enumerate(c for c in re.split(r'^# %%.*$', source, flags=re.M) if c.strip()):\n"
        "    print(f'--- cell {n}', flush=True)\n"
        "    name = f'<ipython-input-{n}>'\n"
        "    linecache.cache[name] = (len(cell), None, cell.splitlines(True), name)\n"
        "    exec(compile(cell, name, 'exec'), namespace)\n"
    )
    done = subprocess.run(
        [sys.executable, str(runner), WALKTHROUGH],
        env=_env(gateway, api),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"--- cell {len(cells) - 1}" in out
    assert RESEARCHER in out and "Listing of datasets: [Dataset({'name': 'manc'" in out
    assert (
        "'warehouse'" in out
        and "<twin endpoint warehouse.query(*, sql: str, limit: int = 100) on manc" in out
    )
    assert "Parameters (keyword only):" in out  # help()
    assert (
        "422 validation_error: the arguments do not match the endpoint's parameters\n  limit: expected an integer"
        in out
    )
    assert f"Request {out.split('Request ')[1].split()[0]} (pending), from {RESEARCHER}" in out  # show()
    assert "  1 | def regional_means(query):" in out and "Approving binds this code exactly" in out
    assert "on the mock sides: {" in out and "approved aggregates only" in out
    mock_result = out.split("on the mock sides: ")[1].splitlines()[0]
    private_result = out.split("private result: ")[1].splitlines()[0]
    assert private_result != mock_result and "done" in out and "ok " in out
    print(out)  # the journey, as a person running the notebook sees it (pytest -s)

    # As a plain script too (Jupyter's "run all" and `python examples/walkthrough.py` alike).
    api.add_dataset("manc")  # the same stack, a second pass: a new request
    script = subprocess.run(
        [sys.executable, WALKTHROUGH], env=_env(gateway, api), capture_output=True, text=True, timeout=240
    )
    assert script.returncode == 0, script.stderr
    assert "private result: " in script.stdout
