"""Settings read once from the environment; every variable is documented in README.md."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from common import version

# The gcloud CLI's OAuth client: `gcloud auth print-identity-token` mints tokens for this audience.
GCLOUD_CLI_CLIENT_ID = "32555940559.apps.googleusercontent.com"
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUER = "https://accounts.google.com"
DEV_ISSUER = "gatehouse-dev"
DEV_AUDIENCE = "gatehouse-dev"
# clio's tokens (POST /v2/server/token): the clients check this issuer, and refetch a token with
# fewer than 4 h left, so none is ever minted shorter.
CLIO_ISSUER = "flyem-clio-store"
CLIO_TOKEN_MIN_SECONDS = 4 * 3600


class ConfigError(RuntimeError):
    """A setting that must stop start-up (never served)."""


def _csv(name: str, default: str = "") -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, default).split(",") if item.strip())


def _patterns(name: str) -> tuple[re.Pattern[str], ...]:
    try:
        return tuple(re.compile(item) for item in _csv(name))
    except re.error as exc:
        raise ConfigError(f"{name}: not a regular expression: {exc}") from None


def _rate(name: str, default: str) -> tuple[int, int] | None:
    """`CALLS/SECONDS` (e.g. `600/60`) as (calls, per_seconds); `off` is None."""
    text = os.environ.get(name, default).strip().lower()
    if text == "off":
        return None
    calls, _, seconds = text.partition("/")
    if not (calls.isdigit() and seconds.isdigit() and int(calls) >= 1 and int(seconds) >= 1):
        raise ConfigError(f"{name} must be CALLS/SECONDS (e.g. {default}) or off, not {text!r}")
    return int(calls), int(seconds)


@dataclass(frozen=True)
class Settings:
    project: str
    owner: str
    allowed_audiences: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    dev_mode: bool
    dev_key_file: str
    google_certs_url: str
    firestore_emulator: str
    storage_emulator: str
    attachments_bucket: str
    signer_key_file: str
    version: str
    role_cache_seconds: float
    audit_retention_days: int
    sig_bucket: str
    transfer_func: str
    transfer_dest: str
    transfer_timeout_seconds: float
    transfer_attempts: int
    transfer_topic: str
    purge_topic: str
    neuroglancer_url: str
    expose: tuple[re.Pattern[str], ...] = ()
    extra_roles: tuple[str, ...] = ()
    twin_memory_mb: int = 512
    twin_call_retention_days: int = 30
    backend_deadline_seconds: float = 30.0
    twin_jobs_topic: str = "gatehouse-twin-jobs"
    twin_results_bucket: str = "gatehouse-twin-results"
    twin_max_result_mb: int = 16
    twin_calls_per_caller: int = 2
    twin_default_rate_limit: tuple[int, int] | None = (600, 60)
    clio_token_signer: str = ""  # the service account whose Google-held key signs clio tokens
    clio_token_ttl: int = 21 * 86400  # three weeks, as clio-store
    clio_token_max_chain: int = 90 * 86400  # a token re-minted from a token never outlives this
    flyem_secret: str = ""  # clio-store's HS256 secret: tokens Janelia's DVID also accepts
    accept_legacy_flyem_tokens: bool = False
    # The OAuth client the Python client signs researchers in with (GET /users/_signin).
    oauth_client_id: str = ""
    oauth_client_secret: str = ""
    oauth_issuer: str = GOOGLE_ISSUER
    transfer_parallel_parts: int = 8  # a job's parts one transfer delivery sends at once (1-8)
    sig_cache_mb: int = 64  # signature blocks and index partitions an instance keeps
    dvid_timeout_seconds: float = 30.0  # connecting to DVID, and between two reads of its answer
    # neuPrint (POST /v2/neuprint/{ds}): the service token sent to every dataset's neuPrint server.
    neuprint_token: str = ""
    neuprint_timeout_seconds: float = 60.0

    @property
    def on_emulators(self) -> bool:
        return bool(self.firestore_emulator and self.storage_emulator)


def _audiences(oauth_client_id: str) -> tuple[str, ...]:
    """ALLOWED_AUDIENCES, and the sign-in's OAuth client: its ID tokens are for that audience."""
    audiences = _csv("ALLOWED_AUDIENCES", GCLOUD_CLI_CLIENT_ID)
    return (
        (*audiences, oauth_client_id) if oauth_client_id and oauth_client_id not in audiences else audiences
    )


def load() -> Settings:
    """Read the environment; refuse combinations that must never run."""
    env = os.environ
    oauth_client_id = env.get("OAUTH_CLIENT_ID", "").strip()
    s = Settings(
        project=env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT") or "gatehouse-dev",
        owner=env.get("OWNER", "").strip().lower(),
        allowed_audiences=_audiences(oauth_client_id),
        allowed_origins=_csv("ALLOWED_ORIGINS"),
        dev_mode=env.get("GATEHOUSE_DEV_MODE", "").lower() in ("1", "true", "yes"),
        dev_key_file=env.get("GATEHOUSE_DEV_KEY_FILE", ""),
        google_certs_url=env.get("GOOGLE_CERTS_URL", GOOGLE_CERTS_URL),
        firestore_emulator=env.get("FIRESTORE_EMULATOR_HOST", ""),
        storage_emulator=env.get("STORAGE_EMULATOR_HOST", ""),
        attachments_bucket=env.get("ATTACHMENTS_BUCKET", "gatehouse-attachments"),
        signer_key_file=env.get("SIGNER_KEY_FILE", ""),
        version=version.reported(env.get("GATEHOUSE_VERSION", "").strip()),
        role_cache_seconds=min(float(env.get("ROLE_CACHE_SECONDS", "30")), 30.0),
        audit_retention_days=int(env.get("AUDIT_RETENTION_DAYS", "400")),
        sig_bucket=env.get("SIG_BUCKET", "gatehouse-signatures"),
        transfer_func=env.get("TRANSFER_FUNC", ""),
        transfer_dest=env.get("TRANSFER_DEST", "").rstrip("/"),
        transfer_timeout_seconds=float(env.get("TRANSFER_TIMEOUT_SECONDS", "120")),
        transfer_attempts=max(1, int(env.get("TRANSFER_ATTEMPTS", "4"))),
        transfer_topic=env.get("TRANSFER_TOPIC", "gatehouse-transfer-parts"),
        transfer_parallel_parts=int(env.get("TRANSFER_PARALLEL_PARTS", "8")),
        sig_cache_mb=max(0, int(env.get("SIG_CACHE_MB", "64"))),
        purge_topic=env.get("PURGE_TOPIC", "gatehouse-dataset-purges"),
        neuroglancer_url=env.get("NEUROGLANCER_URL", "https://neuroglancer-demo.appspot.com").rstrip("/"),
        expose=_patterns("EXPOSE"),
        extra_roles=_csv("EXTRA_ROLES"),
        twin_memory_mb=int(env.get("TWIN_MEMORY_MB", "512")),
        twin_call_retention_days=int(env.get("TWIN_CALL_RETENTION_DAYS", "30")),
        backend_deadline_seconds=float(env.get("BACKEND_DEADLINE_SECONDS", "30")),
        twin_jobs_topic=env.get("TWIN_JOBS_TOPIC", "gatehouse-twin-jobs"),
        twin_results_bucket=env.get("TWIN_RESULTS_BUCKET", "gatehouse-twin-results"),
        twin_max_result_mb=int(env.get("TWIN_MAX_RESULT_MB", "16")),
        twin_calls_per_caller=int(env.get("TWIN_CALLS_PER_CALLER", "2")),
        twin_default_rate_limit=_rate("TWIN_DEFAULT_RATE_LIMIT", "600/60"),
        clio_token_signer=env.get("CLIO_TOKEN_SIGNER", "").strip(),
        clio_token_ttl=int(env.get("CLIO_TOKEN_TTL", str(21 * 86400))),
        clio_token_max_chain=int(env.get("CLIO_TOKEN_MAX_CHAIN", str(90 * 86400))),
        flyem_secret=env.get("FLYEM_SECRET", ""),
        accept_legacy_flyem_tokens=env.get("ACCEPT_LEGACY_FLYEM_TOKENS", "").lower() in ("1", "true", "yes"),
        oauth_client_id=oauth_client_id,
        oauth_client_secret=env.get("OAUTH_CLIENT_SECRET", "").strip(),
        oauth_issuer=env.get("OAUTH_ISSUER", "").strip().rstrip("/") or GOOGLE_ISSUER,
        dvid_timeout_seconds=float(env.get("DVID_TIMEOUT_SECONDS", "30")),
        neuprint_token=env.get("NEUPRINT_TOKEN", "").strip(),
        neuprint_timeout_seconds=float(env.get("NEUPRINT_TIMEOUT_SECONDS", "60")),
    )
    if s.clio_token_ttl < CLIO_TOKEN_MIN_SECONDS or s.clio_token_max_chain < s.clio_token_ttl:
        raise ConfigError(
            f"CLIO_TOKEN_TTL must be at least {CLIO_TOKEN_MIN_SECONDS} s (clio's clients refetch a "
            "token with less left) and CLIO_TOKEN_MAX_CHAIN at least CLIO_TOKEN_TTL"
        )
    if s.accept_legacy_flyem_tokens and not s.flyem_secret:
        raise ConfigError("ACCEPT_LEGACY_FLYEM_TOKENS needs FLYEM_SECRET (clio-store signed them with it)")
    if not 1 <= s.transfer_parallel_parts <= 8:
        raise ConfigError("TRANSFER_PARALLEL_PARTS must be 1-8 (a job has eight parts)")
    if not 0 < s.dvid_timeout_seconds <= 240:
        raise ConfigError("DVID_TIMEOUT_SECONDS must be more than 0 and at most 240")
    if s.twin_calls_per_caller < 1:
        raise ConfigError("TWIN_CALLS_PER_CALLER must be at least 1")
    if not 0 < s.backend_deadline_seconds <= 240:
        # Under the function's 300 s timeout, with time left to answer 503 before it is killed.
        raise ConfigError("BACKEND_DEADLINE_SECONDS must be more than 0 and at most 240")
    if not 0 < s.neuprint_timeout_seconds <= 240:
        # Under the function's 300 s timeout, with time left to answer 503 before it is killed.
        raise ConfigError("NEUPRINT_TIMEOUT_SECONDS must be more than 0 and at most 240")
    if s.dev_mode and not s.on_emulators:
        raise ConfigError(
            "GATEHOUSE_DEV_MODE needs FIRESTORE_EMULATOR_HOST and STORAGE_EMULATOR_HOST: "
            "dev tokens are never accepted against real services"
        )
    if s.dev_mode and env.get("K_SERVICE"):
        raise ConfigError("GATEHOUSE_DEV_MODE is refused in a Cloud Functions / Cloud Run deployment")
    if s.dev_mode and not s.dev_key_file:
        raise ConfigError("GATEHOUSE_DEV_MODE needs GATEHOUSE_DEV_KEY_FILE (the dev issuer's key)")
    if s.google_certs_url != GOOGLE_CERTS_URL and not s.on_emulators:
        raise ConfigError("GOOGLE_CERTS_URL may only be changed for tests against emulators")
    if s.oauth_issuer != GOOGLE_ISSUER and not s.on_emulators:
        # Gatehouse verifies Google's ID tokens only: another issuer is a test's stand-in.
        raise ConfigError("OAUTH_ISSUER may only be changed for tests against emulators")
    if s.oauth_client_secret and not s.oauth_client_id:
        raise ConfigError("OAUTH_CLIENT_SECRET needs OAUTH_CLIENT_ID")
    return s


@functools.cache
def settings() -> Settings:
    return load()
