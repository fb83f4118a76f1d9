"""savedsearches: each user's saved searches in a dataset, one per location (SPEC §3)."""

from __future__ import annotations

from common import auth
from common.http import App
from common.locations import LocationStore

app = App(
    "savedsearches",
    "Saved searches: one free-form object per user, dataset and location.",
    authenticate=auth.authenticate,
)
LocationStore("savedsearches", "searches", "saved_search").mount(app, "/savedsearches/<name>", "saved search")


def handle(request):
    return app(request)
