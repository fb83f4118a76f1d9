"""Credentials, saved keys and the version check, against the real local stack."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import gatehouse
import pytest
from conftest import OWNER, RESEARCHER, ROOT
from gatehouse import Gatehouse, Table, Unauthenticated, Unreachable, ValidationError, VersionMismatchWarning


def test_version_is_the_servers_release(gh):
    from common.version import VERSION

    assert gatehouse.__version__ == VERSION
    assert gh.version == VERSION
    assert gh.server_version == f"{VERSION}+test"  # the session's GATEHOUSE_VERSION is the build label
    assert gh.health("twins") == {"status": "ok", "function": "twins", "version": f"{VERSION}+test"}


def test_another_release_series_is_warned_about(gateway, monkeypatch):
    monkeypatch.setattr("gatehouse.client.__version__", "7.0.0")
    with pytest.warns(VersionMismatchWarning, match=r"server runs Gatehouse 0\..*this client is 7\.0\.0"):
        Gatehouse(gateway)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Gatehouse(gateway, check_version=False)


def test_token_argument_and_environment(gateway, api, monkeypatch):
    assert Gatehouse(gateway, token=api.token(RESEARCHER)).whoami()["email"] == RESEARCHER
    monkeypatch.setenv("GATEHOUSE_TOKEN", api.token(OWNER))
    from_env = Gatehouse(gateway)
    assert from_env.auth.kind == "token" and from_env.whoami()["email"] == OWNER
    assert Gatehouse(gateway, token=api.token(RESEARCHER)).whoami()["email"] == RESEARCHER  # argument first


def test_api_key_argument_and_environment(gh, gateway, monkeypatch):
    key = gh.keys.create("laptop", 1)["key"]
    assert key.startswith("ghk_")
    assert Gatehouse(gateway, api_key=key).users.me()["email"] == OWNER
    monkeypatch.setenv("GATEHOUSE_API_KEY", key)
    client = Gatehouse(gateway)
    assert client.auth.kind == "api_key" and client.whoami()["email"] == OWNER


def test_no_credentials_is_a_typed_401_with_a_hint(gateway):
    client = Gatehouse(gateway)  # the version check needs no token
    with pytest.raises(Unauthenticated) as caught:
        client.datasets.list()
    err = caught.value
    assert client.auth.kind == "none"
    assert (err.status, err.error) == (401, "unauthenticated")
    assert err.request_id and err.request_id == err.response.headers["X-Request-Id"]
    assert "GATEHOUSE_TOKEN" in err.message and "save_key" in str(err)


def test_save_key_writes_0600_and_later_clients_use_it(connect, gateway, tmp_path):
    researcher = connect(RESEARCHER)
    saved = researcher.auth.save_key("notebook", expires_in_days=7)
    path = tmp_path / "keys.json"
    assert saved["path"] == str(path) and saved["name"] == "notebook"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o077 == 0 or path.parent == tmp_path
    assert json.loads(path.read_text()) == {gateway: saved["key"]}
    assert researcher.auth.kind == "api_key"

    later = Gatehouse(gateway + "/")  # no token anywhere but the saved key of this server
    assert later.auth.kind == "api_key" and later.whoami()["email"] == RESEARCHER
    other = Gatehouse("http://127.0.0.1:9", check_version=False)  # another server never gets it
    assert other.auth.kind == "unresolved"

    assert later.auth.forget_key() is True  # and revokes it on the server
    assert json.loads(path.read_text()) == {}
    with pytest.raises(Unauthenticated):
        Gatehouse(gateway, api_key=saved["key"]).whoami()


def test_save_key_tightens_an_existing_file(connect, tmp_path):
    path = tmp_path / "shared" / "keys.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"https://elsewhere.example.org": "ghk_other"}))
    os.chmod(path, 0o644)
    connect().auth.save_key(path=path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["https://elsewhere.example.org"] == "ghk_other"  # kept


def test_gcloud_cli_token(gateway, api, tmp_path, monkeypatch):
    """A user logged in with gcloud: the client runs `gcloud auth print-identity-token` (here a
    stand-in for the CLI printing a Google-signed token for gcloud's audience) and the server
    verifies that token against Google's certificates (the session's certs server) for real."""
    token = api.google_token("Gcloud.User@Example.com", aud="gatehouse-test-audience")
    script = tmp_path / "gcloud"
    script.write_text(f'#!/bin/sh\n[ "$1 $2" = "auth print-identity-token" ] && echo {token}\n')
    script.chmod(0o755)
    monkeypatch.setenv("GATEHOUSE_GCLOUD", str(script))
    client = Gatehouse(gateway, audience="gatehouse-test-audience")
    assert client.whoami()["email"] == "gcloud.user@example.com"
    assert client.auth.kind == "gcloud"


class MetadataServer:
    """Stands in for the GCE/Cloud Run metadata server's identity endpoint (what google-auth's
    fetch_id_token reads there), minting tokens with the test session's Google key."""

    def __init__(self, mint):
        self.audiences: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlparse(self.path)
                kind, body = "application/json", b'{"email": "runner@example.com", "aliases": ["default"]}'
                if url.path.endswith("/identity"):
                    audience = parse_qs(url.query)["audience"][0]
                    outer.audiences.append(audience)
                    kind, body = "text/plain", mint(audience).encode()
                elif url.path.endswith("/universe-domain"):
                    kind, body = "text/plain", b"googleapis.com"
                self.send_response(200)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_google_auth_id_token_for_the_configured_audience(gateway, api):
    """On Cloud Run or GCE: google-auth's fetch_id_token asks the metadata server for an ID
    token for the configured audience. A fresh process, as google-auth reads the metadata
    host when it is imported."""
    metadata = MetadataServer(lambda aud: api.google_token("Runner@Example.com", aud=aud))
    env = {
        **os.environ,
        "GCE_METADATA_HOST": metadata.address,
        "GCE_METADATA_IP": metadata.address,
        "GATEHOUSE_AUDIENCE": "gatehouse-test-audience",
        "PYTHONPATH": os.path.join(ROOT, "client"),
    }
    code = (
        "import sys; from gatehouse import Gatehouse; gh = Gatehouse(sys.argv[1]); "
        "print(gh.whoami()['email'], gh.auth.kind)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, gateway], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["runner@example.com", "google"]
    assert metadata.audiences == ["gatehouse-test-audience"]
    metadata.server.shutdown()


def test_a_validation_error_prints_its_first_problems(gh):
    gh.datasets.create("errs", "errors")
    with pytest.raises(ValidationError) as caught:
        gh.annotations.add("errs", kind="point", pos=["a", 2, 3])
    printed = str(caught.value)
    assert printed.startswith("422 validation_error: ")
    assert "\n  pos.0: Input should be a valid integer" in printed, printed
    assert printed.endswith(f"(request {caught.value.request_id})")
    many = [{"kind": "point", "pos": ["x", "y", "z"]} for _ in range(3)]
    with pytest.raises(ValidationError) as caught:
        gh.annotations.upload("errs", many)
    assert "... and 4 more (see .details)" in str(caught.value) and len(caught.value.details) == 9


def test_a_server_that_cannot_be_reached_says_which_url_and_what_to_check():
    with pytest.raises(Unreachable) as caught:
        Gatehouse("http://127.0.0.1:9")  # nothing listens on the discard port
    err = caught.value
    assert isinstance(err, ConnectionError) and isinstance(err, gatehouse.GatehouseError)
    text = str(err)
    assert "cannot reach the Gatehouse server at http://127.0.0.1:9 (the connection was refused" in text
    assert "make dev" in text and "Max retries" not in text
    assert err.details["url"] == "http://127.0.0.1:9" and "Max retries" in err.details["cause"]


def test_a_refused_saved_key_says_where_it_came_from_and_how_to_replace_it(connect, gateway, tmp_path):
    saved = connect(RESEARCHER).auth.save_key("old laptop")
    connect(RESEARCHER).keys.revoke(saved["id"])
    client = Gatehouse(gateway)
    assert client.auth.kind == "api_key" and client.auth.source.startswith("the API key saved for")
    with pytest.raises(Unauthenticated) as caught:
        client.whoami()
    text = str(caught.value)
    assert f"the API key saved for {gateway} in {tmp_path / 'keys.json'}" in text
    assert "save_key()" in text and "forget_key(revoke=False)" in text


def test_saved_keys_match_localhost_and_a_trailing_slash(connect, gateway, tmp_path):
    port = gateway.rsplit(":", 1)[1]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({f"http://localhost:{port}/": connect(RESEARCHER).keys.create("k")["key"]}))
    for url in (gateway, gateway + "/", f"http://localhost:{port}", f"HTTP://LOCALHOST:{port}/"):
        assert Gatehouse(url).whoami()["email"] == RESEARCHER, url
    assert (
        Gatehouse(f"http://127.0.0.2:{port}", check_version=False).auth.kind == "unresolved"
    )  # another host
    Gatehouse(f"http://localhost:{port}").auth.forget_key()  # the saved entry, however it was written
    assert json.loads(path.read_text()) == {}


def test_the_pandas_hint_names_the_install_that_works(gh, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    gh.datasets.create("nopandas", "x")
    with pytest.raises(ImportError, match=r'pip install "\./client\[pandas\]"'):
        gh.annotations.as_dataframe("nopandas")
    with pytest.raises(
        ImportError, match=r'to_dataframe\(\) needs pandas: pip install "\./client\[pandas\]"'
    ):
        Table({"columns": ["a"], "rows": [[1]]}).to_dataframe()


def test_login_without_gcloud_prints_the_steps_then_saves_a_given_key(connect, gateway, tmp_path, capsys):
    client = Gatehouse(gateway)  # no token, no saved key, no gcloud
    assert client.auth.login() is None
    steps = capsys.readouterr().out
    assert f"To use {gateway} this client needs a credential" in steps
    assert (
        "ask an admin of the deployment for an API key" in steps
        and "gcloud auth print-identity-token" in steps
    )
    assert f'Gatehouse("{gateway}").auth.login(api_key="ghk_...")' in steps and "make token EMAIL=" in steps

    key = connect(OWNER).keys.create("from the admin", 7, user=RESEARCHER)["key"]  # what an admin hands out
    assert client.auth.login(api_key=key) == RESEARCHER
    assert f"Signed in to {gateway} as {RESEARCHER}" in capsys.readouterr().out
    assert json.loads((tmp_path / "keys.json").read_text()) == {gateway: key}
    assert Gatehouse(gateway).whoami()["email"] == RESEARCHER  # later clients find it

    assert Gatehouse(gateway, api_key="ghk_x_nope").auth.login() is None  # a refused key: the steps
    assert "(the api_key= argument was refused" in capsys.readouterr().out
