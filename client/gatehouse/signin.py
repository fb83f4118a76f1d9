"""Signing in without the gcloud CLI, where the deployment configures an OAuth client of its own
(`GET /users/_signin`): the browser (the authorization code grant with PKCE on a loopback
redirect, RFC 8252 and RFC 7636) or, where no browser opens, a code to enter on any device (the
device authorization grant, RFC 8628). Either yields an ID token for the client id, which the
deployment accepts, and usually a refresh token to get the next one when it expires.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from gatehouse.errors import SignInDenied, SignInExpired, SignInFailed

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_S = 5  # RFC 8628 §3.5: each slow_down adds 5 seconds to the polling interval
BROWSER_TIMEOUT_S = 300


def sign_in(
    config: dict[str, Any],
    *,
    browser: bool | None = None,
    opener: Callable[[str], Any] | None = None,
    say: Callable[[str], None] = print,
    timeout: float = BROWSER_TIMEOUT_S,
) -> dict[str, Any]:
    """The token endpoint's answer (with `id_token`) after the browser sign-in when asked for
    (`browser=True`, or an `opener` given) or when a graphical browser can be opened, otherwise
    after the device-code sign-in. Raises SignInFailed (SignInDenied, SignInExpired)."""
    with requests.Session() as session:
        if browser or (browser is None and (opener is not None or browser_available())):
            opened = _browser(config, session, opener or webbrowser.open, say, timeout)
            if opened is not None:
                return opened
            say("No browser could be opened: signing in with a code instead.")
        return _device(config, session, say)


def browser_available() -> bool:
    """Whether a graphical browser can be opened here (a console one would take the terminal)."""
    graphical = (
        sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if not graphical:
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def _device(config: dict[str, Any], session: requests.Session, say: Callable[[str], None]) -> dict[str, Any]:
    asked = _post(
        session,
        config["device_authorization_endpoint"],
        {"client_id": config["client_id"], "scope": " ".join(config["scopes"])},
    )
    if "error" in asked:
        raise _failure(asked, "the device authorization endpoint refused the client")
    url = (
        asked.get("verification_uri_complete")
        or asked.get("verification_uri")
        or asked.get("verification_url")
    )
    minutes = max(1, round(float(asked.get("expires_in", 1800)) / 60))
    say(
        f"To sign in, open {url} on any device and enter the code {asked['user_code']} (within {minutes} min)."
    )
    interval = float(asked.get("interval", 5))
    deadline = time.monotonic() + float(asked.get("expires_in", 1800))
    while True:
        time.sleep(interval)
        if time.monotonic() > deadline:
            raise SignInExpired(
                0, "expired_token", "the code expired before it was entered: call login() again"
            )
        answer = _post(
            session,
            config["token_endpoint"],
            {**_client(config), "device_code": asked["device_code"], "grant_type": DEVICE_GRANT},
        )
        error = answer.get("error")
        if error is None:
            return answer
        if error == "slow_down":
            interval += SLOW_DOWN_S
        elif error != "authorization_pending":
            raise _failure(answer, "the sign-in did not complete")


def _browser(
    config: dict[str, Any],
    session: requests.Session,
    opener: Callable[[str], Any],
    say: Callable[[str], None],
    timeout: float,
) -> dict[str, Any] | None:
    """The browser sign-in, or None when the browser cannot be opened."""
    verifier = secrets.token_urlsafe(64)  # 86 characters: RFC 7636 asks for 43 to 128
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    came_back: dict[str, str] = {}
    done = threading.Event()

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            if "code" not in query and "error" not in query:
                self.send_error(404)  # e.g. the browser asking for /favicon.ico
                return
            came_back.update(query)
            done.set()
            text = (
                "Signed in: close this tab and go back to Python." if "code" in query else "Sign-in refused."
            )
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirect)  # the loopback redirect of RFC 8252 §7.3
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
    url = (
        config["authorization_endpoint"]
        + "?"
        + urlencode(
            {
                "client_id": config["client_id"],
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": " ".join(config["scopes"]),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": state,
            }
        )
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        if opener(url) is False:  # webbrowser.open's "could not"
            return None
        say(f"Sign in in the browser (or open {url}).")
        if not done.wait(timeout):
            raise SignInExpired(0, "expired_token", f"the browser did not come back within {timeout:g} s")
    finally:
        server.shutdown()
        server.server_close()
    if came_back.get("state") != state:
        raise SignInFailed(
            0, "invalid_state", "the browser came back from another sign-in: call login() again"
        )
    if "error" in came_back:
        raise _failure(came_back, "the sign-in was refused")
    answer = _post(
        session,
        config["token_endpoint"],
        {
            **_client(config),
            "code": came_back["code"],
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            "grant_type": "authorization_code",
        },
    )
    if "error" in answer:
        raise _failure(answer, "the token endpoint refused the code")
    return answer


def refresh(record: dict[str, Any]) -> dict[str, Any] | None:
    """A saved sign-in with a new ID token from its refresh token, or None when there is none
    or the token endpoint refuses it (then the person signs in again)."""
    if not record.get("refresh_token"):
        return None
    try:
        answer = _post(
            requests.Session(),
            record["token_endpoint"],
            {**_client(record), "refresh_token": record["refresh_token"], "grant_type": "refresh_token"},
        )
    except (requests.RequestException, SignInFailed):
        return None
    if "id_token" not in answer:
        return None
    return {
        **record,
        "id_token": answer["id_token"],
        "refresh_token": answer.get("refresh_token", record["refresh_token"]),
    }


def saved(config: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """What is saved for the server (in the key file, 0600): the ID token and what refreshes it."""
    if "id_token" not in answer:
        raise SignInFailed(
            0, "no_id_token", "the sign-in gave no ID token (the scopes need openid and email)"
        )
    record = {"id_token": answer["id_token"], "token_endpoint": config["token_endpoint"], **_client(config)}
    if answer.get("refresh_token"):
        record["refresh_token"] = answer["refresh_token"]
    return record


def _client(config: dict[str, Any]) -> dict[str, str]:
    # An installed app's secret is not confidential (Google's docs); its token endpoint asks for it.
    secret = {"client_secret": config["client_secret"]} if config.get("client_secret") else {}
    return {"client_id": config["client_id"], **secret}


def _post(session: requests.Session, url: str, form: dict[str, str]) -> dict[str, Any]:
    """An OAuth endpoint's JSON answer, errors included (Google answers 400, 403 or 428)."""
    response = session.post(url, data=form, headers={"Accept": "application/json"}, timeout=30)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise SignInFailed(
            response.status_code, "bad_answer", f"{url} answered {response.status_code} without JSON"
        )
    return answer


def _failure(answer: dict[str, Any], what: str) -> SignInFailed:
    error = str(answer.get("error"))
    why = f": {answer['error_description']}" if answer.get("error_description") else ""
    if error == "access_denied":
        return SignInDenied(0, error, f"{what}: the sign-in was refused (access_denied){why}")
    if error == "expired_token":
        return SignInExpired(0, error, f"{what}: the code expired before it was entered; call login() again")
    return SignInFailed(0, error, f"{what} ({error}){why}")
