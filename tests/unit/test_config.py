"""Start-up refuses configurations that must never run (common/config.py): dev mode off the
emulators or in the cloud, a certificates URL override off the emulators; production settings load.
A function refusing to start: tests/integration/test_auth.py."""

from __future__ import annotations

import pytest


def _load(monkeypatch, **env):
    from common import config

    for name in (
        "FIRESTORE_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "K_SERVICE",
        "GOOGLE_CERTS_URL",
        "GATEHOUSE_DEV_MODE",
        "OAUTH_CLIENT_ID",
        "OAUTH_CLIENT_SECRET",
        "OAUTH_ISSUER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return config.load()


def test_dev_mode_without_emulators_is_refused(monkeypatch):
    from common.config import ConfigError

    with pytest.raises(ConfigError):
        _load(monkeypatch, GATEHOUSE_DEV_MODE="1")
    with pytest.raises(ConfigError):
        _load(monkeypatch, GATEHOUSE_DEV_MODE="1", FIRESTORE_EMULATOR_HOST="127.0.0.1:1")


def test_dev_mode_in_the_cloud_is_refused(monkeypatch):
    from common.config import ConfigError

    with pytest.raises(ConfigError):
        _load(
            monkeypatch,
            GATEHOUSE_DEV_MODE="1",
            FIRESTORE_EMULATOR_HOST="127.0.0.1:1",
            STORAGE_EMULATOR_HOST="http://127.0.0.1:2",
            K_SERVICE="roles",
        )


def test_certs_url_override_off_emulators_is_refused(monkeypatch):
    from common.config import ConfigError

    with pytest.raises(ConfigError):
        _load(monkeypatch, GOOGLE_CERTS_URL="http://127.0.0.1:9/certs")


def test_production_settings_load(monkeypatch):
    monkeypatch.delenv("ALLOWED_AUDIENCES", raising=False)
    s = _load(monkeypatch, OWNER="Boss@Example.org")
    assert not s.dev_mode and s.owner == "boss@example.org"
    assert s.allowed_audiences == ("32555940559.apps.googleusercontent.com",)  # gcloud's own client


def test_clio_token_settings_clients_cannot_use_are_refused(monkeypatch):
    """clio's clients refetch a token with fewer than 4 h left: a shorter one would loop;
    clio-store's own tokens can only be checked with its secret."""
    from common.config import ConfigError

    with pytest.raises(ConfigError):
        _load(monkeypatch, CLIO_TOKEN_TTL="14399")
    with pytest.raises(ConfigError):
        _load(monkeypatch, CLIO_TOKEN_TTL="86400", CLIO_TOKEN_MAX_CHAIN="3600")
    monkeypatch.delenv("CLIO_TOKEN_MAX_CHAIN")
    with pytest.raises(ConfigError):
        _load(monkeypatch, ACCEPT_LEGACY_FLYEM_TOKENS="1")
    s = _load(monkeypatch, ACCEPT_LEGACY_FLYEM_TOKENS="1", FLYEM_SECRET="s", CLIO_TOKEN_TTL="14400")
    assert s.accept_legacy_flyem_tokens and s.clio_token_ttl == 14400
    monkeypatch.delenv("ACCEPT_LEGACY_FLYEM_TOKENS")
    monkeypatch.delenv("FLYEM_SECRET")
    monkeypatch.delenv("CLIO_TOKEN_TTL")
    s = _load(monkeypatch)
    assert (s.clio_token_ttl, s.clio_token_max_chain, s.flyem_secret) == (21 * 86400, 90 * 86400, "")


def test_the_sign_in_client_is_an_accepted_audience(monkeypatch):
    """Its ID tokens are for its client id: the deployment accepts them with no second setting."""
    monkeypatch.setenv("ALLOWED_AUDIENCES", "a,b")
    s = _load(monkeypatch, OAUTH_CLIENT_ID="123-desktop.apps.googleusercontent.com")
    assert s.allowed_audiences == ("a", "b", "123-desktop.apps.googleusercontent.com")
    assert s.oauth_issuer == "https://accounts.google.com"
    assert _load(monkeypatch, OAUTH_CLIENT_ID="b").allowed_audiences == ("a", "b")


def test_another_sign_in_issuer_off_emulators_or_a_secret_alone_is_refused(monkeypatch):
    from common.config import ConfigError

    with pytest.raises(ConfigError, match="OAUTH_ISSUER"):  # Gatehouse verifies Google's tokens only
        _load(monkeypatch, OAUTH_CLIENT_ID="c", OAUTH_ISSUER="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="OAUTH_CLIENT_ID"):
        _load(monkeypatch, OAUTH_CLIENT_SECRET="s")
