"""savedsearches: each user's saved searches in a dataset, one per location (SPEC §3)."""

from __future__ import annotations

from common.catalog.locations import LocationStore, location_routes
from common.identity import auth
from common.storage import collections
from common.web.http import App

app = App(
    "savedsearches",
    "Saved searches: one free-form object per user, dataset and location.",
    authenticate=auth.authenticate,
)
SEARCHES = LocationStore(collections.SAVED_SEARCHES, collections.SEARCHES, "saved_search")
app.include_router(location_routes(SEARCHES, "saved search"), prefix="/savedsearches")


def handle(request):
    return app(request)
