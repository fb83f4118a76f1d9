"""Where clio's per-user key-value store and pull requests live, for the function that serves
them (kv) and the one that deletes a user with their data (users).

Laid out as clio-store laid them out, so a deployment's data imports as it is:
`clio_kv/{email}/{scope}/{key}` and `clio_pull_requests/{email}/{scope}/{key}`, each document
the caller's JSON object plus `_timestamp` (float seconds). The `{email}` documents themselves
are never written: they only hold the scopes (subcollections).
"""

from __future__ import annotations

from common.storage import store

KV = "clio_kv"
PULL_REQUESTS = "clio_pull_requests"
TIMESTAMP = "_timestamp"


def user_root(root: str, email: str):
    """The document under which `email`'s scopes of `root` (KV or PULL_REQUESTS) are kept."""
    return store.collection(root).document(email)


def delete_user(email: str) -> None:
    """Delete every key-value document and pull request of `email`'s."""
    for root in (KV, PULL_REQUESTS):
        store.db().recursive_delete(user_root(root, email))
