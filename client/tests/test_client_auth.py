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
from gatehouse import Gatehouse, Unauthenticated, VersionMismatchWarning


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
