"""`pip install ./client` works as the README says: a plain (not editable) install of the
package, importable as `gatehouse`, at the project's version."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import OWNER, ROOT
from gatehouse import Gatehouse


def test_pip_install_of_the_client_folder(tmp_path):
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "--quiet"]
        + ["--target", str(target), os.path.join(ROOT, "client")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    code = "import gatehouse; print(gatehouse.__file__); print(gatehouse.__version__)"
    env = {**os.environ, "PYTHONPATH": str(target)}
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    where, version = shown.stdout.split()
    from common.version import VERSION

    assert where.startswith(str(target)) and version == VERSION
    assert {"__init__.py", "auth.py", "client.py", "resources.py", "twins.py"} <= set(
        os.listdir(target / "gatehouse")
    )
    assert "py.typed" in os.listdir(target / "gatehouse")  # typed for the projects that use it (PEP 561)


def test_the_client_type_checks_and_imports_without_a_cycle():
    """`make types` checks client/gatehouse too (pyproject.toml's mypy files); each module
    imports on its own in a fresh process (no lazy import hides a cycle)."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "client/gatehouse"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "client")}
    for module in ("gatehouse._http", "gatehouse.records", "gatehouse.resources", "gatehouse.twins"):
        code = f"import {module}, sys; print(sorted(m for m in sys.modules if m.startswith('gatehouse')))"
        shown = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
    source = open(os.path.join(ROOT, "client", "gatehouse", "client.py")).read()
    assert "        from gatehouse import" not in source  # no import inside a function


def test_close_and_context_manager(gateway, api):
    with Gatehouse(gateway, token=api.token(OWNER), progress=False) as gh:
        assert gh.whoami()["email"] == OWNER
        pool = gh._session.get_adapter(gateway).poolmanager
        assert len(pool.pools) == 1
    assert len(pool.pools) == 0  # closed at the end of the block
    assert gh.whoami()["email"] == OWNER  # a closed client opens a connection again if used
    gh.close()
