"""Deadlines on every Firestore and Cloud Storage call (the budget is common.storage.deadlines's).

The clients' own defaults outlast the function: Firestore retries an unreachable server for
60 s (300 s for queries), Cloud Storage for 120 s. Here a gRPC interceptor (Firestore) and a
requests session (Cloud Storage) give each call the time left of the request's budget, and
refuse to start one when none is left, with `OutOfTime`: a GoogleAPIError that neither
client's retry predicate retries, so the request answers 503 at once (common.storage.failures.answer).

Imported only where a client is built (it loads grpc and google.api_core).
"""

from __future__ import annotations

import collections
from typing import Any

import grpc
from google.api_core.exceptions import GoogleAPIError
from google.auth.transport.requests import AuthorizedSession

from common.storage import deadlines

# A channel whose server went away retries the connection with a backoff growing to 120 s by
# default: the instance would keep failing long after the backend is back. 2 s at most.
RECONNECT_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 250), ("grpc.max_reconnect_backoff_ms", 2000)]


class OutOfTime(GoogleAPIError):
    """The request's backend budget is spent: no further call starts."""


def call_timeout(given: float | None) -> float:
    """The deadline of one call: what it asked for, cut to what the request has left."""
    left = deadlines.remaining()
    if left <= 0:
        raise OutOfTime("the request's time for backend calls is spent")
    return left if given is None else min(given, left)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class Deadlines(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Every unary and server-streaming Firestore call gets `call_timeout`."""

    @staticmethod
    def _bounded(details: Any) -> _CallDetails:
        return _CallDetails(
            details.method,
            call_timeout(details.timeout),
            details.metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._bounded(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._bounded(client_call_details), request)


def firestore_client(project: str):
    """A firestore.Client whose calls go through `Deadlines`, on a channel that reconnects
    within 2 s of the server coming back. The client builds its channel lazily and offers no
    hook for either, so the channel is made here as it would make it (base_client.py,
    google-cloud-firestore pinned in requirements.txt)."""
    from google.cloud import firestore
    from google.cloud.firestore_v1 import base_client
    from google.cloud.firestore_v1.services.firestore import client as gapic
    from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport

    client = firestore.Client(project=project)
    options = [*base_client._DEFAULT_CHANNEL_OPTIONS, *RECONNECT_OPTIONS]
    if client._emulator_host is not None:
        channel = grpc.insecure_channel(
            client._emulator_host, options=[("Authorization", "Bearer owner"), *options]
        )
    else:
        channel = FirestoreGrpcTransport.create_channel(
            client._target, credentials=client._credentials, options=options
        )
    client._transport = FirestoreGrpcTransport(
        host=client._target, channel=grpc.intercept_channel(channel, Deadlines())
    )
    client._firestore_api_internal = gapic.FirestoreClient(
        transport=client._transport, client_options=client._client_options
    )
    gapic._client_info = client._client_info  # type: ignore[attr-defined]  # as the client does
    return client


class BoundedSession(AuthorizedSession):
    """The Cloud Storage client's HTTP session: each request's timeout (connect and read) cut
    to what the request has left; none started once it is spent."""

    def request(self, method, url, data=None, headers=None, max_allowed_time=None, timeout=None, **kwargs):  # type: ignore[override]  # AuthorizedSession.request's own signature
        if isinstance(timeout, tuple):
            timeout = tuple(call_timeout(t) for t in timeout)
        else:
            timeout = call_timeout(timeout)
        return super().request(
            method,
            url,
            data=data,
            headers=headers,
            max_allowed_time=max_allowed_time,
            timeout=timeout,
            **kwargs,
        )
