"""functions.twins.sandbox: endpoint code runs in worker processes that are reused, stopped for real on a
timeout, capped in memory, result and output, and reach state and services only through the parent."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions.twins import sandbox
from functions.twins.sandbox import Program
from tests.utils import MemoryState


def run(code: str, state=None, helpers=(), settings=None, timeout_s=10.0, **kw):
    kwargs = kw.pop("kwargs", {})
    return sandbox.run(
        Program(code, list(helpers), settings or {}),
        kwargs,
        user={"email": "a@example.com", "roles": []},
        state=state if state is not None else MemoryState(),
        timeout_s=timeout_s,
        **kw,
    )


def test_a_call_runs_with_its_context_and_returns_json():
    state = MemoryState()
    outcome = run(
        "def f(context, x: int):\n    context.state['seen'] = x\n"
        "    return {'double': context.code.twice(x), 'key': context.settings['key'],\n"
        "            'user': context.user['email'], 'seen': context.state.get('seen'),\n"
        "            'n': context.state.increment('n', 2), 'has': 'seen' in context.state}\n",
        state,
        helpers=["def twice(x):\n    return 2 * x\n"],
        settings={"key": "secret"},
        kwargs={"x": 4},
    )
    assert outcome.status == "ok", outcome
    assert outcome.result == {
        "double": 8,
        "key": "secret",
        "user": "a@example.com",
        "seen": 4,
        "n": 2,
        "has": True,
    }
    assert state.values == {"seen": 4, "n": 2}
    assert outcome.duration_ms > 0


def test_warm_workers_are_reused():
    code = "def f(context):\n    import os\n    return os.getpid()\n"
    first, second = run(code), run(code)
    assert first.status == second.status == "ok"
    assert first.result == second.result


def test_the_worker_is_never_the_calling_process():
    import os

    assert run("def f(context):\n    import os\n    return os.getpid()\n").result != os.getpid()


def test_public_error_passes_with_its_status_and_message():
    outcome = run("def f(context):\n    raise context.PublicError('only SELECT', status=403)\n")
    assert (outcome.status, outcome.public_status, outcome.message) == ("public_error", 403, "only SELECT")
    assert run("def f(context):\n    raise context.PublicError('no')\n").public_status == 400


def test_an_exception_keeps_its_text_type_and_traceback_for_owners():
    outcome = run("def f(context):\n    print('private row 42')\n    raise KeyError('password=hunter2')\n")
    assert outcome.status == "error"
    assert outcome.error_type == "KeyError" and "hunter2" in outcome.message
    assert "Traceback" in outcome.traceback and "<endpoint>" in outcome.traceback
    assert outcome.stdout == "private row 42\n"


def test_a_call_past_its_timeout_is_stopped_and_the_next_call_works():
    state = MemoryState()
    started = time.monotonic()
    outcome = run(
        "def f(context):\n    import time\n    time.sleep(2)\n    context.state.set('marker', 1)\n",
        state,
        timeout_s=0.5,
    )
    assert outcome.status == "timeout"
    assert time.monotonic() - started < 1.5
    time.sleep(2.5)
    assert "marker" not in state.values  # the work really stopped
    assert run("def f(context):\n    return 'fine'\n").result == "fine"


def test_a_busy_loop_is_stopped_too():
    outcome = run("def f(context):\n    while True:\n        pass\n", timeout_s=0.3)
    assert outcome.status == "timeout"


def test_memory_over_the_cap_is_a_clear_outcome_and_the_worker_is_replaced():
    outcome = run(
        "def f(context):\n    block = bytearray(300 * 1024 * 1024)\n    return len(block)\n", memory_mb=64
    )
    assert outcome.status == "memory"
    assert "64 MiB" in outcome.message
    assert run("def f(context):\n    return len(bytearray(10 * 1024 * 1024))\n").result == 10 * 1024 * 1024


def test_results_must_be_json_and_within_the_cap():
    assert run("def f(context):\n    return {1, 2}\n").status == "not_serializable"
    assert run("def f(context):\n    return float('nan')\n").status == "not_serializable"
    too_large = run("def f(context):\n    return 'x' * 2000\n", max_result_bytes=1000)
    assert too_large.status == "result_too_large" and "1000" in too_large.message
    assert run("def f(context):\n    return 'x' * 900\n", max_result_bytes=1000).status == "ok"


def test_output_is_captured_per_call_and_capped():
    outcome = run(
        "def f(context):\n    import sys\n    print('a' * 5000)\n    print('oops', file=sys.stderr)\n",
        max_output_bytes=100,
    )
    assert outcome.stdout.startswith("a" * 100) and outcome.stdout.endswith("[output truncated]\n")
    assert outcome.stderr == "oops\n"
    assert run("def f(context):\n    return 1\n").stdout == ""


def test_a_worker_that_dies_is_an_error_and_is_replaced():
    outcome = run("def f(context):\n    import os\n    os._exit(7)\n")
    assert outcome.status == "error" and "exit code 7" in outcome.message
    assert run("def f(context):\n    return 2\n").result == 2


def test_state_errors_in_the_parent_reach_the_code_as_exceptions():
    class Refusing(MemoryState):
        def set(self, key, value):
            raise ValueError("a state value is at most 100 bytes")

    outcome = run("def f(context):\n    context.state.set('k', 'v' * 1000)\n", Refusing())
    assert outcome.status == "error" and "at most 100 bytes" in outcome.message


def test_concurrent_calls_increment_exactly():
    state = MemoryState()
    code = "def f(context):\n    for _ in range(10):\n        context.state.increment('n')\n    return True\n"
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda _: run(code, state), range(12)))
    assert all(o.status == "ok" for o in outcomes)
    assert state.values["n"] == 120


def test_services_are_parent_side_callables():
    calls = []

    def lookup(path, **kwargs):
        calls.append((path, kwargs))
        return {"rows": [1, 2]}

    outcome = run(
        "def f(context):\n    return context.services.endpoint('warehouse.query', sql='SELECT 1')\n",
        services={"endpoint": lookup},
    )
    assert outcome.result == {"rows": [1, 2]}
    assert calls == [("warehouse.query", {"sql": "SELECT 1"})]
    missing = run("def f(context):\n    return context.services.nope()\n")
    assert missing.status == "error" and "nope" in missing.message


@pytest.fixture(autouse=True, scope="module")
def _stop_workers():
    yield
    sandbox.shutdown()
