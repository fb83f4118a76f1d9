"""Where the client's bearer token comes from, first found wins:

1. `Gatehouse(url, token=...)`, or `api_key=...`;
2. the environment: `GATEHOUSE_TOKEN`, then `GATEHOUSE_API_KEY`;
3. an API key saved for this server by `client.auth.save_key()` (the file `GATEHOUSE_KEY_FILE`,
   by default `~/.config/gatehouse/keys.json`, mode 0600, one key per server URL so a key is
   never sent to another server);
4. Google credentials: an ID token for the audience (`audience=`, `GATEHOUSE_AUDIENCE`, by
   default the gcloud CLI's, which a Gatehouse deployment accepts unless told otherwise),
   through google-auth from a service-account key (`GOOGLE_APPLICATION_CREDENTIALS`); else
   from the gcloud CLI (`gcloud auth print-identity-token`, a user logged in with `gcloud auth
   login`; `GATEHOUSE_GCLOUD` names it when it is not on PATH, empty to skip it); else through google-auth from the metadata server (Cloud Run, GCE, Vertex...).

Google ID tokens last an hour; the client fetches a new one shortly before expiry and once
more after a 401.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatehouse.client import Gatehouse

GCLOUD_CLI_AUDIENCE = "32555940559.apps.googleusercontent.com"
REFRESH_MARGIN_S = 300  # a Google token with less than this left is fetched again


def key_file() -> Path:
    if os.environ.get("GATEHOUSE_KEY_FILE"):
        return Path(os.environ["GATEHOUSE_KEY_FILE"]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "gatehouse" / "keys.json"


def _server_id(url: str) -> str:
    return url.rstrip("/")


def saved_keys(path: Path | None = None) -> dict[str, str]:
    path = path or key_file()
    try:
        with open(path) as f:
            keys = json.load(f)
    except FileNotFoundError:
        return {}
    return keys if isinstance(keys, dict) else {}


def write_keys(keys: dict[str, str], path: Path | None = None) -> Path:
    """Writes the key file readable by its owner alone (0600; its folder 0700), replacing it
    atomically so a crash never leaves half a file."""
    path = path or key_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            json.dump(keys, f, indent=2, sort_keys=True)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    return path


def _expiry(token: str) -> float:
    """A JWT's `exp`, read without verifying (the server verifies; this only schedules refreshes)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, ValueError, TypeError):
        return time.time() + 600


class Credentials:
    """The token in use: `kind` is `token`, `api_key`, `google`, `gcloud` or `none` (no credentials
    found: meta routes still work, anything else answers 401)."""

    def __init__(self, url: str, token: str | None, api_key: str | None, audience: str | None):
        self.url = _server_id(url)
        self.audience = audience or os.environ.get("GATEHOUSE_AUDIENCE") or GCLOUD_CLI_AUDIENCE
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = float("inf")
        self.kind = "unresolved"
        for kind, value in (
            ("token", token),
            ("api_key", api_key),
            ("token", os.environ.get("GATEHOUSE_TOKEN")),
            ("api_key", os.environ.get("GATEHOUSE_API_KEY")),
            ("api_key", saved_keys().get(self.url)),
        ):
            if value:
                self.use(kind, value.strip())
                break

    def use(self, kind: str, token: str) -> None:
        with self._lock:
            self.kind, self._token, self._expires = kind, token, float("inf")

    def header(self) -> str | None:
        """`Bearer <token>`, fetching a Google token when there is none yet or it is about to expire."""
        with self._lock:
            if (
                self.kind in ("unresolved", "google", "gcloud")
                and time.time() > self._expires - REFRESH_MARGIN_S
            ):
                self._fetch_google()
            elif self.kind == "unresolved":
                self._fetch_google()
            return f"Bearer {self._token}" if self._token else None

    def refresh(self) -> bool:
        """After a 401: a Google token is fetched again (True when that may help)."""
        with self._lock:
            if self.kind not in ("google", "gcloud"):
                return False
            self._fetch_google()
            return bool(self._token)

    def _fetch_google(self) -> None:
        # A key file named by GOOGLE_APPLICATION_CREDENTIALS first; otherwise the gcloud CLI
        # before the metadata server, whose detection costs a laptop seconds of timeouts.
        sources = [_google_id_token, _gcloud_id_token]
        if not os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            sources.reverse()
        token, kind = None, "none"
        for source in sources:
            token, kind = source(self.audience)
            if token:
                break
        self.kind, self._token = (kind, token) if token else ("none", None)
        self._expires = _expiry(token) if token else float("inf")


def _google_id_token(audience: str) -> tuple[str | None, str]:
    """An ID token from google-auth's own sources: a service-account key file or the metadata server."""
    import google.auth.exceptions
    import google.auth.transport.requests
    import google.oauth2.id_token

    try:
        return google.oauth2.id_token.fetch_id_token(
            google.auth.transport.requests.Request(), audience
        ), "google"
    except (google.auth.exceptions.GoogleAuthError, ValueError):
        return None, "none"


def _gcloud_id_token(audience: str) -> tuple[str | None, str]:
    """`gcloud auth print-identity-token` for a logged-in user (gcloud's own audience; another
    audience only for service accounts, which gcloud refuses for users)."""
    gcloud = os.environ.get("GATEHOUSE_GCLOUD")  # where gcloud is; set empty to never use it
    gcloud = shutil.which("gcloud") if gcloud is None else gcloud
    if not gcloud:
        return None, "none"
    argv = [gcloud, "auth", "print-identity-token"]
    if audience != GCLOUD_CLI_AUDIENCE:
        argv.append(f"--audiences={audience}")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None, "none"
    token = done.stdout.strip()
    return (token, "gcloud") if done.returncode == 0 and token.count(".") == 2 else (None, "none")


class Auth:
    """`client.auth`: which credentials are in use, and API keys saved for this server."""

    def __init__(self, client: Gatehouse):
        self._client = client

    @property
    def kind(self) -> str:
        return self._client._credentials.kind

    def save_key(
        self,
        name: str = "gatehouse-python",
        *,
        expires_in_days: int | None = None,
        path: str | Path | None = None,
    ) -> dict[str, Any]:
        """Issues an API key for the caller (`POST /users/me/keys`), saves it for this server in
        the key file (mode 0600) and uses it from now on; later clients of this server find it
        without a token. Returns the key's record (with `path`, where it was saved)."""
        body: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        record = self._client.keys.create(**body)
        path = Path(path).expanduser() if path else key_file()
        keys = saved_keys(path)
        keys[self._client._credentials.url] = record["key"]
        write_keys(keys, path)
        self._client._credentials.use("api_key", record["key"])
        return {**record, "path": str(path)}

    def forget_key(self, *, revoke: bool = True, path: str | Path | None = None) -> bool:
        """Removes this server's saved key (and revokes it on the server unless `revoke=False`)."""
        path = Path(path).expanduser() if path else key_file()
        keys = saved_keys(path)
        key = keys.pop(self._client._credentials.url, None)
        if key is None:
            return False
        if revoke and key.startswith("ghk_") and key.count("_") >= 2:
            from gatehouse.errors import NotFound

            try:
                self._client.keys.revoke(key.split("_")[1])  # ghk_<id>_<secret>
            except NotFound:
                pass  # revoked or expired already
        write_keys(keys, path)
        credentials = self._client._credentials
        if credentials.kind == "api_key" and credentials._token == key:
            credentials.use("unresolved", "")  # Google credentials next, if there are any
        return True
