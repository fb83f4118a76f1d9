"""`client.auth.login()` without gcloud: the device-code and browser sign-ins against a local
stack whose deployment configures an OAuth client (OAUTH_CLIENT_ID), its issuer played by
tools/oidc_standin.py (Google's endpoints are not reachable from the tests). The ID tokens are
signed with the session's Google key, so the stack verifies them as it verifies Google's:
nothing is mocked."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest
import requests
from conftest import RESEARCHER
from gatehouse import Gatehouse, SignInDenied, SignInExpired, Unauthenticated

from tools.oidc_standin import SLOW_DOWN_S, OidcStandin

CLIENT_ID = "123-desktop.apps.googleusercontent.com"
CLIENT_SECRET = "not-confidential"  # a Desktop app's secret (Google's docs)


@pytest.fixture(scope="module")
def oidc(keys):
    standin = OidcStandin(keys.google_key_pem, keys.google_kid, CLIENT_ID, CLIENT_SECRET).start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def signin_gateway(test_env, workdir, oidc):
    """A second local stack (the same emulators) whose deployment configures the OAuth client."""
    from tests.utils import server_env, start_server
    from tools.emulators import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **server_env(test_env),
        "OAUTH_CLIENT_ID": CLIENT_ID,
        "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "OAUTH_ISSUER": oidc.url,
    }
    process = start_server(
        [sys.executable, "-m", "tools.gateway", "--port", str(port)],
        env,
        f"{base}/users/_health",
        os.path.join(workdir, "signin-gateway.log"),
    )
    yield base
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(autouse=True)
def fresh_standin(oidc):
    oidc.reset()


def in_background(action, *args):
    thread = threading.Thread(target=action, args=args, daemon=True)
    thread.start()
    return thread


def saved(tmp_path) -> dict:
    return json.loads((tmp_path / "keys.json").read_text())


def test_the_deployment_says_how_to_sign_in(signin_gateway, oidc):
    config = requests.get(f"{signin_gateway}/users/_signin", timeout=10).json()  # no token
    assert config == {
        "issuer": oidc.url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "device_authorization_endpoint": f"{oidc.url}/device/code",
        "token_endpoint": f"{oidc.url}/token",
        "authorization_endpoint": f"{oidc.url}/o/oauth2/v2/auth",
        "scopes": ["openid", "email"],
    }


def test_device_sign_in_end_to_end(signin_gateway, oidc, tmp_path, capsys):
    client = Gatehouse(signin_gateway)  # no token, no saved key, no gcloud
    approving = in_background(oidc.approve, RESEARCHER)  # the person enters the code elsewhere
    assert client.auth.login(browser=False) == RESEARCHER
    approving.join()
    out = capsys.readouterr().out
    assert f"open {oidc.url}/device on any device and enter the code " in out
    assert f"Signed in to {signin_gateway} as {RESEARCHER} (the sign-in saved for {signin_gateway}" in out
    assert client.auth.kind == "signin" and client.whoami()["email"] == RESEARCHER  # GET /roles

    [(url, record)] = saved(tmp_path).items()
    assert url == signin_gateway and record["id_token"].count(".") == 2 and record["refresh_token"]
    assert time.time() + 3500 < record["expires_at"] <= time.time() + 3600
    assert record["client_id"] == CLIENT_ID and record["token_endpoint"] == f"{oidc.url}/token"

    later = Gatehouse(signin_gateway)  # a later client finds the sign-in saved for this server
    assert later.auth.kind == "signin" and later.whoami()["email"] == RESEARCHER
    assert later.auth.login() == RESEARCHER and oidc.devices == {}  # already signed in: no new sign-in
    assert Gatehouse(signin_gateway + "/", check_version=False).auth.forget_key() is True
    assert saved(tmp_path) == {}


def test_slow_down_adds_five_seconds_to_the_interval(signin_gateway, oidc):
    oidc.slow_downs = 1  # the first poll is told to slow down

    def approve_after_the_slow_down():
        while not oidc.polls:
            time.sleep(0.02)
        oidc.approve(RESEARCHER)

    in_background(approve_after_the_slow_down)
    assert Gatehouse(signin_gateway).auth.login(browser=False, quiet=True) == RESEARCHER
    answers = [answer for _, answer in oidc.polls]
    assert answers == ["slow_down", "ok"]  # a second slow_down would mean the client ignored it
    (first, _), (second, _) = oidc.polls
    assert second - first >= oidc.interval + SLOW_DOWN_S


def test_a_denied_sign_in_is_a_typed_error(signin_gateway, oidc, tmp_path):
    in_background(oidc.deny)
    with pytest.raises(SignInDenied) as caught:
        Gatehouse(signin_gateway).auth.login(browser=False, quiet=True)
    assert caught.value.error == "access_denied" and "refused" in str(caught.value)
    assert not (tmp_path / "keys.json").exists()


def test_an_expired_code_is_a_typed_error(signin_gateway, oidc, tmp_path):
    oidc.device_ttl = 1  # nobody enters it in time
    with pytest.raises(SignInExpired) as caught:
        Gatehouse(signin_gateway).auth.login(browser=False, quiet=True)
    assert caught.value.error == "expired_token" and "call login() again" in str(caught.value)
    assert not (tmp_path / "keys.json").exists()


def test_browser_sign_in_with_pkce_end_to_end(signin_gateway, oidc, tmp_path):
    """The "browser" follows the sign-in URL: the stand-in approves and redirects to the
    client's loopback address, which receives the code; the client trades it with its PKCE
    verifier."""
    oidc.email = "Browser.User@Example.com"
    opened: list[str] = []

    def browser(url: str) -> bool:
        opened.append(url)
        assert requests.get(url, timeout=10).text.startswith("Signed in")
        return True

    client = Gatehouse(signin_gateway)
    assert client.auth.login(opener=browser, quiet=True) == "browser.user@example.com"
    [asked] = oidc.authorizations
    assert opened[0].startswith(f"{oidc.url}/o/oauth2/v2/auth?")
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["redirect_uri"].startswith("http://127.0.0.1:") and asked["client_id"] == CLIENT_ID
    assert oidc.codes == {}  # the code was traded (once)
    assert client.whoami()["email"] == "browser.user@example.com"
    assert saved(tmp_path)[signin_gateway]["refresh_token"]


def test_a_refused_browser_sign_in_is_a_typed_error(signin_gateway, oidc):
    oidc.deny_browser = True
    with pytest.raises(SignInDenied):
        Gatehouse(signin_gateway).auth.login(browser=True, opener=lambda url: requests.get(url, timeout=10))


def test_an_expired_sign_in_is_refreshed_with_its_refresh_token(signin_gateway, oidc, tmp_path):
    in_background(oidc.approve, RESEARCHER)
    Gatehouse(signin_gateway).auth.login(browser=False, quiet=True)
    keys = saved(tmp_path)
    keys[signin_gateway]["expires_at"] = time.time() - 1  # as if an hour had passed
    (tmp_path / "keys.json").write_text(json.dumps(keys))

    assert Gatehouse(signin_gateway).whoami()["email"] == RESEARCHER
    assert oidc.refreshes == 1
    assert saved(tmp_path)[signin_gateway]["expires_at"] > time.time() + 3500  # the new token's


def test_an_expired_sign_in_without_a_refresh_token_says_to_sign_in_again(
    signin_gateway, oidc, api, tmp_path
):
    oidc.issue_refresh_tokens = False
    in_background(oidc.approve, RESEARCHER)
    Gatehouse(signin_gateway).auth.login(browser=False, quiet=True)
    keys = saved(tmp_path)
    assert "refresh_token" not in keys[signin_gateway]
    expired = api.google_token(RESEARCHER, aud=CLIENT_ID, exp=int(time.time()) - 120)
    keys[signin_gateway].update(id_token=expired, expires_at=time.time() - 120)
    (tmp_path / "keys.json").write_text(json.dumps(keys))

    with pytest.raises(Unauthenticated) as caught:
        Gatehouse(signin_gateway).whoami()
    assert "sign in again with client.auth.login()" in str(caught.value)


def test_an_unconfigured_deployment_prints_the_steps(gateway, capsys):
    assert requests.get(f"{gateway}/users/_signin", timeout=10).status_code == 404
    assert Gatehouse(gateway).auth.login(browser=True) is None  # nothing to sign in with
    steps = capsys.readouterr().out
    assert "configures no browser or device-code sign-in" in steps
    assert (
        "ask an admin of the deployment for an API key" in steps
        and "gcloud auth print-identity-token" in steps
    )
