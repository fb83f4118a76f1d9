"""Running twin endpoint code in worker processes that can be stopped (SPEC §3 twins, Execution).

Code never runs in the request thread: `run` hands it to a warm worker process from a pool and
waits for the outcome. A call past its time limit has its worker killed (so the work really
stops) and replaced; so does one that exceeds its memory cap or dies. Workers are fresh
interpreters, never forked from a process that holds a gRPC client (which does not survive a
fork), and never talk to Firestore: each `context.state` operation and each service call is a
message to the parent, which owns the clients. This module imports only the standard library,
so a worker starts in a few tens of milliseconds.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_MEMORY_MB = 512
MAX_WORKERS = max(2, min(4, (os.cpu_count() or 1) * 2))
_TRUNCATED = "\n[output truncated]\n"


@dataclass
class Program:
    code: str  # the source of one function: def name(context, **params)
    helpers: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    status: str  # ok | public_error | error | timeout | memory | result_too_large | not_serializable
    result: Any = None
    message: str = ""  # for "error" the exception's text: for owners only
    public_status: int | None = None
    error_type: str | None = None
    traceback: str | None = None  # owners only
    stdout: str = ""  # captured and capped; owners only
    stderr: str = ""
    duration_ms: float = 0.0


class StateStore(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...
    def increment(self, key: str, n: int | float = 1) -> int | float: ...
    def items(self) -> dict[str, Any]: ...


_STATE_OPS = frozenset({"get", "set", "delete", "increment", "items"})


def run(
    program: Program,
    kwargs: dict[str, Any],
    *,
    user: dict[str, Any],
    state: StateStore,
    timeout_s: float,
    memory_mb: int = DEFAULT_MEMORY_MB,
    max_result_bytes: int = 1 << 20,
    max_output_bytes: int = 64 << 10,
    services: dict[str, Callable[..., Any]] | None = None,
    handles: list[str] | None = None,
) -> Outcome:
    """Run `program`'s function with `kwargs` in a worker; its outcome, never an exception for
    anything the code does. `services` are parent-side callables the code reaches as
    `context.services.<name>(...)`. With `handles` the program is request code: its function
    takes no context, only one endpoint handle per name, and a handle's calls are the services
    `<name>`, `<name>.mock` and `<name>.private` (SPEC §3 twins, Requests)."""
    started = time.monotonic()
    deadline = started + timeout_s
    services = services or {}
    worker = _pool().acquire(deadline)
    if worker is None:
        return Outcome(
            "timeout", message="no worker became free within the time limit", duration_ms=_ms(started)
        )
    job = {
        "code": program.code,
        "helpers": list(program.helpers),
        "settings": program.settings,
        "kwargs": kwargs,
        "user": user,
        "memory_mb": memory_mb,
        "max_result_bytes": max_result_bytes,
        "max_output_bytes": max_output_bytes,
        "services": sorted(services),
        "handles": list(handles) if handles is not None else None,
    }
    healthy = False
    try:
        outcome = worker.call(job, deadline, state, services)
        healthy = outcome.status not in ("timeout", "memory") and worker.alive()
        outcome.duration_ms = _ms(started)
        return outcome
    finally:
        _pool().release(worker, healthy)


def warm_up() -> None:
    """Start a worker in the background (an instance calls this as it boots, so its first call
    does not wait for a worker interpreter to start)."""
    threading.Thread(target=_pool()._prestart, daemon=True, name="twin-worker-warm-up").start()


def shutdown() -> None:
    """Stop every worker (tests; and at exit)."""
    global _the_pool
    with _pool_lock:
        pool, _the_pool = _the_pool, None
    if pool is not None:
        pool.close()


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


# -- the parent's side: a pool of workers ---------------------------------------------------------


class _Worker:
    """One worker process and the parent's end of its socket.

    A fresh interpreter (`python -c`), not a fork: it inherits no gRPC channel and does not
    re-run the host program's main module, as multiprocessing's start methods would."""

    def __init__(self):
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        parent, child = socket.socketpair()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from common.sandbox import _worker_main; _worker_main({child.fileno()})",
            ],
            pass_fds=[child.fileno()],
            env=env,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # nothing the code writes reaches our logs
        child.close()
        self.conn = Connection(parent.detach())

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(timeout=5)
        if not self.conn.closed:
            self.conn.close()

    def call(
        self, job: dict[str, Any], deadline: float, state: StateStore, services: dict[str, Callable[..., Any]]
    ) -> Outcome:
        """Send the job, then serve the worker's state and service requests until its outcome
        arrives or the deadline passes."""
        try:
            self.conn.send(("run", job))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.conn.poll(remaining):
                    self.kill()
                    return Outcome("timeout", message="the time limit passed; the work was stopped")
                kind, *rest = self.conn.recv()
                if kind == "done":
                    return Outcome(**rest[0])
                self.conn.send(_serve(kind, rest, state, services))
        except (EOFError, OSError, BrokenPipeError):
            self.kill()
            return Outcome(
                "error",
                message=f"the worker stopped unexpectedly (exit code {self.process.poll()})",
                error_type="WorkerDied",
            )


class ServiceError(Exception):
    """A service's refusal the code sees as an `EndpointError` with this status and message."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _serve(kind: str, request: list[Any], state: StateStore, services: dict[str, Callable[..., Any]]):
    """Carry out one request of the code, in the parent: ("ok", value) or ("error", type, text[, status])."""
    try:
        if kind == "state":
            op, args = request
            if op not in _STATE_OPS:
                raise ValueError(f"no state operation {op!r}")
            return ("ok", getattr(state, op)(*args))
        if kind == "service":
            name, args, kwargs = request
            if name not in services:
                raise AttributeError(f"no service {name!r}")
            return ("ok", services[name](*args, **kwargs))
        raise ValueError(f"unknown request {kind!r}")
    except ServiceError as exc:
        return ("error", "EndpointError", str(exc), exc.status)
    except Exception as exc:  # the code sees it as an exception of its own call
        return ("error", type(exc).__name__, str(exc))


class _Pool:
    def __init__(self):
        self._idle: list[_Worker] = []
        self._live = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self, deadline: float) -> _Worker | None:
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    worker.kill()
                    self._live -= 1
                if self._live < MAX_WORKERS:
                    self._live += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
        try:
            return _Worker()
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise

    def release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self._cond:
            if healthy and not self._closed:
                self._idle.append(worker)
            else:
                self._live -= 1
                if healthy:
                    worker.kill()
            self._cond.notify()
        if not healthy and not self._closed:
            # Replace the stopped worker ahead of the next call, so it finds one warm.
            threading.Thread(target=self._prestart, daemon=True).start()

    def _prestart(self) -> None:
        with self._cond:
            if self._closed or self._idle or self._live >= MAX_WORKERS:
                return
            self._live += 1
        try:
            worker = _Worker()
        except Exception:
            with self._cond:
                self._live -= 1
            return
        self.release(worker, True)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


_the_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _pool() -> _Pool:
    global _the_pool
    with _pool_lock:
        if _the_pool is None:
            _the_pool = _Pool()
        return _the_pool


atexit.register(shutdown)


# -- the worker's side ----------------------------------------------------------------------------


class PublicError(Exception):
    """Raised by endpoint code to answer the caller with `message` and `status` as they are."""

    def __init__(self, message: str = "", status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


class EndpointError(Exception):
    """What request code sees when an endpoint it calls answers an error: `status` and the
    message that caller may see (masked as for any call of theirs)."""

    def __init__(self, message: str = "", status: int = 500):
        super().__init__(message)
        self.message, self.status = message, status


class _Capped(io.TextIOBase):
    """A text stream that keeps at most `limit` bytes (then a marker)."""

    def __init__(self, limit: int):
        self._parts: list[str] = []
        self._left = limit
        self._cut = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._left > 0:
            piece = text.encode("utf-8", "replace")[: self._left].decode("utf-8", "ignore")
            self._parts.append(piece)
            self._left -= len(piece.encode("utf-8"))
            if len(piece) < len(text):
                self._cut = True
        elif text:
            self._cut = True
        return len(text)

    def getvalue(self) -> str:
        return "".join(self._parts) + (_TRUNCATED if self._cut else "")


class _Remote:
    """The worker's end of a request to the parent."""

    def __init__(self, conn):
        self._conn = conn

    def ask(self, kind: str, *request: Any) -> Any:
        self._conn.send((kind, *request))
        reply = self._conn.recv()
        if reply[0] == "ok":
            return reply[1]
        if reply[1] == "EndpointError":
            raise EndpointError(reply[2], reply[3])
        raise RuntimeError(f"{reply[1]}: {reply[2]}")


class _State:
    """`context.state`: each operation is carried out by the parent, key by key."""

    def __init__(self, remote: _Remote):
        self._remote = remote

    def get(self, key: str, default: Any = None) -> Any:
        return self._remote.ask("state", "get", (key, default))

    def set(self, key: str, value: Any) -> None:
        self._remote.ask("state", "set", (key, value))

    def delete(self, key: str) -> None:
        self._remote.ask("state", "delete", (key,))

    def increment(self, key: str, n: int | float = 1) -> int | float:
        return self._remote.ask("state", "increment", (key, n))

    def items(self) -> dict[str, Any]:
        return self._remote.ask("state", "items", ())

    _missing = object()

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, self._missing)
        if value is self._missing:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def __contains__(self, key: str) -> bool:
        return self.get(key, self._missing) is not self._missing


class _Namespace:
    """Attribute access over a dict (`context.code.<helper>`, `context.services.<name>`)."""

    def __init__(self, items: dict[str, Any], what: str):
        self.__dict__.update(items)
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"no {self._what} named {name!r}")


class EndpointHandle:
    """An endpoint as request code sees it: calling it runs the side the request was approved
    for (the private one); `.mock(...)` and `.private(...)` name a side."""

    def __init__(self, remote: _Remote, name: str):
        self._name = name
        self._call = _service(remote, name)
        self.mock = _service(remote, f"{name}.mock")
        self.private = _service(remote, f"{name}.private")

    def __call__(self, **kwargs: Any) -> Any:
        return self._call(**kwargs)

    def __repr__(self) -> str:
        return f"<endpoint {self._name}>"


class Context:
    """What endpoint code receives as its first argument."""

    PublicError = PublicError

    def __init__(
        self,
        settings: dict[str, Any],
        state: _State,
        user: dict[str, Any],
        code: _Namespace,
        services: _Namespace,
    ):
        self.settings, self.state, self.user, self.code, self.services = settings, state, user, code, services


def _worker_main(fd: int) -> None:
    """A worker: run jobs one at a time until the parent closes its end."""
    import resource
    import sys
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    remote = _Remote(conn)
    while True:
        try:
            kind, job = conn.recv()
        except (EOFError, OSError):
            return
        outcome = _execute(job, remote, resource, sys)
        try:
            conn.send(("done", outcome))
        except (OSError, ValueError):
            return
        if outcome["status"] == "memory":
            return  # a worker that ran out of memory is not trusted again


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _execute(job: dict[str, Any], remote: _Remote, resource, sys) -> dict[str, Any]:
    out, err = _Capped(job["max_output_bytes"]), _Capped(job["max_output_bytes"])
    outcome: dict[str, Any] = {"status": "ok"}
    services = {name: _service(remote, name) for name in job["services"]}
    namespace: dict[str, Any] = {"__name__": "twin_endpoint", "__builtins__": __builtins__}
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        # The cap is on what this call adds to the worker's address space.
        resource.setrlimit(resource.RLIMIT_AS, (_address_space() + job["memory_mb"] * (1 << 20), hard))
        helpers = {}
        for source in job["helpers"]:
            exec(compile(source, "<helper>", "exec"), namespace)
            name = _function_name(source)
            helpers[name] = namespace[name]
        exec(compile(job["code"], "<endpoint>", "exec"), namespace)
        function = namespace[_function_name(job["code"])]
        if job.get("handles") is not None:  # request code: endpoint handles, no context
            result = function(**{name: EndpointHandle(remote, name) for name in job["handles"]})
        else:
            context = Context(
                dict(job["settings"]),
                _State(remote),
                dict(job["user"]),
                _Namespace(helpers, "helper"),
                _Namespace(services, "service"),
            )
            result = function(context, **job["kwargs"])
        outcome.update(_serialized(result, job["max_result_bytes"]))
    except PublicError as exc:
        outcome = {
            "status": "public_error",
            "message": str(exc.message),
            "public_status": exc.status,
            "error_type": "PublicError",
        }
    except MemoryError:
        outcome = {
            "status": "memory",
            "message": f"the call needed more than {job['memory_mb']} MiB",
            "error_type": "MemoryError",
        }
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from code are its errors too
        outcome = {
            "status": "error",
            "message": str(exc),
            "error_type": type(exc).__name__,
            "traceback": traceback.format_exc(limit=-20),
        }
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        sys.stdout, sys.stderr = saved
    outcome["stdout"], outcome["stderr"] = out.getvalue(), err.getvalue()
    return outcome


def _function_name(source: str) -> str:
    """The name of the one function `source` defines (checked by common.twincode when defined)."""
    import ast

    return next(node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef))


def _service(remote: _Remote, name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return remote.ask("service", name, args, kwargs)

    call.__name__ = name
    return call


def _serialized(result: Any, limit: int) -> dict[str, Any]:
    try:
        text = json.dumps(result, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        return {"status": "not_serializable", "message": f"the result is not JSON: {exc}"}
    if len(text.encode()) > limit:
        return {
            "status": "result_too_large",
            "message": f"the result is {len(text.encode())} bytes as JSON; the limit is {limit}",
        }
    return {"status": "ok", "result": json.loads(text)}
