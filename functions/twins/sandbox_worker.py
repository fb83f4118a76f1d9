"""The worker side of the twin sandbox: what runs inside the jail (see functions/twins/sandbox.py).

This file is never imported by the worker: the parent reads its source and hands it to a fresh
`python -I -S -c`, so the jail needs no project file on its path. It uses only the standard
library. `boot` runs first, as the trusted part of the process: it finishes the jail the parent
started (`unshare` has given it new mount, PID, IPC and UTS namespaces, and a network namespace
with no interface for request code): a read-only root with nothing but the system's libraries,
Python and its packages; a private size-capped /tmp; a /proc that shows only the jail; then it
drops every privilege (another uid where it was root, no capabilities, no new privileges) and
only then serves jobs. Nothing in here is a boundary by itself: the kernel is (namespaces,
rlimits set by the parent through `prlimit`, the uid); this code only builds it before any code
of a user's runs.

The channel to the parent is a socket carrying length-prefixed JSON frames, both ways. The
worker sends `["state", op, args]`, `["service", name, args, kwargs]` and `["done", outcome]`;
the parent answers `["ok", value]` or `["error", type, text, status]`, and sends `["run", job]`.
"""

import ast
import ctypes
import io
import json
import os
import site
import socket
import struct
import sys
import traceback

HEADER = struct.Struct(">I")
MAX_REPLY_BYTES = 64 << 20  # what the parent sends back (its own answers; a sanity cap)
_TRUNCATED = "\n[output truncated]\n"

# -- building the jail (runs before any user code) --------------------------------------------

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP = 38, 24
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


def boot(spec):
    """Finish the jail described by `spec` (from the parent), drop privileges, serve jobs. A
    step that fails ends the process (exit 70, the reason on stderr) before any job is read."""
    try:
        if spec["jail"]:
            _build_jail(spec)
        os.environ.clear()
        os.environ.update({"HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"})
        if spec["site_packages"]:
            for path in spec["site_packages"]:
                site.addsitedir(path)
    except BaseException as exc:
        print(f"gatehouse sandbox: {exc}", file=sys.stderr)
        os._exit(70)
    serve(spec["fd"])


def _build_jail(spec):
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result, what):
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    def mount(source, target, fstype, flags, data=None):
        check(
            libc.mount(
                source.encode(),
                target.encode(),
                fstype.encode() if fstype else None,
                flags,
                data.encode() if data else None,
            ),
            f"mount {target}",
        )

    mount("none", "/", None, _MS_REC | _MS_PRIVATE)  # nothing here propagates to the host
    # The new root is a tmpfs over a directory of the host's (covered in this mount namespace
    # only) that holds none of the directories bound into it: the parent chose it.
    root = spec["root"]
    mount("gatehouse-jail", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=512k")
    os.chdir(root)
    for name in ("usr", "proc", "tmp", "dev", "etc", ".old"):
        os.mkdir(f"{root}/{name}")
    for link in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{link}"):
            os.symlink(os.readlink(f"/{link}"), f"{root}/{link}")

    def bind_ro(path):
        inside = root + path
        os.makedirs(inside, exist_ok=True)
        mount(path, inside, None, _MS_BIND | _MS_REC)
        mount("none", inside, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)

    # The private /tmp first: a directory bound below (a checkout's virtualenv may live under
    # /tmp) then shows on top of it instead of being covered by it.
    mount(
        "scratch",
        f"{root}/tmp",
        "tmpfs",
        _MS_NOSUID | _MS_NODEV,
        f"mode=1777,size={int(spec['tmp_mb'])}m",
    )
    bind_ro("/usr")
    if spec["network"]:
        bind_ro("/etc")  # name resolution and CA certificates for the platform endpoint code calls
    for path in spec["read_only"]:
        bind_ro(path)
    for device in ("null", "zero", "random", "urandom"):
        open(f"{root}/dev/{device}", "w").close()
        mount(f"/dev/{device}", f"{root}/dev/{device}", None, _MS_BIND)
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(f"no pivot_root for {os.uname().machine}")
    check(libc.syscall(number, root.encode(), f"{root}/.old".encode()), "pivot_root")
    os.chdir("/")
    mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    check(libc.umount2(b"/.old", 2), "umount the host's root")  # MNT_DETACH
    os.rmdir("/.old")
    mount("none", "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)

    # Drop: another uid where we are root of the host, no capabilities, no new privileges.
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    if spec["uid"] is not None:
        os.setgroups([])
        os.setresgid(spec["uid"], spec["uid"], spec["uid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    check(libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")


# -- the channel ------------------------------------------------------------------------------


class Channel:
    """Length-prefixed JSON frames over a socket: data only, both ways."""

    def __init__(self, fd):
        self.sock = socket.socket(fileno=fd)

    def send(self, message):
        data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
        self.sock.sendall(HEADER.pack(len(data)) + data)

    def recv(self):
        (size,) = HEADER.unpack(self._exactly(HEADER.size))
        if size > MAX_REPLY_BYTES:
            raise EOFError("frame too large")
        return json.loads(self._exactly(size))

    def _exactly(self, n):
        parts, left = [], n
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise EOFError("the parent closed the channel")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)


# -- what code sees ---------------------------------------------------------------------------


class PublicError(Exception):
    """Raised by endpoint code to answer the caller with `message` and `status` as they are."""

    def __init__(self, message="", status=400):
        super().__init__(message)
        self.message, self.status = message, status


class EndpointError(Exception):
    """What request code sees when an endpoint it calls answers an error: `status` and the
    message that caller may see (masked as for any call of theirs)."""

    def __init__(self, message="", status=500):
        super().__init__(message)
        self.message, self.status = message, status


class _Capped(io.TextIOBase):
    """A text stream that keeps at most `limit` bytes (then a marker)."""

    def __init__(self, limit):
        self._parts = []
        self._left = limit
        self._cut = False

    def writable(self):
        return True

    def write(self, text):
        text = str(text)
        if self._left > 0:
            piece = text.encode("utf-8", "replace")[: self._left].decode("utf-8", "ignore")
            self._parts.append(piece)
            self._left -= len(piece.encode("utf-8"))
            if len(piece) < len(text):
                self._cut = True
        elif text:
            self._cut = True
        return len(text)

    def getvalue(self):
        return "".join(self._parts) + (_TRUNCATED if self._cut else "")


class _Remote:
    """The worker's end of a request to the parent."""

    def __init__(self, channel):
        self._channel = channel

    def ask(self, *request):
        self._channel.send(list(request))
        reply = self._channel.recv()
        if reply[0] == "ok":
            return reply[1]
        if reply[1] == "EndpointError":
            raise EndpointError(reply[2], reply[3])
        raise RuntimeError(f"{reply[1]}: {reply[2]}")


class _State:
    """`context.state`: each operation is carried out by the parent, key by key."""

    _missing = {"__gatehouse_missing__": True}

    def __init__(self, remote):
        self._remote = remote

    def get(self, key, default=None):
        return self._remote.ask("state", "get", [key, default])

    def set(self, key, value):
        self._remote.ask("state", "set", [key, value])

    def delete(self, key):
        self._remote.ask("state", "delete", [key])

    def increment(self, key, n=1):
        return self._remote.ask("state", "increment", [key, n])

    def items(self):
        return self._remote.ask("state", "items", [])

    def __getitem__(self, key):
        value = self.get(key, self._missing)
        if value == self._missing:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        self.set(key, value)

    def __delitem__(self, key):
        self.delete(key)

    def __contains__(self, key):
        return self.get(key, self._missing) != self._missing


class _Namespace:
    """Attribute access over a dict (`context.code.<helper>`, `context.services.<name>`)."""

    def __init__(self, items, what):
        self.__dict__.update(items)
        self._what = what

    def __getattr__(self, name):
        raise AttributeError(f"no {self._what} named {name!r}")


def _service(remote, name):
    def call(*args, **kwargs):
        return remote.ask("service", name, list(args), kwargs)

    call.__name__ = name
    return call


class EndpointHandle:
    """An endpoint as request code sees it: calling it runs the side the request was approved
    for (the private one); `.mock(...)` and `.private(...)` name a side."""

    def __init__(self, remote, name):
        self._name = name
        self._call = _service(remote, name)
        self.mock = _service(remote, f"{name}.mock")
        self.private = _service(remote, f"{name}.private")

    def __call__(self, **kwargs):
        return self._call(**kwargs)

    def __repr__(self):
        return f"<endpoint {self._name}>"


class Context:
    """What endpoint code receives as its first argument."""

    PublicError = PublicError

    def __init__(self, settings, state, user, code, services):
        self.settings, self.state, self.user, self.code, self.services = settings, state, user, code, services


# -- serving jobs -----------------------------------------------------------------------------


def serve(fd):
    """Run jobs one at a time until the parent closes its end."""
    channel = Channel(fd)
    remote = _Remote(channel)
    while True:
        try:
            _, job = channel.recv()
        except (EOFError, OSError, ValueError):
            return
        outcome = execute(job, remote)
        try:
            channel.send(["done", outcome])
        except (OSError, ValueError):
            return
        if outcome["status"] == "memory":
            return  # a worker that ran out of memory is not trusted again


def execute(job, remote):
    out, err = _Capped(job["max_output_bytes"]), _Capped(job["max_output_bytes"])
    outcome: dict = {"status": "ok"}
    services = {name: _service(remote, name) for name in job["services"]}
    namespace: dict = {"__name__": "twin_endpoint", "__builtins__": __builtins__}
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
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
            "public_status": exc.status if isinstance(exc.status, int) else 400,
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
            "message": _text(exc),
            "error_type": type(exc).__name__,
            "traceback": traceback.format_exc(limit=-20),
        }
    finally:
        sys.stdout, sys.stderr = saved
    outcome["stdout"], outcome["stderr"] = out.getvalue(), err.getvalue()
    return outcome


def _text(exc):
    try:
        return str(exc)
    except BaseException:
        return f"<{type(exc).__name__} that cannot be shown>"


def _function_name(source):
    """The name of the one function `source` defines (checked when it was defined)."""
    return next(node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef))


def _serialized(result, limit):
    try:
        text = json.dumps(result, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        return {"status": "not_serializable", "message": f"the result is not JSON: {exc}"}
    if len(text.encode()) > limit:
        return {
            "status": "result_too_large",
            "message": f"the result is {len(text.encode())} bytes as JSON; the limit is {limit}",
        }
    return {"status": "ok", "result": json.loads(text)}
