"""A local stand-in for Google's sign-in (the OAuth 2.0 / OpenID Connect endpoints `GET
/users/_signin` names), for the client's tests: Google's endpoints are not reachable from the
tests. It serves Google's paths under its own URL (OAUTH_ISSUER on the stack under test):

- `POST /device/code`: the device authorization grant (RFC 8628 §3.1-3.2);
- `POST /token`: the device code grant (`authorization_pending`, `slow_down` when polled
  sooner than the interval, `expired_token`, `access_denied`), the authorization code grant
  with PKCE (S256, RFC 7636) and the refresh token grant;
- `GET /o/oauth2/v2/auth`: the browser sign-in, which "approves" at once as `email` and
  redirects back to the loopback `redirect_uri` with a code (or `error=access_denied`);
- `GET /device`: the verification page a person would open.

ID tokens are signed with the test session's Google key (its certificate is what the stack's
GOOGLE_CERTS_URL serves), with Google's issuer and the client id as audience, so the stack
verifies them as it verifies Google's. The tests approve or deny a device code with `approve()`
and `deny()`, and read what was asked in `polls`, `refreshes` and `codes`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from google.auth import crypt, jwt

GOOGLE_ISSUER = "https://accounts.google.com"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_S = 5  # RFC 8628 §3.5: each slow_down adds 5 seconds to the interval


@dataclass
class DeviceCode:
    user_code: str
    expires_at: float
    interval: float
    state: str = "pending"  # pending | approved | denied
    email: str = ""
    last_poll: float = 0.0


@dataclass
class OidcStandin:
    key_pem: bytes
    kid: str
    client_id: str
    client_secret: str = ""
    email: str = "someone@example.com"  # who the browser sign-in signs in
    deny_browser: bool = False
    interval: float = 0.2  # seconds between polls the device code asks for
    device_ttl: float = 60.0
    token_ttl: int = 3600
    issue_refresh_tokens: bool = True
    slow_downs: int = 0  # polls answered slow_down however long the client waited (a busy server)
    authorizations: list[dict[str, str]] = field(default_factory=list)  # browser sign-ins asked for
    polls: list[tuple[float, str]] = field(default_factory=list)  # (time, answer) per device poll
    refreshes: int = 0
    devices: dict[str, DeviceCode] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # authorization code -> request
    _refresh: dict[str, str] = field(default_factory=dict)  # refresh token -> email
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OidcStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path == "/o/oauth2/v2/auth":
                    self._redirect(standin.authorize(query))
                elif url.path == "/device":
                    self._answer(200, b"Enter the code shown by your device.", "text/plain")
                else:
                    self._answer(404, b'{"error": "not_found"}')

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                path = urlsplit(self.path).path
                if path == "/device/code":
                    status, body = standin.device_code(form)
                elif path == "/token":
                    status, body = standin.token(form)
                else:
                    status, body = 404, {"error": "not_found"}
                self._answer(status, json.dumps(body).encode())

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        """Back to a sign-in that approves promptly (between tests)."""
        with self._lock:
            self.devices.clear()
            self.codes.clear()
            self._refresh.clear()
            self.polls.clear()
            self.authorizations.clear()
        self.refreshes = self.slow_downs = 0
        self.deny_browser = False
        self.interval, self.device_ttl, self.token_ttl = 0.2, 60.0, 3600
        self.issue_refresh_tokens = True

    # -- what a person does in the browser -------------------------------------------------------
    def pending(self, timeout: float = 30.0) -> DeviceCode:
        """The newest device code still pending (waits for a client to ask for one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                waiting = [d for d in self.devices.values() if d.state == "pending"]
            if waiting:
                return waiting[-1]
            time.sleep(0.02)
        raise AssertionError(f"no device code was asked for within {timeout:g} s")

    def approve(self, email: str, timeout: float = 30.0) -> None:
        """The person enters the code shown and signs in as `email`."""
        device = self.pending(timeout)
        device.email, device.state = email, "approved"

    def deny(self, timeout: float = 30.0) -> None:
        self.pending(timeout).state = "denied"

    # -- the endpoints ---------------------------------------------------------------------------
    def _client_ok(self, form: dict[str, str]) -> bool:
        return form.get("client_id") == self.client_id and form.get("client_secret", "") == self.client_secret

    def device_code(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        code = secrets.token_urlsafe(24)
        user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
        with self._lock:
            self.devices[code] = DeviceCode(user_code, time.time() + self.device_ttl, self.interval)
        return 200, {
            "device_code": code,
            "user_code": user_code,
            "verification_url": f"{self.url}/device",  # Google's name for RFC 8628's verification_uri
            "expires_in": int(self.device_ttl),
            "interval": self.interval,
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if not self._client_ok(form):
            return 401, {"error": "invalid_client"}
        grant = form.get("grant_type")
        if grant == DEVICE_GRANT:
            return self._device_token(form.get("device_code", ""))
        if grant == "authorization_code":
            return self._code_token(form)
        if grant == "refresh_token":
            email = self._refresh.get(form.get("refresh_token", ""))
            if email is None:
                return 400, {"error": "invalid_grant"}
            self.refreshes += 1
            return 200, self._tokens(email, refresh=False)
        return 400, {"error": "unsupported_grant_type"}

    def _device_token(self, code: str) -> tuple[int, dict[str, Any]]:
        now = time.time()
        with self._lock:
            device = self.devices.get(code)
            if device is None:
                return 400, {"error": "invalid_grant"}
            if now > device.expires_at:
                answer = "expired_token"
            elif self.slow_downs or (device.last_poll and now - device.last_poll < device.interval):
                self.slow_downs = max(0, self.slow_downs - 1)
                device.interval += SLOW_DOWN_S
                answer = "slow_down"
            else:
                answer = {"pending": "authorization_pending", "denied": "access_denied"}.get(device.state, "")
            device.last_poll = now
            self.polls.append((now, answer or "ok"))
            if answer:
                return 400 if answer != "authorization_pending" else 428, {"error": answer}  # Google's 428
            del self.devices[code]  # a device code is used once
        return 200, self._tokens(device.email)

    def _code_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            asked = self.codes.pop(form.get("code", ""), None)  # a code is used once
        if asked is None or form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if asked.get("code_challenge_method") != "S256" or challenge != asked.get("code_challenge"):
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        return 200, self._tokens(self.email)

    def authorize(self, query: dict[str, str]) -> str:
        """Where the browser goes next: back to the loopback redirect, with a code or an error."""
        redirect = query.get("redirect_uri", "")
        if urlsplit(redirect).hostname not in ("127.0.0.1", "localhost", "::1"):
            return f"{self.url}/device?error=redirect_uri_mismatch"  # Google's rule for installed apps
        self.authorizations.append(query)
        answer = {"state": query.get("state", "")}
        if self.deny_browser or query.get("client_id") != self.client_id:
            answer["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            with self._lock:
                self.codes[code] = query
            answer["code"] = code
        return f"{redirect}?{urlencode(answer)}"

    def _tokens(self, email: str, *, refresh: bool = True) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": GOOGLE_ISSUER,
            "aud": self.client_id,
            "azp": self.client_id,
            "sub": hashlib.sha256(email.encode()).hexdigest()[:21],
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + self.token_ttl,
        }
        signer = crypt.RSASigner.from_string(self.key_pem, key_id=self.kid)
        answer: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "scope": "openid email",
            "id_token": jwt.encode(signer, claims).decode(),
        }
        if refresh and self.issue_refresh_tokens:
            token = secrets.token_urlsafe(32)
            self._refresh[token] = email
            answer["refresh_token"] = token
        return answer
