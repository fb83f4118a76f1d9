"""clio's /v2/atlas routes: neuroglancer's atlas layer and the clio website's Atlas page, their
requests replayed as they send them and the fields they read checked on the answers."""

import json

import pytest

from tests.utils import assert_error

DS = "mb20"
ALICE, BOB, CURATOR = "alice@example.com", "bob@example.com", "curator@example.com"
AT = "x=50&y=30&z=50"


@pytest.fixture
def world(api):
    api.add_dataset(DS)
    api.add_dataset("manc")
    api.add_user(ALICE, datasets={DS: ["clio_general"], "manc": ["clio_general"]})
    api.add_user(BOB, datasets={DS: ["clio_general"]})
    api.add_user(CURATOR, datasets={DS: ["clio_write"]})


def _replay(api, method, path, *, user=None, body=None, content_type="application/json"):
    data = None if body is None else json.dumps(body)
    headers = {"Content-Type": content_type} if body is not None and content_type else {}
    return api.call(method, path, user=user, data=data, headers=headers)


def _neuroglancer_atlas_encoding(user: str, title: str, verified: bool | None = None) -> dict:
    """V2AtlasAnnotationRequestHelper.encode of a point at 50, 30, 50."""
    body = {
        "tags": [],
        "description": "an odd cell",
        "user": user,
        "title": title,
        "prop": {"timestamp": "1700000000000", "user": user, "title": title},
        "kind": "point",
        "pos": [50, 30, 50],
    }
    if verified is not None:
        body["verified"] = verified
    return body


def test_neuroglancer_atlas_layer(api, world):
    """Anonymous first (401, then the token), the encoder's body at `?x=&y=&z=`, the listing
    decoded as neuroglancer does (each value with key "x_y_z"), delete any 2xx, repeated too."""
    assert api.get(f"/v2/atlas/{DS}").status_code == 401
    assert api.get(f"/v2/atlas/{DS}", user=ALICE).get_json() == {}

    written = _replay(
        api, "POST", f"/v2/atlas/{DS}?{AT}", user=ALICE, body=_neuroglancer_atlas_encoding(ALICE, "odd")
    )
    assert written.status_code == 200 and isinstance(written.get_json(), dict)  # `.json()`: any object

    listing = api.get(f"/v2/atlas/{DS}", user=ALICE).get_json()
    assert list(listing) == ["50_30_50"]
    entry = listing["50_30_50"]
    assert entry["kind"] == "point" and entry["pos"] == [50, 30, 50]  # the layer reads these
    assert (entry["title"], entry["description"], entry["user"], entry["verified"]) == (
        "odd",
        "an odd cell",
        ALICE,
        False,
    )
    assert entry["locationkey"] == "50_30_50" and isinstance(entry["timestamp"], float)

    # Re-sent as decoded (with `verified` unchanged): the caller's own update, no verify rights needed
    again = _replay(
        api,
        "POST",
        f"/v2/atlas/{DS}?{AT}",
        user=ALICE,
        body=_neuroglancer_atlas_encoding(ALICE, "odder", False),
    )
    assert again.status_code == 200 and again.get_json()["title"] == "odder"

    for _ in range(2):
        deleted = api.delete(f"/v2/atlas/{DS}?{AT}", user=ALICE)
        assert deleted.status_code == 200 and deleted.get_json() is None
    assert api.get(f"/v2/atlas/{DS}", user=ALICE).get_json() == {}


def test_website_atlas_verify(api, world):
    """The website's Atlas page: GET /v2/atlas/all (sorted by numeric `timestamp`, matched on
    locationkey + dataset + user), then handleVerified re-POSTs the owner's entry with `verified`
    toggled at its `location`: the owner's entry is verified, the curator gets none."""
    _replay(api, "POST", f"/v2/atlas/{DS}?{AT}", user=ALICE, body=_neuroglancer_atlas_encoding(ALICE, "odd"))
    (entry,) = api.get("/v2/atlas/all", user=CURATOR).get_json()
    assert isinstance(entry["timestamp"], float) and entry["location"] == [50, 30, 50]
    assert (entry["locationkey"], entry["dataset"], entry["user"], entry["verified"]) == (
        "50_30_50",
        DS,
        ALICE,
        False,
    )

    x, y, z = entry["location"]
    toggled = {**entry, "verified": not entry["verified"]}
    r = _replay(api, "POST", f"/v2/atlas/{DS}?x={x}&y={y}&z={z}", user=CURATOR, body=toggled)
    assert r.status_code == 200, r.get_data(as_text=True)
    data = r.get_json()
    assert (data["locationkey"], data["dataset"], data["user"], data["verified"]) == (
        "50_30_50",
        DS,
        ALICE,
        True,
    )
    assert data["verified_by"] == CURATOR and isinstance(data["verified_at"], float)

    assert api.get(f"/v2/atlas/{DS}", user=CURATOR).get_json() == {}  # no entry of the curator's
    mine = api.get(f"/v2/atlas/{DS}", user=ALICE).get_json()["50_30_50"]
    assert mine["verified"] is True and mine["title"] == "odd" and "locationkey" in mine
    from common.storage import store

    stored = [s.to_dict() for s in store.collection("atlas").stream()]
    assert len(stored) == 1 and "locationkey" not in stored[0]  # clio's field is not stored as payload

    unverify = {**data, "verified": False}
    assert (
        _replay(api, "POST", f"/v2/atlas/{DS}?x={x}&y={y}&z={z}", user=CURATOR, body=unverify).get_json()[
            "verified"
        ]
        is False
    )


def test_verify_needs_write_others_and_an_existing_entry(api, world):
    _replay(api, "POST", f"/v2/atlas/{DS}?{AT}", user=ALICE, body=_neuroglancer_atlas_encoding(ALICE, "odd"))
    (entry,) = api.get("/v2/atlas/all", user=CURATOR).get_json()
    refused = _replay(api, "POST", f"/v2/atlas/{DS}?{AT}", user=BOB, body={**entry, "verified": True})
    body = assert_error(refused, 403, "forbidden")
    assert body["detail"] == body["message"]  # the website shows json.detail
    own = _replay(api, "POST", f"/v2/atlas/{DS}?{AT}", user=ALICE, body={**entry, "verified": True})
    assert_error(own, 403, "forbidden")  # verifying one's own entry needs write_others too
    missing = _replay(
        api, "POST", f"/v2/atlas/{DS}?x=1&y=2&z=3", user=CURATOR, body={**entry, "verified": True}
    )
    assert_error(missing, 404, "not_found")  # never creates an entry in another user's name
    assert api.get(f"/v2/atlas/{DS}", user=ALICE).get_json()["50_30_50"]["verified"] is False


def test_atlas_all_is_an_array_with_numeric_timestamps(api, world):
    for ds, x in ((DS, 1), ("manc", 2)):
        assert (
            api.post(
                f"/v2/atlas/{ds}?x={x}&y=0&z=0&app=clio", user=ALICE, json={"title": "t", "user": ALICE}
            ).status_code
            == 200
        )
    entries = api.get("/v2/atlas/all", user=ALICE).get_json()
    assert sorted((e["dataset"], e["locationkey"]) for e in entries) == [("manc", "2_0_0"), (DS, "1_0_0")]
    assert all(isinstance(e["timestamp"], float) for e in entries)
    assert api.get("/atlas/all", user=ALICE).get_json()[0]["timestamp"].endswith("Z")  # Gatehouse's: ISO


def test_position_query_stays_strict(api, world):
    """x, y, z are integers on clio's routes too (FastAPI refused `x=1.5` as well)."""
    assert_error(
        api.post(f"/v2/atlas/{DS}?x=1.5&y=2&z=3", user=ALICE, json={"title": "t"}), 400, "bad_request"
    )
