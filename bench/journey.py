"""The researcher's and the owner's journey from `git clone` to a governed private result, timed,
doing exactly the README's steps (its "The two commands" and "Python" sections, and the steps at
the top of examples/walkthrough.py) in a fresh clone of this checkout's HEAD:

1. `git clone`;
2. `make dev PORT=...` (the venv from requirements-dev.txt, pip's cache as it is on this
   machine; the emulators; every function; the seeded demo), until it prints the token;
3. `make -s token EMAIL=researcher@example.com`;
4. `.venv/bin/python examples/walkthrough.py`: the researcher prototypes on the mock and submits
   code, the owner reviews it (`show()`) and approves, the researcher runs it once: the result.

Goal: under 2 minutes on this machine. Each step's seconds (and the walkthrough's moments) are
printed; what the owner saw before approving is kept in .bench/journey-review.txt.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.emulators import free_port  # noqa: E402

RESEARCHER = "researcher@example.com"
# What examples/walkthrough.py prints as each part of the journey ends.
MOMENTS = {
    "researcher_submitted_s": "Request(",
    "owner_reviewed_s": "on the mock sides:",
    "owner_approved_s": "approved aggregates only",
    "private_result_s": "private result:",
}


def _timed(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout


def run() -> dict[str, float]:
    results: dict[str, float] = {}
    workdir = tempfile.mkdtemp(prefix="gatehouse-journey-")
    clone = os.path.join(workdir, "gatehouse")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()

    results["clone_s"], _ = _timed(["git", "clone", "--quiet", ROOT, clone], workdir, env)

    step = time.perf_counter()
    dev = subprocess.Popen(
        ["make", "dev", f"PORT={port}"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stopped as Ctrl-C stops it
    )
    log: list[str] = []
    token = ""
    try:
        assert dev.stdout is not None
        for line in dev.stdout:
            log.append(line)
            if ".venv is ready." in line:
                results["make_dev_venv_s"] = time.perf_counter() - step
            found = re.match(r"\s*export TOKEN=(\S+)", line)
            if found:
                token = found.group(1)
                break
        if not token:
            raise RuntimeError("make dev stopped before printing the token:\n" + "".join(log[-40:]))
        results["make_dev_s"] = time.perf_counter() - step
        threading.Thread(target=lambda: [log.append(line) for line in dev.stdout], daemon=True).start()

        took, researcher_token = _timed(["make", "-s", "token", f"EMAIL={RESEARCHER}"], clone, env)
        results["token_s"] = took

        step = time.perf_counter()
        walk_env = {
            **env,
            "GATEHOUSE_URL": base,
            "OWNER_TOKEN": token,
            "RESEARCHER_TOKEN": researcher_token.strip(),
            "PYTHONUNBUFFERED": "1",
        }
        walk = subprocess.Popen(
            [".venv/bin/python", "examples/walkthrough.py"],
            cwd=clone,
            env=walk_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        printed: list[str] = []
        assert walk.stdout is not None
        for line in walk.stdout:
            printed.append(line)
            for name, marker in MOMENTS.items():
                if name not in results and marker in line:
                    results[name] = time.perf_counter() - step
        if walk.wait() != 0 or "private_result_s" not in results:
            raise RuntimeError("the walkthrough failed:\n" + "".join(printed))
        results["walkthrough_s"] = time.perf_counter() - step
        results["journey_s"] = time.perf_counter() - started
        shown = "".join(printed)
        review = shown[shown.index("\nRequest ") + 1 : shown.index("on the mock sides:")]
        os.makedirs(os.path.join(ROOT, ".bench"), exist_ok=True)
        with open(os.path.join(ROOT, ".bench", "journey-review.txt"), "w") as f:
            f.write(review)
        print("What the owner saw before approving (review.show()):\n" + review)
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # as Ctrl-C: the stack saves its data and stops
        try:
            dev.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
    return results
