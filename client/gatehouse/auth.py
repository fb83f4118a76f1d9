"""Where the client's bearer token comes from, first found wins:

1. `Gatehouse(url, token=...)`, or `api_key=...`;
2. the environment: `GATEHOUSE_TOKEN`, then `GATEHOUSE_API_KEY`;
3. an API key saved for this server by `client.auth.save_key()`, or a sign-in saved by
   `client.auth.login()` (its ID token, expiry and refresh token), in the file
   `GATEHOUSE_KEY_FILE`, by default `~/.config/gatehouse/keys.json`, mode 0600, one credential
   per server URL so it is never sent to another server;
4. Google credentials: an ID token for the audience (`audience=`, `GATEHOUSE_AUDIENCE`, by
   default the gcloud CLI's, which a Gatehouse deployment accepts unless told otherwise),
   through google-auth from a service-account key (`GOOGLE_APPLICATION_CREDENTIALS`); else
   from the gcloud CLI (`gcloud auth print-identity-token`, a user logged in with `gcloud auth
   login`; `GATEHOUSE_GCLOUD` names it when it is not on PATH, empty to skip it); else through google-auth from the metadata server (Cloud Run, GCE, Vertex...).

Google ID tokens last an hour; the client fetches a new one shortly before expiry and once
more after a 401 (a saved sign-in's from its refresh token; without one, `login()` again).
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gatehouse import signin

if TYPE_CHECKING:
    from gatehouse.client import Gatehouse

GCLOUD_CLI_AUDIENCE = "32555940559.apps.googleusercontent.com"
REFRESH_MARGIN_S = 300  # a Google token with less than this left is fetched again


def key_file() -> Path:
    if os.environ.get("GATEHOUSE_KEY_FILE"):
        return Path(os.environ["GATEHOUSE_KEY_FILE"]).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "gatehouse" / "keys.json"


LOOPBACK = ("localhost", "127.0.0.1", "::1")


def _server_id(url: str) -> str:
    """The server a URL names, as saved keys are matched: scheme and host lower-cased, the
    loopback names (`localhost`, `127.0.0.1`, `::1`) as one, no trailing slash."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if host in LOOPBACK:
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    if not parts.scheme or not host:
        return url.strip().rstrip("/")
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"


def saved_key(url: str, path: Path | None = None) -> str | dict[str, Any] | None:
    """What is saved for the server `url` names (however its URL was written): an API key, a
    sign-in (a dict: `id_token`, `expires_at`, `refresh_token`...), or None."""
    wanted = _server_id(url)
    for saved_url, key in saved_keys(path).items():
        if _server_id(saved_url) == wanted and isinstance(key, (str, dict)):
            return key
    return None


def store_key(url: str, key: str | dict[str, Any], path: Path | None = None) -> Path:
    """Saves `key` (an API key or a sign-in) for the server `url` names (replacing any saved for
    it), mode 0600."""
    path = path or key_file()
    wanted = _server_id(url)
    keys = {u: k for u, k in saved_keys(path).items() if _server_id(u) != wanted}
    keys[wanted] = key
    return write_keys(keys, path)


def saved_keys(path: Path | None = None) -> dict[str, Any]:
    path = path or key_file()
    try:
        with open(path) as f:
            keys = json.load(f)
    except FileNotFoundError:
        return {}
    return keys if isinstance(keys, dict) else {}


def write_keys(keys: dict[str, Any], path: Path | None = None) -> Path:
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
    """The token in use: `kind` is `token`, `api_key`, `signin` (from `login()`), `google`,
    `gcloud` or `none` (no credentials found: meta routes still work, anything else answers 401)."""

    def __init__(self, url: str, token: str | None, api_key: str | None, audience: str | None):
        self.url = _server_id(url)
        self.audience = audience or os.environ.get("GATEHOUSE_AUDIENCE") or GCLOUD_CLI_AUDIENCE
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = float("inf")
        self.kind = "unresolved"
        self.source = "none"
        self.signin: dict[str, Any] | None = None  # a sign-in in use: what refreshes it
        self._save_signin = False
        saved = saved_key(self.url)
        for kind, value, source in (
            ("token", token, "the token= argument"),
            ("api_key", api_key, "the api_key= argument"),
            ("token", os.environ.get("GATEHOUSE_TOKEN"), "the environment variable GATEHOUSE_TOKEN"),
            ("api_key", os.environ.get("GATEHOUSE_API_KEY"), "the environment variable GATEHOUSE_API_KEY"),
            (
                "api_key",
                saved if isinstance(saved, str) else None,
                f"the API key saved for {self.url} in {key_file()}",
            ),
        ):
            if value:
                self.use(kind, value.strip(), source)
                break
        else:
            if isinstance(saved, dict) and isinstance(saved.get("id_token"), str):
                self.use_signin(saved, f"the sign-in saved for {self.url} in {key_file()}")

    def use(self, kind: str, token: str, source: str = "") -> None:
        with self._lock:
            self.kind, self._token, self._expires = kind, token, float("inf")
            self.source = source or kind
            self.signin = None

    def use_signin(self, record: dict[str, Any], source: str, *, saved: bool = True) -> None:
        """Uses a sign-in's ID token until it expires (then its refresh token, if it has one;
        the new token replaces the saved one when the sign-in is `saved`)."""
        with self._lock:
            self.kind, self._token, self.source, self.signin = "signin", record["id_token"], source, record
            self._save_signin = saved
            self._expires = float(record.get("expires_at") or _expiry(record["id_token"]))

    def _refresh_signin(self) -> bool:
        """A new ID token from the saved sign-in's refresh token, saved in its place (lock held)."""
        record = signin.refresh(self.signin) if self.signin else None
        if record is None:
            return False
        record["expires_at"] = _expiry(record["id_token"])
        self.signin, self._token, self._expires = record, record["id_token"], record["expires_at"]
        if self._save_signin:
            store_key(self.url, record)
        return True

    def refused_hint(self) -> str:
        """What to do when the server answers 401 to these credentials."""
        if self.kind == "none":
            return (
                " (the client found no credentials: pass token= or api_key=, set GATEHOUSE_TOKEN, "
                "save a key with client.auth.save_key(), or log in with gcloud; client.auth.login() "
                "prints the steps)"
            )
        if self.source.startswith("the API key saved"):
            return (
                f" (the client sent {self.source}: it was revoked or has expired. Replace it: "
                "connect once with another credential, Gatehouse(url, token=...) or api_key=..., "
                "and call client.auth.save_key(); or drop it with client.auth.forget_key(revoke=False))"
            )
        if self.kind == "signin":
            return (
                f" (the client sent the ID token of {self.source}: it has expired or was refused, "
                "and could not be refreshed; sign in again with client.auth.login())"
            )
        if self.kind in ("google", "gcloud"):
            return (
                f" (the client sent a Google ID token from {self.source}: the deployment does not "
                "accept this account or audience; ask its admin, or use an API key)"
            )
        return f" (the client sent {self.source}: it is not valid here, or has expired; client.auth.login() prints how to get one)"

    def header(self) -> str | None:
        """`Bearer <token>`, fetching a Google token when there is none yet or it is about to expire."""
        with self._lock:
            if self.kind == "signin" and time.time() > self._expires - REFRESH_MARGIN_S:
                self._refresh_signin()  # when it cannot, the server says so and refused_hint() what to do
            elif (
                self.kind in ("unresolved", "google", "gcloud")
                and time.time() > self._expires - REFRESH_MARGIN_S
            ):
                self._fetch_google()
            elif self.kind == "unresolved":
                self._fetch_google()
            return f"Bearer {self._token}" if self._token else None

    def refresh(self) -> bool:
        """After a 401: a Google token is fetched again, or a sign-in refreshed (True when that may help)."""
        with self._lock:
            if self.kind == "signin":
                return self._refresh_signin()
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
        self.source = {
            "gcloud": "gcloud auth print-identity-token",
            "google": "google-auth (GOOGLE_APPLICATION_CREDENTIALS or the metadata server)",
        }.get(kind, "none")


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


LOGIN_STEPS = """\
To use {url} this client needs a credential; it found none that works{why}.
This deployment configures no browser or device-code sign-in for the client (OAUTH_CLIENT_ID), so:

  1. Without the gcloud CLI: ask an admin of the deployment for an API key (they run
     gh.keys.create("your-laptop", 90, user="you@example.org"), or POST /users/you@example.org/keys).
     Then, once:
         >>> Gatehouse("{url}").auth.login(api_key="ghk_...")   # checks it, saves it (0600)
     Later clients of this server find it alone (in {keys}),
     or set GATEHOUSE_API_KEY=ghk_... in the environment.

  2. With the gcloud CLI (here, or anywhere you can copy from): gcloud auth login, then
         export GATEHOUSE_TOKEN=$(gcloud auth print-identity-token)     # lasts an hour
     (the client runs that command itself when gcloud is on PATH), and make it last with
         >>> Gatehouse("{url}").auth.save_key()       # an API key, saved for this server

  3. The local stack (make dev): make token EMAIL=you@example.org prints a dev token for
     GATEHOUSE_TOKEN; make dev prints the owner's.
"""


class Auth:
    """`client.auth`: which credentials are in use (`kind`, `source`), signing in (`login()`),
    and API keys saved for this server (`save_key()`, `forget_key()`)."""

    def __init__(self, client: Gatehouse):
        self._client = client

    def __repr__(self) -> str:
        return f"<gatehouse auth: {self.kind} from {self.source}>"

    @property
    def kind(self) -> str:
        return self._client._credentials.kind

    @property
    def source(self) -> str:
        """Where the credential in use came from (an argument, a variable, the key file...)."""
        return self._client._credentials.source

    def login(
        self,
        *,
        api_key: str | None = None,
        token: str | None = None,
        save: bool = True,
        quiet: bool = False,
        browser: bool | None = None,
        opener: Callable[[str], Any] | None = None,
    ) -> str | None:
        """Signs in without the gcloud CLI -> the caller's email, or None (with the steps to get
        a credential printed).

        With `api_key=` (an admin gave you one) or `token=`: checks it with the server and
        uses it; an API key is also saved for this server (unless `save=False`) so later
        clients find it. Without either: the credentials already found are checked; when none
        work and the deployment configures an OAuth client (`GET /users/_signin`), signs in
        there: in the browser when asked (`browser=True`, or an `opener(url)` that opens it)
        or when a graphical browser can be opened, otherwise with a code to enter on any device
        (printed even when `quiet`). The ID token it yields is used and saved for this server
        with its refresh token (unless `save=False`). Raises SignInDenied or SignInExpired when
        the sign-in does not complete. Where the deployment configures none, the exact steps
        to get a credential are printed (an API key from an admin, or gcloud)."""
        from gatehouse.errors import NotFound, Unauthenticated

        credentials = self._client._credentials
        if api_key or token:
            kind, value = ("api_key", api_key) if api_key else ("token", token)
            credentials.use(kind, str(value).strip(), f"the {kind}= given to login()")
        why = ""
        try:
            email = str(self._client.whoami()["email"])
        except Unauthenticated as exc:
            why = (
                f" ({credentials.source} was refused: {exc.message.split(' (')[0]})"
                if credentials.kind != "none"
                else ""
            )
            try:
                config = None if api_key or token else self._client.get("/users/_signin", auth=False)
            except NotFound:
                config = None
            if config is None:
                if not quiet:
                    print(LOGIN_STEPS.format(url=self._client.url, why=why, keys=key_file()))
                return None
            record = signin.saved(config, signin.sign_in(config, browser=browser, opener=opener))
            record["expires_at"] = _expiry(record["id_token"])
            credentials.use_signin(record, f"the sign-in of {config['issuer']} given to login()", saved=save)
            email = str(self._client.whoami()["email"])
            if save:
                where = store_key(credentials.url, record)
                credentials.source = f"the sign-in saved for {credentials.url} in {where}"
        if api_key and save:
            where = store_key(credentials.url, api_key.strip())
            credentials.source = f"the API key saved for {credentials.url} in {where}"
        if not quiet:
            print(f"Signed in to {self._client.url} as {email} ({credentials.source}).")
        return email

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
        where = store_key(
            self._client._credentials.url, record["key"], Path(path).expanduser() if path else None
        )
        self._client._credentials.use(
            "api_key", record["key"], f"the API key saved for {self._client._credentials.url} in {where}"
        )
        return {**record, "path": str(where)}

    def forget_key(self, *, revoke: bool = True, path: str | Path | None = None) -> bool:
        """Removes this server's saved key or sign-in (and revokes a key on the server unless
        `revoke=False`)."""
        path = Path(path).expanduser() if path else key_file()
        keys = saved_keys(path)
        server = self._client._credentials.url
        matching = [u for u in keys if _server_id(u) == server]
        if not matching:
            return False
        key = keys[matching[0]]
        for u in matching:
            del keys[u]
        if revoke and isinstance(key, str) and key.startswith("ghk_") and key.count("_") >= 2:
            from gatehouse.errors import NotFound

            try:
                self._client.keys.revoke(key.split("_")[1])  # ghk_<id>_<secret>
            except NotFound:
                pass  # revoked or expired already
        write_keys(keys, path)
        credentials = self._client._credentials
        in_use = key.get("id_token") if isinstance(key, dict) else key
        if credentials.kind in ("api_key", "signin") and credentials._token == in_use:
            credentials.use("unresolved", "", "none")  # Google credentials next, if there are any
        return True
