"""Test helpers: key material, a local certs endpoint standing in for Google's, and an API client."""

from __future__ import annotations

import datetime
import functools
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tools.devkeys import new_rsa_pem, write_service_account
from tools.emulators import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def self_signed_cert(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatehouse-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Keys:
    google_kid: str
    google_key_pem: bytes
    google_cert_pem: bytes
    other_key_pem: bytes  # a key Google never published
    dev_key_pem: bytes
    dev_key_file: str
    signer_file: str

    @classmethod
    def generate(cls, directory: str) -> Keys:
        google = new_rsa_pem()
        dev = new_rsa_pem()
        dev_file = os.path.join(directory, "dev-issuer.pem")
        with open(dev_file, "wb") as f:
            f.write(dev)
        signer_file = os.path.join(directory, "signer.json")
        write_service_account(signer_file, new_rsa_pem())
        return cls("test-kid-1", google, self_signed_cert(google), new_rsa_pem(), dev, dev_file, signer_file)


def mint(key_pem: bytes, claims: dict[str, Any], kid: str | None = "test-kid-1") -> str:
    from google.auth import crypt, jwt

    return jwt.encode(crypt.RSASigner.from_string(key_pem, key_id=kid), claims).decode()


class CertsServer:
    """Serves `{kid: x509 cert}` like https://www.googleapis.com/oauth2/v1/certs, and counts fetches."""

    def __init__(self, certs: dict[str, bytes]):
        self.body = json.dumps({k: v.decode() for k, v in certs.items()}).encode()
        self.fetches = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/oauth2/v1/certs"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=21600")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)

    def start(self) -> CertsServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()


class Api:
    """Calls functions in-process through functions-framework, as a given user."""

    def __init__(self, keys: Keys, root: str):
        self.keys, self.root = keys, root
        self._clients: dict[str, Any] = {}
        self._tokens: dict[str, str] = {}

    def client(self, function: str):
        if function not in self._clients:
            from functions_framework import create_app

            source = os.path.join(self.root, "functions", function, "main.py")
            self._clients[function] = create_app("handle", source).test_client()
        return self._clients[function]

    def token(self, email: str) -> str:
        if email not in self._tokens:
            from common.identity.auth import mint_dev_token

            self._tokens[email] = mint_dev_token(email, self.keys.dev_key_pem)
        return self._tokens[email]

    def google_token(
        self,
        email: str = "someone@example.com",
        *,
        key: bytes | None = None,
        kid: str | None = "test-kid-1",
        **overrides: Any,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": "gatehouse-test-audience",
            "sub": "1",
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
            **overrides,
        }
        return mint(key or self.keys.google_key_pem, {k: v for k, v in claims.items() if v is not None}, kid)

    def call(
        self,
        method: str,
        path: str,
        *,
        user: str | None = None,
        token: str | None = None,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        **kw,
    ):
        function = path.lstrip("/").split("/")[0].split("?")[0]
        if function == "v2":  # clio's /v2/<resource>: the function that serves the resource
            from common.web import clio

            function = clio.RESOURCES[path.lstrip("/").split("/")[1].split("?")[0]]
        headers = dict(headers or {})
        if token is None and user is not None:
            token = self.token(user)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if json is not None:
            kw["data"] = __import__("json").dumps(json)
            headers.setdefault("Content-Type", "application/json")
        elif data is not None:
            kw["data"] = data
        return self.client(function).open(path, method=method, headers=headers, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def put(self, path, **kw):
        return self.call("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    # -- setup through the real API, as the owner ----------------------------------------------
    def add_user(self, email: str, **fields: Any) -> None:
        r = self.post("/users", user="owner@example.com", json={email: fields})
        assert r.status_code == 200, r.get_data(as_text=True)

    def add_dataset(self, name: str, **fields: Any) -> None:
        r = self.post(
            "/datasets", user="owner@example.com", json={name: {"description": f"{name} dataset", **fields}}
        )
        assert r.status_code == 200, r.get_data(as_text=True)


def assert_error(response, status: int, code: str) -> dict[str, Any]:
    """The SPEC §1 envelope, with the status and code expected."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


@functools.cache
def load_function(name: str):
    """A function's main.py as a module of its own (for its helpers), apart from `main`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"function_{name}", os.path.join(ROOT, "functions", name, "main.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def assert_request_logged_without_secrets(err: str, token: str, body: Any, response, path: str, caller: str):
    """What a request wrote to stderr: JSON lines, exactly one of them the request's line, made
    only of known fields from known sources; and nothing secret anywhere: not the token, not
    an API key, not the body nor the answer."""
    import re
    from urllib.parse import urlsplit

    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    requests = [e for e in lines if "httpRequest" in e]
    assert [e["request_id"] for e in requests] == [response.headers["X-Request-Id"]]
    [line] = requests
    assert set(line) <= _REQUEST_FIELDS, set(line) - _REQUEST_FIELDS
    assert line["caller"] in (caller, None) and line["status"] == response.status_code
    assert line["httpRequest"]["requestUrl"] == urlsplit(path).path
    assert re.fullmatch(r"[A-Z]+ /[\w/<>.:-]* [0-9]{3} [0-9]+ ms", line["message"]), line["message"]
    assert re.fullmatch(r"/[\w/<>.:-]*", line["route"])
    text = err.lower()
    assert token.lower() not in text and "ghk_" not in text and "bearer" not in text
    free = " ".join(json.dumps(e) for e in lines if e is not line).lower()  # other lines: free text
    for value in {*_strings(body), *_strings(response.get_json(silent=True))}:
        value = value.lower()
        if len(value) >= 4 and value not in path.lower() and value != caller:
            assert value not in free, f"{value!r} appears in the log"


_REQUEST_FIELDS = {
    "severity",
    "message",
    "request_id",
    "function",
    "method",
    "route",
    "status",
    "latency_ms",
    "caller",
    "httpRequest",
    "logging.googleapis.com/trace",
    "logging.googleapis.com/spanId",
    "logging.googleapis.com/trace_sampled",
}


def app_functions() -> list[str]:
    """The functions whose main.py serves an `App` (a route table)."""
    base = os.path.join(ROOT, "functions")
    return sorted(
        name for name in os.listdir(base) if "App(" in open(os.path.join(base, name, "main.py")).read()
    )


def start_server(argv: list[str], env: dict[str, str], health: str, log_path: str) -> subprocess.Popen:
    """A server process (its output to `log_path`), once `health` answers 200."""
    log = open(log_path, "ab")
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{argv} exited; see {log_path}")
        try:
            if requests.get(health, timeout=1).status_code == 200:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{health} did not come up; see {log_path}")


def server_env(test_env: dict[str, str]) -> dict[str, str]:
    """The environment of a server process of the stack under test."""
    return {**os.environ, **test_env, "PYTHONPATH": ROOT}


def wait_until(condition, what: str, timeout: float = 30.0, every: float = 0.05):
    """Poll `condition` until it returns something true (returned), for at most `timeout` s:
    to wait on the event that would cause what a test then proves absent, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


def acknowledged(running, *, message_id: str | None = None, payload=None) -> bool:
    """Whether a worker (tools/workers.Running, served with record=True) has acknowledged (2xx)
    a delivery of that message: Pub/Sub delivers an acknowledged message no more."""
    return any(
        200 <= d.status < 300
        and (message_id is None or d.message_id == message_id)
        and (payload is None or d.payload == payload)
        for d in list(running.answered)
    )


class MemoryState:
    """A thread-safe in-memory StateStore for sandbox tests (the twins function's is on Firestore)."""

    def __init__(self, **values):
        self.values: dict = dict(values)
        self.lock = threading.Lock()

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value):
        self.values[key] = value

    def delete(self, key):
        self.values.pop(key, None)

    def increment(self, key, n=1):
        with self.lock:
            self.values[key] = self.values.get(key, 0) + n
            return self.values[key]

    def items(self):
        return dict(self.values)
