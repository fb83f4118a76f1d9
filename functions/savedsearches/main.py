"""savedsearches: each user's saved searches in a dataset, one per location (SPEC §3), also at
clio's `/v2/savedsearches/{ds}` in clio's shapes (the clio website's image search)."""

from __future__ import annotations

from typing import Any

from common.catalog.locations import LocationQuery, LocationStore, location_routes
from common.identity import auth, authz
from common.models import Payload
from common.storage import collections
from common.web import clio
from common.web.http import App

app = App(
    "savedsearches",
    "Saved searches: one free-form object per user, dataset and location.",
    authenticate=auth.authenticate,
)
SEARCHES = LocationStore(collections.SAVED_SEARCHES, collections.SEARCHES, "saved_search")
app.include_router(location_routes(SEARCHES, "saved search"), prefix="/savedsearches")


# -- clio's /v2/savedsearches: the same operations, answered in clio's shapes ------------------


def clio_view(record: dict[str, Any], dataset: str) -> dict[str, Any]:
    """A saved search as clio answered it: the payload with `timestamp` in epoch seconds, its
    `dataset`, the owner as `email`, and `id` (the location key: one search per location)."""
    view = clio.with_epochs(SEARCHES.view(record), "timestamp")
    key = clio.locationkey(record)
    return {**view, "email": view.pop("user"), "dataset": dataset, "locationkey": key, "id": key}


@app.get(
    "/v2/savedsearches/<name>",
    check=authz.on_dataset(authz.READ),
    response=dict[str, dict[str, Any]],
    operation_id="clio_list_saved_search",
)
def clio_list(req, name, dataset):
    """The caller's saved searches in the dataset, by "x_y_z", in clio's shape."""
    return {clio.locationkey(r): clio_view(r, name) for r in SEARCHES.records(req, dataset)}


@app.post(
    "/v2/savedsearches/<name>",
    check=authz.on_dataset(authz.WRITE_OWN),
    body=Payload,
    query=LocationQuery,
    operation_id="clio_put_saved_search",
)
def clio_put(req, name, dataset) -> None:
    """Save the caller's search at x, y, z (replacing the one there); answers null."""
    SEARCHES.put(req, dataset)


@app.delete(
    "/v2/savedsearches/<name>",
    check=authz.on_dataset(authz.WRITE_OWN),
    query=LocationQuery,
    operation_id="clio_delete_saved_search",
)
def clio_delete(req, name, dataset) -> None:
    """Delete the caller's search at x, y, z; answers null, also when there is none."""
    with clio.absent_ok():
        SEARCHES.delete(req, dataset)


def handle(request):
    return app(request)
