"""Cloud Storage: one anonymous-or-default client per instance, and V4 signed URLs."""

from __future__ import annotations

import datetime
import functools
from typing import Any

from common.config import settings


@functools.cache
def client():
    from google.cloud import storage  # type: ignore[attr-defined]

    from common.storage import clients  # lazy: loads grpc and google.auth, at first use

    if settings().storage_emulator:
        from google.auth.credentials import AnonymousCredentials

        credentials: Any = AnonymousCredentials()
    else:
        import google.auth

        credentials = google.auth.default(scopes=storage.Client.SCOPE)[0]
    # Every call with a deadline (common.storage.failures): the session cuts each one's timeout.
    return storage.Client(
        project=settings().project, credentials=credentials, _http=clients.BoundedSession(credentials)
    )


def bucket(name: str):
    return client().bucket(name)


@functools.cache
def _key_signer():
    from google.oauth2 import service_account

    return service_account.Credentials.from_service_account_file(settings().signer_key_file)


@functools.cache
def _default_credentials():
    import google.auth

    return google.auth.default()[0]


def signed_url(blob, *, minutes: int = 5, method: str = "GET", **response: str) -> str:
    """A V4 signed URL. With SIGNER_KEY_FILE the key signs locally; otherwise (in the cloud)
    the instance's service account signs through the IAM signBlob API. `response`:
    `response_disposition`, `response_type`, the headers Cloud Storage answers the URL with."""
    expiration = datetime.timedelta(minutes=minutes)
    if settings().signer_key_file:
        # Only the signing call gets these credentials: a client built with them would try
        # to reach Google's token endpoint.
        return blob.generate_signed_url(
            version="v4", expiration=expiration, method=method, credentials=_key_signer(), **response
        )
    import google.auth.transport.requests

    credentials = _default_credentials()
    if not credentials.valid:
        credentials.refresh(google.auth.transport.requests.Request())
    return blob.generate_signed_url(
        version="v4",
        expiration=expiration,
        method=method,
        service_account_email=credentials.service_account_email,
        access_token=credentials.token,
        **response,
    )
