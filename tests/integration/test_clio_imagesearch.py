"""The clio website's image search against clio's /v2 routes, replayed as it sends them
(src/ImageSearch: MatchListLoader, SearchList, SearchCard, TransferResults): similar points,
saving, listing and deleting a search, and a transfer; each answer read as the website reads it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from common.catalog import sigindex
from tests.conftest import BUCKETS
from tools import build_signatures

DS = "mb20"
USER = "searcher@example.com"
TEXT = {"Content-Type": "text/plain;charset=UTF-8"}  # fetch() with a string body and no Content-Type
AT = "x=1000&y=2000&z=3000"


@pytest.fixture
def world(api):
    api.add_dataset(DS, location="gs://em-data/mb20", transfer=["denoise"])
    api.add_user(USER, datasets={DS: ["clio_general"]})


def test_similar_points_read_as_result_matches(api, world):
    """MatchListLoader's useQuery: GET /v2/signatures/likelocation/{ds} at the floor'd point."""
    records = np.array([(1000, 2000, 3000, 42), (5000, 5000, 5000, 43)], dtype=sigindex.record_dtype())
    build_signatures.build(BUCKETS[1], DS, records, progress=False)
    r = api.get(f"/v2/signatures/likelocation/{DS}?{AT}", user=USER)
    assert r.status_code == 200, r.get_data(as_text=True)
    result = r.get_json()
    assert result["matches"] == [{"point": [5000, 5000, 5000], "dist": 1, "score": 0.875}]


def test_a_search_is_saved_listed_and_deleted(api, world):
    before = time.time()
    # MatchListLoader's useMutation: the note as a text/plain body, null back
    note = json.dumps({"note": "saved from clio image search"})
    r = api.post(f"/v2/savedsearches/{DS}?{AT}", user=USER, data=note, headers=TEXT)
    assert r.status_code == 200 and r.get_json() is None, r.get_data(as_text=True)
    # SearchList: Object.values(data); SearchCard: location, new Date(timestamp * 1000), dataset, note
    r = api.get(f"/v2/savedsearches/{DS}", user=USER)
    assert r.status_code == 200, r.get_data(as_text=True)
    (search,) = r.get_json().values()
    assert search["location"] == [1000, 2000, 3000]
    assert before - 1 <= search["timestamp"] <= time.time() + 1
    assert search["dataset"] == DS and search["note"] == "saved from clio image search"
    assert search["email"] == USER and search["locationkey"] == "1000_2000_3000" and search["id"]
    assert r.get_json() == {"1000_2000_3000": search}
    # SearchCard's useMutation: DELETE at the search's location; again (nothing there) is 200 too
    for _ in range(2):
        r = api.delete(f"/v2/savedsearches/{DS}?{AT}", user=USER)
        assert r.status_code == 200 and r.get_json() is None, r.get_data(as_text=True)
    assert api.get(f"/v2/savedsearches/{DS}", user=USER).get_json() == {}


def test_the_gatehouse_route_sees_the_same_search(api, world):
    """One store, two shapes: a search saved through clio's route is Gatehouse's saved search."""
    api.post(f"/v2/savedsearches/{DS}?{AT}", user=USER, json={"note": "n"})
    mine = api.get(f"/savedsearches/{DS}", user=USER).get_json()
    assert mine["1000_2000_3000"]["note"] == "n" and mine["1000_2000_3000"]["user"] == USER


@pytest.mark.parametrize("path", ["/v2/transfer", "/v2/transfer/"])
def test_a_transfer_answers_its_addr(api, world, path):
    """TransferResults: the body as text/plain; `'addr' in result`."""
    body = {"dataset": DS, "model_name": "denoise", "center": [1000, 2000, 3000]}
    r = api.post(path, user=USER, data=json.dumps(body), headers=TEXT)
    assert r.status_code == 200, r.get_data(as_text=True)
    result = r.get_json()
    assert "addr" in result and result["addr"].startswith("https://")


def test_a_transfer_body_is_read_as_clio_read_it(api, world):
    """Unknown fields dropped, a fractional centre truncated, unknown query parameters ignored."""
    body = {"dataset": DS, "model_name": "denoise", "center": [1000.7, "2000", 3000], "extra": 1}
    r = api.post("/v2/transfer?app=clio", user=USER, json=body)
    assert r.status_code == 200, r.get_data(as_text=True)
    r = api.post("/v2/transfer", user=USER, json={"dataset": DS, "model_name": "nope", "center": [1, 2, 3]})
    assert r.status_code in (400, 422) and r.get_json()["detail"] == r.get_json()["message"]
