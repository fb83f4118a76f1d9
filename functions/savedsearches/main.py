"""savedsearches: each user's saved searches in a dataset, one per location (SPEC §3)."""
from __future__ import annotations

from common import authz
from common.http import App
from common.locations import LOCATION_QUERY, LocationStore
from common.models import Payload

app = App("savedsearches", "Saved searches: one free-form object per user, dataset and location.")
SEARCHES = LocationStore("savedsearches", "searches", "saved_search")


@app.post("/savedsearches/<name>", role=authz.on_dataset("write_own"), body=Payload, query=LOCATION_QUERY)
def save_search(req, name):
    """Save (or replace) the caller's search at x, y, z."""
    return SEARCHES.put(req, name)


@app.get("/savedsearches/<name>", role=authz.on_dataset("read"))
def list_searches(req, name):
    """The caller's saved searches in the dataset, by "x_y_z"."""
    return SEARCHES.list(req, name)


@app.delete("/savedsearches/<name>", role=authz.on_dataset("write_own"), query=LOCATION_QUERY)
def delete_search(req, name):
    """Delete the caller's search at x, y, z (404 when there is none)."""
    return SEARCHES.delete(req, name)


def handle(request):
    return app(request)
