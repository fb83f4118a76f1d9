"""Tokens: every kind accepted when valid, every attack answered 401 (SPEC §1 Auth)."""

import base64
import datetime
import json
import time

import pytest

from tests.conftest import OWNER
from tests.utils import assert_error, mint


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_google_token_is_accepted_and_email_lowercased(api):
    r = api.get("/roles", token=api.google_token("Someone@Example.COM"))
    assert r.status_code == 200
    assert r.get_json()["email"] == "someone@example.com"


def test_google_certs_are_fetched_once_per_instance(api, certs_server):
    before = certs_server.fetches
    for i in range(5):
        assert api.get("/roles", token=api.google_token(f"user{i}@example.com")).status_code == 200
    assert certs_server.fetches - before <= 1


def test_missing_token_is_401_without_error_attribute(api):
    r = api.get("/roles")
    assert_error(r, 401, "unauthenticated")
    assert r.headers["WWW-Authenticate"] == "Bearer"


ATTACKS = {
    "not bearer": lambda api: ("Basic dXNlcjpwYXNz", None),
    "bearer without token": lambda api: ("Bearer ", None),
    "garbage": lambda api: (None, "not-a-token"),
    "two segments": lambda api: (None, "abc.def"),
    "expired": lambda api: (None, api.google_token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)),
    "wrong issuer": lambda api: (None, api.google_token(iss="https://evil.example.com")),
    "issuer lookalike": lambda api: (None, api.google_token(iss="accounts.google.com.evil.example.com")),
    "wrong audience": lambda api: (None, api.google_token(aud="someone-elses-client")),
    "unknown key id": lambda api: (None, api.google_token(kid="never-published")),
    "signed by another key": lambda api: (None, api.google_token(key=api.keys.other_key_pem)),
    "email not verified": lambda api: (None, api.google_token(email_verified=False)),
    "no email": lambda api: (None, api.google_token(email=None)),
    "tampered payload": lambda api: (None, tamper(api.google_token("someone@example.com"), email=OWNER)),
    "alg none": lambda api: (
        None,
        b64({"alg": "none", "typ": "JWT"})
        + "."
        + b64(
            {
                "iss": "https://accounts.google.com",
                "aud": "gatehouse-test-audience",
                "email": OWNER,
                "email_verified": True,
                "exp": int(time.time()) + 600,
                "iat": int(time.time()),
            }
        )
        + ".",
    ),
    "alg HS256 with the cert as secret": lambda api: (None, hs256_forgery(api)),
    "malformed api key": lambda api: (None, "ghk_nothex_short"),
    "unknown api key": lambda api: (None, "ghk_0123456789abcdef_" + "A" * 43),
    "dev token from another key": lambda api: (
        None,
        mint(
            api.keys.other_key_pem,
            {
                "iss": "gatehouse-dev",
                "aud": "gatehouse-dev",
                "email": OWNER,
                "email_verified": True,
                "exp": int(time.time()) + 600,
                "iat": int(time.time()),
            },
            kid="gatehouse-dev-1",
        ),
    ),
}


def tamper(token: str, **changes) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "==="))
    return ".".join([header, b64({**claims, **changes}), signature])


def hs256_forgery(api) -> str:
    import hashlib
    import hmac

    signing_input = (
        b64({"alg": "HS256", "typ": "JWT", "kid": "test-kid-1"})
        + "."
        + b64(
            {
                "iss": "https://accounts.google.com",
                "aud": "gatehouse-test-audience",
                "email": OWNER,
                "email_verified": True,
                "exp": int(time.time()) + 600,
                "iat": int(time.time()),
            }
        )
    )
    mac = hmac.new(api.keys.google_cert_pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_token_attacks_are_401(api, attack):
    header, token = ATTACKS[attack](api)
    r = api.get("/roles", headers={"Authorization": header}) if header else api.get("/roles", token=token)
    assert_error(r, 401, "unauthenticated")
    assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_dev_token_refused_when_dev_mode_is_off(api, monkeypatch):
    from common import config

    token = api.token(OWNER)
    assert api.get("/roles", token=token).status_code == 200
    from common import cache

    cache.clear_all()
    monkeypatch.setenv("GATEHOUSE_DEV_MODE", "0")
    config.settings.cache_clear()
    try:
        assert_error(api.get("/roles", token=token), 401, "unauthenticated")
    finally:
        monkeypatch.undo()
        config.settings.cache_clear()


def _key(api, user):
    r = api.post("/users/me/keys", user=user, json={"name": "k", "expires_in_days": 1})
    assert r.status_code == 201
    return r.get_json()


def test_api_key_acts_as_its_owner(api):
    api.add_user("keyholder@example.com", global_roles=["clio_general"])
    key = _key(api, "keyholder@example.com")
    r = api.get("/roles", token=key["key"])
    assert r.status_code == 200 and r.get_json()["email"] == "keyholder@example.com"
    listed = api.get("/users/me/keys", user="keyholder@example.com").get_json()
    assert listed[0]["last_used_at"] is not None


def test_revoked_api_key_is_401_at_once(api):
    key = _key(api, "keyholder@example.com")
    assert api.get("/roles", token=key["key"]).status_code == 200
    r = api.delete(f"/users/me/keys/{key['id']}", user="keyholder@example.com")
    assert r.status_code == 204
    assert_error(api.get("/roles", token=key["key"]), 401, "unauthenticated")


def test_expired_api_key_is_401(api):
    from common.storage import store

    key = _key(api, "keyholder@example.com")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    store.collection("api_keys").document(key["id"]).update({"expires_at": past})
    assert_error(api.get("/roles", token=key["key"]), 401, "unauthenticated")


def test_api_key_with_wrong_secret_is_401(api):
    key = _key(api, "keyholder@example.com")
    forged = key["key"][:-4] + ("AAAA" if not key["key"].endswith("AAAA") else "BBBB")
    assert_error(api.get("/roles", token=forged), 401, "unauthenticated")


def test_disabled_user_is_403_whatever_the_token(api):
    api.add_user("gone@example.com", global_roles=["admin"])
    key = _key(api, "gone@example.com")
    api.add_user("gone@example.com", disabled=True)
    for token in (api.token("gone@example.com"), api.google_token("gone@example.com"), key["key"]):
        assert_error(api.get("/roles", token=token), 403, "forbidden")
        assert_error(api.get("/users", token=token), 403, "forbidden")


# -- start-up refuses configurations that must never run ---------------------------------------


def test_function_start_up_refuses_dev_mode_without_emulators(monkeypatch, api):
    from functions_framework import create_app

    from common import config

    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST")
    config.settings.cache_clear()
    try:
        with pytest.raises(Exception, match="GATEHOUSE_DEV_MODE"):
            create_app("handle", api.root + "/functions/roles/main.py")
    finally:
        monkeypatch.undo()
        config.settings.cache_clear()


def test_behind_the_gateway_the_forwarded_token_is_the_credential(api):
    """The API gateway puts its own token in Authorization and the caller's in
    X-Forwarded-Authorization; only the forwarded one counts, verified in full."""
    gateway_token = api.google_token("gateway@gatehouse.iam.gserviceaccount.com")
    r = api.get(
        "/roles",
        headers={
            "Authorization": f"Bearer {gateway_token}",
            "X-Forwarded-Authorization": f"Bearer {api.token('reader@example.com')}",
        },
    )
    assert r.status_code == 200 and r.get_json()["email"] == "reader@example.com"
    r = api.get(
        "/roles",
        headers={"Authorization": f"Bearer {gateway_token}", "X-Forwarded-Authorization": "Bearer forged"},
    )
    assert_error(r, 401, "unauthenticated")


def test_a_key_revoked_on_another_instance_stops_within_the_role_window(api, monkeypatch):
    from common.config import settings
    from common.identity import auth
    from common.storage import store

    key = _key(api, "keyholder@example.com")
    assert api.get("/roles", token=key["key"]).status_code == 200
    remembered = auth._verified.get(key["key"])
    assert remembered is not None
    assert remembered.expires_at <= time.time() + settings().role_cache_seconds  # the window
    # Revoked on another instance: the record goes, and this instance is not told.
    store.collection("api_keys").document(key["id"]).delete()
    assert api.get("/roles", token=key["key"]).status_code == 200  # still within the window here
    window = settings().role_cache_seconds
    monkeypatch.setattr(auth._verified, "clock", lambda: time.monotonic() + window)  # it passes
    assert_error(api.get("/roles", token=key["key"]), 401, "unauthenticated")


def test_google_certificates_unreachable_is_503_not_401(api, monkeypatch):
    from common import config
    from tools.emulators import free_port

    monkeypatch.setenv("GOOGLE_CERTS_URL", f"http://127.0.0.1:{free_port()}/oauth2/v1/certs")  # nobody there
    config.settings.cache_clear()
    try:
        r = api.get("/roles", token=api.google_token("certless@example.com"))
        body = assert_error(r, 503, "unavailable")
        assert "certificates" in body["message"] and r.headers["Retry-After"] == "5"
    finally:
        monkeypatch.undo()
        config.settings.cache_clear()


def test_certs_prefetched_at_cold_start_serve_the_first_google_token(api, certs_server):
    """In the cloud an instance fetches the certificates in the background at cold start; the
    first verify waits for that fetch and fetches nothing more."""
    from common.identity import auth

    auth._certs_request.cache_clear()  # a new instance: nothing cached yet
    before = certs_server.fetches
    auth.prefetch_certs()
    assert api.get("/roles", token=api.google_token("first@example.com")).status_code == 200
    assert certs_server.fetches == before + 1
    assert auth._prefetch is None  # joined once, then out of the way


def test_a_failed_prefetch_leaves_the_fetch_to_the_first_verify(api, certs_server, monkeypatch):
    from common.identity import auth

    def unreachable():
        raise OSError("no network yet")

    auth._certs_request.cache_clear()
    with monkeypatch.context() as m:
        m.setattr(auth, "_certs_request", unreachable)
        auth.prefetch_certs()
        assert auth._prefetch is not None
        auth._prefetch.join()
    before = certs_server.fetches
    assert api.get("/roles", token=api.google_token("second@example.com")).status_code == 200
    assert certs_server.fetches == before + 1
