"""`pip install ./client` works as the README says: a plain (not editable) install of the
package, importable as `gatehouse`, at the project's version."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


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
