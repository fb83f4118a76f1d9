"""Running twin code in jailed worker processes (SPEC §3 twins, Execution): the boundary.

Code never runs in the twins function's process. Each run happens in a worker: a fresh
`python -I -S` whose limits are set from outside by `prlimit` (address space, CPU seconds,
processes, open files, file size; hard = soft, so the code cannot raise them) and which
`unshare` puts in new mount, PID, IPC and UTS namespaces. Before any code runs, the worker's own
trusted start (functions/twins/sandbox_worker.py) pivots into a root that holds only the system's
libraries, Python and its packages, read-only, with a private size-capped /tmp and a /proc of
its own; then drops to uid 65534 (where the function runs as root) or keeps the unprivileged
user-namespace root it was given (where it does not), with no capabilities and no new
privileges. Its environment is empty. No file of the stack, no emulator or metadata server, no
other process is reachable from inside.

Two kinds of code, two kinds of worker:
- **Request code** (a researcher's, approved by owners; hostile by assumption) runs in a fresh
  worker used once, in a network namespace with no interface, and the worker is killed with
  everything it started when the run ends. It reaches the outside only through its endpoint
  handles, which the parent answers.
- **Endpoint code** (an admin's) keeps the network egress it needs to reach its platform. Its
  warm workers are reused, but only for the same side (same code, helpers, settings and
  memory cap: `Program.key`), and never after request code.

The channel is a socket carrying length-prefixed JSON (never pickle): every frame is capped,
every message checked for its kind and shape, and a worker that sends anything else is killed
and its run fails `error`. A run past its time limit has its worker killed (PID 1 of its
namespace, which takes every descendant with it).

Where the jail cannot be built (no namespaces, no privilege to drop), `boundary()` says why:
request runs are refused (`Unavailable`, a 503), and endpoint workers run as plain processes
with an empty environment and the same limits, which the start-up log states. This module
imports only the standard library (and common.logs), and a worker starts in a few tens of
milliseconds.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import shutil
import signal
import site
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.logs import log

DEFAULT_MEMORY_MB = 512
NOBODY = 65534  # the uid code runs as where the function runs as root
OVERHEAD_MB = 128  # the interpreter and its libraries (boto3 imported: about 60 MiB), on top of the cap
TMP_MB = 16  # the private /tmp
MAX_FILE_BYTES = 16 << 20
MAX_OPEN_FILES = 64
MAX_PROCESSES = 256  # per uid: a fork bomb stops here, and dies with the namespace
WORKER_CPU_SECONDS = 600  # a warm endpoint worker's CPU over its whole life
MAX_CALLS_PER_WORKER = 500  # then a warm worker is replaced
REQUEST_CPU_MARGIN_S = 2
FRAME_SLACK = 1 << 20  # a frame may hold the result cap plus this (output, traceback, framing)

# Lanes: owners' private calls and approved runs never wait behind callers' mock traffic.
LANES = {
    "callers": int(os.environ.get("TWIN_CALLER_WORKERS", max(2, min(4, (os.cpu_count() or 1) * 2)))),
    "owners": int(os.environ.get("TWIN_OWNER_WORKERS", "2")),
    "requests": int(os.environ.get("TWIN_REQUEST_WORKERS", "2")),
}

STATUSES = frozenset(
    {"ok", "public_error", "error", "timeout", "memory", "result_too_large", "not_serializable"}
)
_HEADER = struct.Struct(">I")
_WORKER_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_worker.py")


@dataclass
class Program:
    code: str  # the source of one function: def name(context, **params)
    helpers: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    side: str = ""  # which endpoint side this is (path, side, generation): workers never cross sides

    def key(self, memory_mb: int) -> str:
        """What a warm worker may be reused for: this side, with this exact code, helpers,
        settings and memory cap."""
        text = json.dumps(
            [self.side, self.code, self.helpers, self.settings, memory_mb], sort_keys=True, default=str
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Outcome:
    status: str  # one of STATUSES
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


class Unavailable(Exception):
    """The boundary request code needs cannot be built on this host (the reason says why)."""


class ServiceError(Exception):
    """A service's refusal the code sees as an `EndpointError` with this status and message."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class ProtocolError(Exception):
    """A worker sent something that is not a message of the channel."""


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
    lane: str = "callers",
) -> Outcome:
    """Run `program`'s function with `kwargs` in a worker; its outcome, never an exception for
    anything the code does. `services` are parent-side callables the code reaches as
    `context.services.<name>(...)`. With `handles` the program is request code: its function
    takes one endpoint handle per name, a handle's calls are the services `<name>`,
    `<name>.mock` and `<name>.private` (SPEC §3 twins, Requests), and it runs in a fresh
    worker with no network, used once; `Unavailable` where that jail cannot be built."""
    started = time.monotonic()
    deadline = started + timeout_s
    services = services or {}
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
    frame_cap = max_result_bytes + 2 * max_output_bytes + FRAME_SLACK
    if handles is not None:
        held = boundary()
        if not held.ok:
            raise Unavailable(held.reason)
        worker = _pool().acquire_fresh(deadline, memory_mb, math.ceil(timeout_s) + REQUEST_CPU_MARGIN_S)
        if worker is None:
            return _no_worker(started)
        try:
            outcome = worker.call(job, deadline, state, services, frame_cap)
        finally:
            _pool().release(worker, healthy=False)  # used once, whatever happened
    else:
        worker = _pool().acquire(program.key(memory_mb), lane, deadline, memory_mb)
        if worker is None:
            return _no_worker(started)
        healthy = False
        try:
            outcome = worker.call(job, deadline, state, services, frame_cap)
            healthy = outcome.status not in ("timeout", "memory") and worker.alive()
        finally:
            _pool().release(worker, healthy)
    outcome.duration_ms = _ms(started)
    return outcome


def _no_worker(started: float) -> Outcome:
    return Outcome("timeout", message="no worker became free within the time limit", duration_ms=_ms(started))


def warm_up() -> None:
    """Check the boundary in the background as an instance boots (its verdict goes to the
    start-up log), so the first call does not wait for it."""
    threading.Thread(target=boundary, daemon=True, name="twin-sandbox-check").start()


def shutdown() -> None:
    """Stop every worker (tests; and at exit)."""
    global _the_pool
    with _pool_lock:
        pool, _the_pool = _the_pool, None
    if pool is not None:
        pool.close()


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


# -- the boundary: built, then proved, once per instance ------------------------------------------


@dataclass(frozen=True)
class Boundary:
    ok: bool
    mechanism: str  # how it holds: "uid 65534 in namespaces" | "user namespace" | "none"
    reason: str = ""  # what is missing, when not ok


_boundary: Boundary | None = None
_boundary_lock = threading.Lock()


def boundary() -> Boundary:
    """Whether request code can be contained here: a jail is built and a probe inside it finds
    no environment, no network, no file of the stack, no other process, fixed limits and no
    capabilities. Computed once per instance (the first caller waits for it)."""
    global _boundary
    with _boundary_lock:
        if _boundary is None:
            _boundary = _probe()
            _report(_boundary)
        return _boundary


def _jail_mode() -> str | None:
    """How this host builds the jail: "root" (namespaces, then uid 65534), "user" (an
    unprivileged user namespace), or None where the tools are missing."""
    if sys.platform != "linux" or not (shutil.which("unshare") and shutil.which("prlimit")):
        return None
    return "root" if os.geteuid() == 0 else "user"


_PROBE = """
def probe():
    import os, resource, socket
    facts = {"env": sorted(os.environ), "uid": os.getuid(),
             "pids": sorted(p for p in os.listdir("/proc") if p.isdigit())}
    for path in PATHS:
        try:
            with open(path, "rb") as f:
                f.read(1)
            facts[path] = "readable"
        except OSError:
            facts[path] = "hidden"
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        facts["network"] = "open"
    except OSError:
        facts["network"] = "closed"
    facts["as"] = list(resource.getrlimit(resource.RLIMIT_AS))
    with open("/proc/self/status") as f:
        facts["caps"] = [line.split()[1] for line in f if line.startswith(("CapEff", "CapPrm"))]
    return facts
"""


def _probe() -> Boundary:
    mode = _jail_mode()
    if mode is None:
        return Boundary(False, "none", "util-linux's unshare and prlimit are needed on Linux")
    mechanism = "uid 65534 in namespaces" if mode == "root" else "user namespace"
    listener = socket.socket()
    secret = tempfile.NamedTemporaryFile(prefix="gatehouse-probe-")
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        secret.write(b"x")
        secret.flush()
        paths = [secret.name, _WORKER_SOURCE, f"/proc/{os.getpid()}/environ"]
        code = _PROBE.replace("PATHS", repr(paths)).replace("PORT", str(listener.getsockname()[1]))
        try:
            worker = _Worker(network=False, memory_mb=64, cpu_seconds=10, jail=True)
        except OSError as exc:
            return Boundary(False, "none", f"the jail could not start: {exc}")
        try:
            outcome = worker.call(
                {
                    "code": code,
                    "helpers": [],
                    "settings": {},
                    "kwargs": {},
                    "user": {},
                    "memory_mb": 64,
                    "max_result_bytes": 1 << 16,
                    "max_output_bytes": 1 << 12,
                    "services": [],
                    "handles": [],
                },
                time.monotonic() + 20,
                NoState(),
                {},
                1 << 20,
            )
        finally:
            worker.kill()
        if outcome.status != "ok":
            return Boundary(
                False, "none", f"the jail could not be built here: {worker.failure() or outcome.message}"
            )
        facts = outcome.result
    finally:
        listener.close()
        secret.close()
    missing = []
    if set(facts["env"]) - {"HOME", "TMPDIR", "LANG", "PATH"}:
        missing.append("an empty environment")
    if facts["network"] != "closed":
        missing.append("no network")
    if any(facts[path] != "hidden" for path in paths):
        missing.append("no file of the stack")
    if facts["pids"] != ["1"]:
        missing.append("a process tree of its own")
    soft, hard = facts["as"]
    if hard < 0 or soft != hard:
        missing.append("fixed memory limits")
    if any(int(mask, 16) for mask in facts["caps"]):
        missing.append("no capabilities")
    if mode == "root" and facts["uid"] != NOBODY:
        missing.append("another uid")
    if missing:
        return Boundary(False, "none", "the jail here does not give " + ", ".join(missing))
    return Boundary(True, mechanism)


def _report(held: Boundary) -> None:
    if held.ok:
        log("INFO", f"twin sandbox: request code is contained ({held.mechanism})", sandbox=held.mechanism)
    else:
        log(
            "WARNING",
            f"twin sandbox: request runs are refused (503) on this host: {held.reason}; endpoint "
            "code runs without the jail (empty environment and limits only)",
            sandbox="none",
        )


class NoState:
    """The state of code that has none (request code, the boundary probe): nothing reaches a
    store through it."""

    def _refuse(self, *args: Any) -> Any:
        raise PermissionError("request code has no state")

    get = set = delete = increment = items = _refuse


# -- one worker and the parent's end of its channel ---------------------------------------------


class _Worker:
    """One jailed worker process. `network` keeps the host's network (endpoint code);
    without it the worker gets a network namespace with no interface (request code)."""

    def __init__(
        self,
        *,
        network: bool,
        memory_mb: int,
        cpu_seconds: int,
        jail: bool,
        key: str | None = None,
        lane: str | None = None,
    ):
        self.key, self.lane, self.calls = key, lane, 0
        mode = _jail_mode() if jail else None
        parent, child = socket.socketpair()
        python = os.path.realpath(sys.executable)
        sources = sorted({os.path.realpath(p) for p in _package_dirs()})
        read_only = [sys.base_prefix, *sources]
        spec = {
            "jail": mode is not None,
            "root": _root_for(["/usr", "/etc", "/dev", *read_only]),
            "network": network,
            "read_only": read_only,
            "site_packages": sources,
            "tmp_mb": TMP_MB,
            "uid": NOBODY if mode == "root" else None,
            "fd": child.fileno(),  # pass_fds keeps the number across prlimit and unshare
        }
        limits = [
            "prlimit",
            f"--as={(memory_mb + OVERHEAD_MB) << 20}",
            f"--cpu={int(cpu_seconds)}",
            f"--nproc={MAX_PROCESSES}",
            f"--nofile={MAX_OPEN_FILES}",
            f"--fsize={MAX_FILE_BYTES}",
            "--core=0",
            "--",
        ]
        namespaces = []
        if mode is not None:
            namespaces = ["unshare", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
            namespaces += [] if network else ["--net"]
            namespaces += ["--user", "--map-root-user"] if mode == "user" else []
            namespaces += ["--"]
        boot = f"{_worker_source()}\nboot(json.loads(sys.argv[1]))\n"
        self.errors = tempfile.TemporaryFile()  # the start-up's own complaints (capped by --fsize)
        try:
            self.process = subprocess.Popen(
                [*limits, *namespaces, python, "-I", "-S", "-B", "-c", boot, json.dumps(spec)],
                pass_fds=[child.fileno()],
                env={},
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.errors,
                start_new_session=True,
            )
        except BaseException:
            parent.close()
            self.errors.close()
            raise
        finally:
            child.close()
        self.sock = parent

    def alive(self) -> bool:
        return self.process.poll() is None

    def failure(self) -> str:
        """What the worker's start-up said before it stopped (for the log, never a caller)."""
        self.errors.seek(0)
        return self.errors.read(2000).decode("utf-8", "replace").strip()

    def kill(self) -> None:
        """Kill the worker and everything it started: PID 1 of its namespace (whose death takes
        every process in it), then `unshare` and its session."""
        pid = self.process.pid
        for child in _children(pid):
            _signal(os.kill, child)
        _signal(os.killpg, pid)
        _signal(os.kill, pid)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.sock.close()
        self.errors.close()

    def call(
        self,
        job: dict[str, Any],
        deadline: float,
        state: StateStore,
        services: dict[str, Callable[..., Any]],
        frame_cap: int,
    ) -> Outcome:
        """Send the job, then serve the worker's state and service requests until its outcome
        arrives or the deadline passes."""
        self.calls += 1
        try:
            self._send(["run", job])
            while True:
                message = self._receive(deadline, frame_cap)
                if message[0] == "done":
                    return _outcome(message[1])
                self._send(_serve(message, state, services))
        except TimeoutError:
            self.kill()
            return Outcome("timeout", message="the time limit passed; the work was stopped")
        except ProtocolError as exc:
            self.kill()
            return Outcome(
                "error", message=f"the worker broke the channel's protocol: {exc}", error_type="ProtocolError"
            )
        except (EOFError, OSError):
            self.kill()
            return Outcome(
                "error",
                message=f"the worker stopped unexpectedly (exit code {self.process.poll()})",
                error_type="WorkerDied",
            )

    def _send(self, message: list[Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
        self.sock.sendall(_HEADER.pack(len(data)) + data)

    def _receive(self, deadline: float, cap: int) -> list[Any]:
        (size,) = _HEADER.unpack(self._exactly(_HEADER.size, deadline))
        if size > cap:
            raise ProtocolError(f"a frame of {size} bytes is over the cap of {cap}")
        try:
            message = json.loads(self._exactly(size, deadline))
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("a frame that is not JSON") from exc
        return _checked(message)

    def _exactly(self, n: int, deadline: float) -> bytes:
        parts, left = [], n
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise EOFError
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)


# Where a jail's root is built: a directory of the host that the jail's own tmpfs covers, so it
# must not hold anything bound into the jail (a checkout under /tmp, say, holds its virtualenv).
_ROOT_CANDIDATES = ("/mnt", "/media", "/srv", "/tmp", "/var/tmp", "/opt", "/run")


def _root_for(sources: list[str]) -> str:
    for candidate in _ROOT_CANDIDATES:
        inside = [s for s in sources if s == candidate or s.startswith(candidate + "/")]
        if os.path.isdir(candidate) and not os.path.islink(candidate) and not inside:
            return candidate
    raise OSError("no directory to build the jail's root in: " + ", ".join(_ROOT_CANDIDATES))


def _package_dirs() -> list[str]:
    """The directories of installed packages code may import from, read-only in the jail (only
    these directories, even where they sit inside a checkout, as a virtualenv does)."""
    return [d for d in site.getsitepackages() if os.path.isdir(d)]


_source_text: str | None = None


def _worker_source() -> str:
    global _source_text
    if _source_text is None:
        with open(_WORKER_SOURCE, encoding="utf-8") as f:
            _source_text = f.read()
    return _source_text


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def _signal(send: Callable[[int, int], Any], target: int) -> None:
    try:
        send(target, signal.SIGKILL)
    except OSError:  # gone already
        pass


def _checked(message: Any) -> list[Any]:
    """A worker's message, if it is one of the channel's kinds and shapes; ProtocolError otherwise."""
    if isinstance(message, list) and message and isinstance(message[0], str):
        kind, rest = message[0], message[1:]
        if kind == "done" and len(rest) == 1 and isinstance(rest[0], dict):
            return message
        if kind == "state" and len(rest) == 2 and rest[0] in _STATE_OPS and isinstance(rest[1], list):
            return message
        if (
            kind == "service"
            and len(rest) == 3
            and isinstance(rest[0], str)
            and isinstance(rest[1], list)
            and isinstance(rest[2], dict)
        ):
            return message
    raise ProtocolError("a message of no known kind or shape")


_OUTCOME_FIELDS: dict[str, type | tuple[type, ...]] = {
    "status": str,
    "result": object,
    "message": str,
    "public_status": int,
    "error_type": str,
    "traceback": str,
    "stdout": str,
    "stderr": str,
}


def _outcome(fields: dict[str, Any]) -> Outcome:
    for name, value in fields.items():
        kind = _OUTCOME_FIELDS.get(name)
        if kind is None or (value is not None and not isinstance(value, kind)):
            raise ProtocolError(f"an outcome with a field {name!r} of no known shape")
    if fields.get("status") not in STATUSES:
        raise ProtocolError("an outcome of no known status")
    return Outcome(**fields)


def _serve(message: list[Any], state: StateStore, services: dict[str, Callable[..., Any]]) -> list[Any]:
    """Carry out one request of the code, in the parent: ["ok", value] or ["error", type, text, status]."""
    kind, *request = message
    try:
        if kind == "state":
            op, args = request
            value = getattr(state, op)(*args)
        else:
            name, args, kwargs = request
            if name not in services:
                raise AttributeError(f"no service {name!r}")
            value = services[name](*args, **kwargs)
        json.dumps(value, allow_nan=False)  # what cannot travel is the code's error, not ours
        return ["ok", value]
    except ServiceError as exc:
        return ["error", "EndpointError", str(exc), exc.status]
    except Exception as exc:  # the code sees it as an exception of its own call
        return ["error", type(exc).__name__, str(exc), None]


# -- the pool -----------------------------------------------------------------------------------


class _Pool:
    """Warm endpoint workers by side (`Program.key`), within each lane's capacity; fresh
    request workers within theirs."""

    def __init__(self):
        self._idle: dict[str, list[_Worker]] = {}
        self._live = dict.fromkeys(LANES, 0)
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self, key: str, lane: str, deadline: float, memory_mb: int) -> _Worker | None:
        victim = None
        with self._cond:
            while True:
                idle = self._idle.get(key) or []
                while idle:
                    worker = idle.pop()
                    if worker.alive():
                        return worker
                    self._drop(worker)
                if self._live[lane] < LANES[lane]:
                    self._live[lane] += 1
                    break
                victim = self._idle_in(lane)
                if victim is not None:  # an idle worker of another side makes room
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
        if victim is not None:
            victim.kill()
        try:
            return _Worker(
                network=True,
                memory_mb=memory_mb,
                cpu_seconds=WORKER_CPU_SECONDS,
                jail=boundary().ok,
                key=key,
                lane=lane,
            )
        except BaseException:
            with self._cond:
                self._live[lane] -= 1
                self._cond.notify_all()
            raise

    def acquire_fresh(self, deadline: float, memory_mb: int, cpu_seconds: int) -> _Worker | None:
        with self._cond:
            while self._live["requests"] >= LANES["requests"]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            self._live["requests"] += 1
        try:
            return _Worker(
                network=False, memory_mb=memory_mb, cpu_seconds=cpu_seconds, jail=True, lane="requests"
            )
        except BaseException:
            with self._cond:
                self._live["requests"] -= 1
                self._cond.notify_all()
            raise

    def _idle_in(self, lane: str) -> _Worker | None:
        for workers in self._idle.values():
            for worker in workers:
                if worker.lane == lane:
                    workers.remove(worker)
                    return worker
        return None

    def _drop(self, worker: _Worker) -> None:
        worker.kill()
        self._live[worker.lane or "callers"] -= 1

    def release(self, worker: _Worker, healthy: bool) -> None:
        keep = healthy and worker.key is not None and worker.calls < MAX_CALLS_PER_WORKER
        if not keep:
            worker.kill()
        with self._cond:
            if keep and not self._closed:
                self._idle.setdefault(worker.key or "", []).append(worker)
            else:
                self._live[worker.lane or "callers"] -= 1
                if keep:
                    worker.kill()
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle = [w for workers in self._idle.values() for w in workers]
            self._idle.clear()
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


def _after_fork_in_child() -> None:
    """A server that forks its workers after importing the function (gunicorn) must not hand
    them the parent's locks, possibly held by the boundary check's thread at that moment, nor
    its workers' sockets: the child starts with its own (the verdict, about the host, stays)."""
    global _boundary_lock, _pool_lock, _the_pool
    _boundary_lock, _pool_lock, _the_pool = threading.Lock(), threading.Lock(), None


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)
