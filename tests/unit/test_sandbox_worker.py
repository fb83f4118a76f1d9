"""functions/twins/sandbox_worker.py in-process: its pure parts (the capped streams, the result's JSON,
the function's name), a job run by `execute` against a remote that answers as the parent does
(functions.twins.sandbox._serve), the channel over a socket pair, and `serve` and `boot` driving it.

In production this source runs only inside the jail (`python -I -S -c`, see functions/twins/sandbox.py),
where no coverage can follow it; tests/integration/test_sandbox*.py prove from outside what the
jailed worker does. Building the jail itself (`_build_jail`: mounts, pivot_root, dropping
privileges) is never run here: it would act on the test process."""

from __future__ import annotations

import json
import socket
import sys
import threading
import types

import pytest

from functions.twins import sandbox
from functions.twins import sandbox_worker as worker
from tests.utils import MemoryState


class Parent:
    """The worker's remote, answered in-process as the parent answers each request
    (functions.twins.sandbox._serve); the requests are kept."""

    def __init__(self, state=None, services=None):
        self.state = state if state is not None else MemoryState()
        self.services = services or {}
        self.asked = []

    def ask(self, *request):
        self.asked.append(list(request))
        reply = sandbox._serve(json.loads(json.dumps(list(request))), self.state, self.services)
        return worker._Remote(_Replying(reply)).ask(*request)


class _Replying:
    """A channel that answers one reply, whatever is sent."""

    def __init__(self, reply):
        self.reply = reply

    def send(self, message):
        pass

    def recv(self):
        return self.reply


def job(code, **fields):
    return {
        "code": code,
        "helpers": [],
        "kwargs": {},
        "settings": {},
        "user": {"email": "a@example.com"},
        "services": [],
        "handles": None,
        "max_output_bytes": 1000,
        "max_result_bytes": 1000,
        "memory_mb": 64,
        **fields,
    }


# -- the pure parts --------------------------------------------------------------------------


def test_a_capped_stream_keeps_its_limit_in_bytes_and_marks_the_cut():
    out = worker._Capped(10)
    assert out.writable()
    assert out.write("abc") == 3 and out.getvalue() == "abc"
    assert out.write(12345) == 5  # print() may hand it anything: it is written as text
    assert out.write("xyzw") == 4
    assert out.getvalue() == "abc12345xy" + worker._TRUNCATED
    out.write("more")
    assert out.getvalue() == "abc12345xy" + worker._TRUNCATED


def test_a_capped_stream_never_splits_a_character_and_an_empty_write_cuts_nothing():
    out = worker._Capped(5)
    out.write("ab\u00e9\u00e9")  # 2 + 2 + 2 bytes: the second é does not fit whole
    assert out.getvalue() == "ab\u00e9" + worker._TRUNCATED
    exact = worker._Capped(3)
    exact.write("abc")
    exact.write("")
    assert exact.getvalue() == "abc"


def test_a_result_is_sent_as_json_within_its_cap():
    assert worker._serialized({"a": (1, 2)}, 100) == {"status": "ok", "result": {"a": [1, 2]}}
    assert worker._serialized("x" * 8, 10) == {"status": "ok", "result": "x" * 8}  # 10 bytes as JSON
    too_large = worker._serialized("x" * 9, 10)
    assert too_large["status"] == "result_too_large" and "11 bytes" in too_large["message"]
    for value in ({1, 2}, float("nan"), object()):
        outcome = worker._serialized(value, 100)
        assert outcome["status"] == "not_serializable" and "not JSON" in outcome["message"]
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert worker._serialized(deep, 1 << 20)["status"] == "not_serializable"


def test_the_function_is_found_by_name_after_whatever_comes_first():
    assert worker._function_name("import math\nX = 1\n\ndef area(context, r):\n    return r\n") == "area"


def test_an_exception_whose_text_cannot_be_shown_is_named_instead():
    class Unshowable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert worker._text(ValueError("plain")) == "plain"
    assert worker._text(Unshowable()) == "<Unshowable that cannot be shown>"


# -- a job, run by execute -------------------------------------------------------------------


def test_a_call_sees_its_context_and_reaches_state_and_services_through_the_parent():
    state = MemoryState(seen=1)
    parent = Parent(state, {"lookup": lambda path, **kw: {"path": path, **kw}})
    code = (
        "def f(context, x):\n"
        "    s = context.state\n"
        "    s['k'] = x\n"
        "    s.set('gone', 1)\n"
        "    del s['gone']\n"
        "    s.delete('seen')\n"
        "    print('to stdout')\n"
        "    import sys\n"
        "    print('to stderr', file=sys.stderr)\n"
        "    return {'k': s['k'], 'get': s.get('nope', 'dflt'), 'n': s.increment('n', 2),\n"
        "            'has': 'k' in s, 'hasnt': 'gone' in s, 'items': s.items(),\n"
        "            'double': context.code.twice(x), 'setting': context.settings['key'],\n"
        "            'user': context.user['email'], 'found': context.services.lookup('p', q=1),\n"
        "            'public': context.PublicError is not None}\n"
    )
    saved = sys.stdout, sys.stderr
    outcome = worker.execute(
        job(
            code,
            kwargs={"x": 3},
            helpers=["def twice(n):\n    return 2 * n\n"],
            settings={"key": "v"},
            services=["lookup"],
        ),
        parent,
    )
    assert (sys.stdout, sys.stderr) == saved  # the streams are given back
    assert outcome == {
        "status": "ok",
        "result": {
            "k": 3,
            "get": "dflt",
            "n": 2,
            "has": True,
            "hasnt": False,
            "items": {"k": 3, "n": 2},
            "double": 6,
            "setting": "v",
            "user": "a@example.com",
            "found": {"path": "p", "q": 1},
            "public": True,
        },
        "stdout": "to stdout\n",
        "stderr": "to stderr\n",
    }
    assert state.values == {"k": 3, "n": 2}
    assert ["state", "increment", ["n", 2]] in parent.asked
    assert ["service", "lookup", ["p"], {"q": 1}] in parent.asked


def test_a_missing_key_helper_or_service_is_the_codes_error():
    parent = Parent()
    missing = worker.execute(job("def f(context):\n    return context.state['nope']\n"), parent)
    assert missing["status"] == "error" and missing["error_type"] == "KeyError"
    helper = worker.execute(job("def f(context):\n    return context.code.nope()\n"), parent)
    assert helper["error_type"] == "AttributeError" and helper["message"] == "no helper named 'nope'"
    service = worker.execute(job("def f(context):\n    return context.services.nope()\n"), parent)
    assert service["message"] == "no service named 'nope'"


def test_a_refusal_of_the_parent_reaches_the_code_as_an_exception():
    class Refusing(MemoryState):
        def set(self, key, value):
            raise ValueError("a state value is at most 100 bytes")

    outcome = worker.execute(job("def f(context):\n    context.state['k'] = 'v'\n"), Parent(Refusing()))
    assert outcome["status"] == "error" and outcome["error_type"] == "RuntimeError"
    assert outcome["message"] == "ValueError: a state value is at most 100 bytes"


def test_public_errors_keep_their_status_and_anything_else_is_an_error_with_its_traceback():
    parent = Parent()
    public = worker.execute(
        job("def f(context):\n    raise context.PublicError('no such row', 404)\n"), parent
    )
    assert {k: v for k, v in public.items() if k not in ("stdout", "stderr")} == {
        "status": "public_error",
        "message": "no such row",
        "public_status": 404,
        "error_type": "PublicError",
    }
    odd = worker.execute(job("def f(context):\n    raise context.PublicError('odd', 'teapot')\n"), parent)
    assert odd["public_status"] == 400
    failed = worker.execute(job("def f(context):\n    return 1 / 0\n"), parent)
    assert failed["status"] == "error" and failed["error_type"] == "ZeroDivisionError"
    assert "Traceback" in failed["traceback"] and "<endpoint>" in failed["traceback"]
    exited = worker.execute(job("def f(context):\n    raise SystemExit(3)\n"), parent)
    assert exited["status"] == "error" and exited["error_type"] == "SystemExit"


def test_running_out_of_memory_is_its_own_outcome():
    outcome = worker.execute(job("def f(context):\n    raise MemoryError\n", memory_mb=32), Parent())
    assert outcome["status"] == "memory" and outcome["message"] == "the call needed more than 32 MiB"


def test_results_that_are_not_json_or_too_large_are_outcomes_not_crashes():
    parent = Parent()
    assert worker.execute(job("def f(context):\n    return {1}\n"), parent)["status"] == "not_serializable"
    large = worker.execute(job("def f(context):\n    return 'x' * 50\n", max_result_bytes=10), parent)
    assert large["status"] == "result_too_large"
    noisy = worker.execute(job("def f(context):\n    print('y' * 50)\n", max_output_bytes=10), parent)
    assert noisy["stdout"] == "y" * 10 + worker._TRUNCATED


def test_request_code_gets_endpoint_handles_and_an_endpoints_error_is_an_exception():
    class Endpoints:
        def __init__(self):
            self.asked = []

        def ask(self, *request):
            self.asked.append(list(request))
            if request[1] == "fail":
                return worker._Remote(_Replying(["error", "EndpointError", "masked", 502])).ask(*request)
            return f"{request[1]} {request[3]}"

    code = (
        "def request(count, fail):\n"
        "    try:\n"
        "        fail(n=1)\n"
        "    except Exception as exc:\n"
        "        caught = [type(exc).__name__, exc.message, exc.status]\n"
        "    return [count(n=1), count.mock(n=2), count.private(n=3), repr(count), caught]\n"
    )
    remote = Endpoints()
    outcome = worker.execute(job(code, handles=["count", "fail"]), remote)
    assert outcome["status"] == "ok", outcome
    assert outcome["result"] == [
        "count {'n': 1}",
        "count.mock {'n': 2}",
        "count.private {'n': 3}",
        "<endpoint count>",
        ["EndpointError", "masked", 502],
    ]
    assert remote.asked[0] == ["service", "fail", [], {"n": 1}]


# -- the channel, serve and boot -------------------------------------------------------------


@pytest.fixture
def pair():
    """(the worker's end, as a Channel; the parent's socket)."""
    ours, theirs = socket.socketpair()
    channel = worker.Channel(ours.detach())
    yield channel, theirs
    channel.sock.close()
    theirs.close()


def frame(message) -> bytes:
    data = json.dumps(message).encode()
    return worker.HEADER.pack(len(data)) + data


def read_frame(sock) -> list:
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the worker closed the channel"
            data += chunk
        return data

    (size,) = worker.HEADER.unpack(exactly(worker.HEADER.size))
    return json.loads(exactly(size))


def test_the_channel_carries_length_prefixed_json_frames_both_ways(pair):
    channel, parent = pair
    channel.send(["state", "get", ["k", None]])
    assert read_frame(parent) == ["state", "get", ["k", None]]
    big = ["ok", "x" * (3 << 20)]  # more than one recv: read until the frame is whole
    sender = threading.Thread(target=parent.sendall, args=(frame(big),))
    sender.start()
    assert channel.recv() == big
    sender.join()
    with pytest.raises(ValueError):
        channel.send(["done", {"result": float("nan")}])  # never a frame that is not JSON


def test_the_channel_refuses_oversized_frames_and_ends_when_the_parent_closes(pair):
    channel, parent = pair
    parent.sendall(worker.HEADER.pack(worker.MAX_REPLY_BYTES + 1))
    with pytest.raises(EOFError, match="too large"):
        channel.recv()
    parent.sendall(frame(["ok", 1])[:6])
    parent.close()
    with pytest.raises(EOFError, match="closed"):
        channel.recv()


def _serving(fd):
    thread = threading.Thread(target=worker.serve, args=(fd,), daemon=True)
    thread.start()
    return thread


def test_serve_runs_jobs_one_at_a_time_asking_the_parent_until_it_closes():
    ours, parent = socket.socketpair()
    thread = _serving(ours.detach())
    with parent:
        for n in (1, 2):
            parent.sendall(
                frame(
                    [
                        "run",
                        job("def f(context, n):\n    return context.state.get('k', n)\n", kwargs={"n": n}),
                    ]
                )
            )
            assert read_frame(parent) == ["state", "get", ["k", n]]
            parent.sendall(frame(["ok", n * 10]))
            kind, outcome = read_frame(parent)
            assert kind == "done" and outcome["result"] == n * 10
    thread.join(5)
    assert not thread.is_alive()  # the parent closed its end: the worker is done


def test_serve_stops_after_running_out_of_memory_and_on_garbage():
    ours, parent = socket.socketpair()
    thread = _serving(ours.detach())
    with parent:
        parent.sendall(frame(["run", job("def f(context):\n    raise MemoryError\n")]))
        assert read_frame(parent)[1]["status"] == "memory"
        thread.join(5)
        assert not thread.is_alive()  # a worker that ran out of memory is not trusted again
    ours, parent = socket.socketpair()
    thread = _serving(ours.detach())
    with parent:
        data = b"not json"
        parent.sendall(worker.HEADER.pack(len(data)) + data)
        thread.join(5)
        assert not thread.is_alive()


def test_serve_stops_when_the_parent_goes_while_the_code_waits_for_it():
    ours, parent = socket.socketpair()
    thread = _serving(ours.detach())
    parent.sendall(frame(["run", job("def f(context):\n    return context.state.get('k')\n")]))
    assert read_frame(parent)[0] == "state"
    parent.close()  # no answer: the code's call fails, and its outcome finds nobody to take it
    thread.join(5)
    assert not thread.is_alive()


@pytest.fixture
def unjailed(monkeypatch):
    """boot's surroundings, so that it can run here: its own environment and exit (never this
    process's), and a sys.path of its own."""
    exits = []

    def _exit(code):
        exits.append(code)
        raise SystemExit(code)

    fake_os = types.SimpleNamespace(environ={"SECRET": "x", "HOME": "/root"}, _exit=_exit)
    monkeypatch.setattr(worker, "os", fake_os)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return fake_os, exits


def test_boot_empties_the_environment_adds_the_package_dirs_and_serves(unjailed, tmp_path):
    fake_os, exits = unjailed
    ours, parent = socket.socketpair()
    parent.close()  # nothing to run: serve returns at once
    worker.boot({"jail": False, "site_packages": [str(tmp_path)], "fd": ours.detach()})
    assert fake_os.environ == {"HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
    assert str(tmp_path) in sys.path and not exits


def test_boot_builds_the_jail_before_anything_else(unjailed, monkeypatch):
    fake_os, _ = unjailed
    built = []
    monkeypatch.setattr(worker, "_build_jail", lambda spec: built.append(dict(fake_os.environ)))
    ours, parent = socket.socketpair()
    parent.close()
    worker.boot({"jail": True, "site_packages": [], "fd": ours.detach()})
    assert built == [{"SECRET": "x", "HOME": "/root"}]  # the jail first, then the environment
    assert "SECRET" not in fake_os.environ


def test_boot_ends_the_process_with_70_when_a_step_fails(unjailed, capsys):
    _, exits = unjailed
    with pytest.raises(SystemExit):
        worker.boot({"jail": False, "site_packages": [None], "fd": -1})
    assert exits == [70] and capsys.readouterr().err.startswith("gatehouse sandbox: ")
