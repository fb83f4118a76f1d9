"""Per-user documents of a dataset keyed by a location (`?x=&y=&z=` -> "x_y_z").

Annotations v1 and saved searches are the same thing for two purposes: one free-form object
per (user, dataset, location), replaced on POST, listed per user. Each dataset's documents live
in `<root>/<dataset's generation>/<collection>/<user>|<key>`, with the `user` field indexed for listing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from pydantic import Field

from common import audit, jsonio
from common.identity import authz
from common.models import Coordinate, Payload, Query, check_document_size
from common.storage import store
from common.web.http import Req, Router, streamed

_VOXEL = "integer voxel coordinate in [-2^31, 2^31)"


class LocationQuery(Query):
    """A point: required integers in [-2^31, 2^31) (400 otherwise)."""

    x: Coordinate = Field(description=_VOXEL)
    y: Coordinate = Field(description=_VOXEL)
    z: Coordinate = Field(description=_VOXEL)


def location(req: Req) -> tuple[int, int, int]:
    """The point of a route declared with `query=LocationQuery`."""
    return req.query.x, req.query.y, req.query.z


def location_key(point) -> str:
    return "_".join(str(c) for c in point)


def user_doc_id(user: str, key: str) -> str:
    """A document id per (user, key): the email quoted, so `|` always separates the two."""
    return f"{quote(user, safe='@+')}|{key}"


class LocationStore:
    """One free-form object per (user, dataset, location), e.g. v1 annotations."""

    def __init__(self, root: str, collection: str, target_type: str):
        self.root, self.collection, self.target_type = root, collection, target_type

    def _coll(self, dataset: authz.Dataset):
        return store.collection(self.root).document(dataset.data_key).collection(self.collection)

    @staticmethod
    def view(record: dict[str, Any]) -> dict[str, Any]:
        """The stored payload with the server's fields on top (they win over the payload's)."""
        return {
            **record.get("payload", {}),
            "location": record["location"],
            "locationkey": record["locationkey"],
            "user": record["user"],
            "timestamp": record["timestamp"],
        }

    def put(self, req: Req, dataset: authz.Dataset) -> dict[str, str]:
        point = location(req)
        key = location_key(point)
        record = {
            "user": req.caller.email,
            "location": list(point),
            "locationkey": key,
            "timestamp": store.now(),
            "payload": req.body,
        }
        check_document_size(record, f"the {self.target_type.replace('_', ' ')}")
        batch = store.db().batch()
        batch.set(self._coll(dataset).document(user_doc_id(req.caller.email, key)), record)
        audit.record(batch, req, f"{self.target_type}_put", self.target_type, key, dataset=dataset)
        batch.commit()
        return {"key": key}

    def records(self, req: Req, dataset: authz.Dataset) -> Iterator[dict[str, Any]]:
        """The caller's stored records in the dataset, as stored."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self._coll(dataset).where(filter=FieldFilter("user", "==", req.caller.email))
        return (s.to_dict() for s in store.stream(query))

    def list(self, req: Req, dataset: authz.Dataset):
        return streamed(
            jsonio.stream_object((r["locationkey"], self.view(r)) for r in self.records(req, dataset))
        )

    def delete(self, req: Req, dataset: authz.Dataset) -> dict[str, str]:
        key = location_key(location(req))
        ref = self._coll(dataset).document(user_doc_id(req.caller.email, key))
        audit.delete_existing(
            req,
            ref,
            missing=f"you have no {self.target_type.replace('_', ' ')} at {key}",
            action=f"{self.target_type}_delete",
            target_type=self.target_type,
            target_id=key,
            dataset=dataset,
        )
        return {"deleted": key}


def location_routes(store: LocationStore, noun: str) -> Router:
    """The store's three routes at `/<name>` (a dataset), for a function to include at its
    prefix: `app.include_router(location_routes(store, "annotation"), prefix="/annotations")`."""
    router = Router()
    kind = store.target_type

    @router.post(
        "/<name>",
        check=authz.on_dataset(authz.WRITE_OWN),
        body=Payload,
        query=LocationQuery,
        summary=f"Store the caller's {noun} at x, y, z, replacing the one there.",
        operation_id=f"put_{kind}",
    )
    def put_at_location(req: Req, name: str, dataset: authz.Dataset) -> dict[str, str]:
        return store.put(req, dataset)

    @router.get(
        "/<name>",
        check=authz.on_dataset(authz.READ),
        summary=f'The caller\'s {noun}s in the dataset, by "x_y_z".',
        operation_id=f"list_{kind}",
    )
    def list_at_locations(req: Req, name: str, dataset: authz.Dataset):
        return store.list(req, dataset)

    @router.delete(
        "/<name>",
        check=authz.on_dataset(authz.WRITE_OWN),
        query=LocationQuery,
        summary=f"Delete the caller's {noun} at x, y, z (404 when there is none).",
        operation_id=f"delete_{kind}",
    )
    def delete_at_location(req: Req, name: str, dataset: authz.Dataset) -> dict[str, str]:
        return store.delete(req, dataset)

    return router
