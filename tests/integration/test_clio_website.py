"""The clio website's day, end to end against clio's /v2 routes with one session's token, as the
website sends each call: sign in (its Google credential exchanged at /v2/server/token, then only
that token), the datasets and roles it starts from, an annotation from its neuroglancer layer,
the Atlas page's verify, the image search (similar points, a saved search, a transfer) and the
merge tool's key-value data and pull request. Each part's variations are in the other
tests/integration/test_clio_*.py files; this is the whole journey of one session."""

from __future__ import annotations

import base64
import json

import numpy as np

from common.catalog import sigindex
from tests.conftest import BUCKETS
from tools import build_signatures

DS = "manc:v1.0"
ALICE = "alice@example.com"  # annotates, owns an atlas entry
CURATOR = "curator@example.com"  # verifies it
AT = "x=1000&y=2000&z=3000"
TEXT = {"Content-Type": "text/plain;charset=UTF-8"}  # fetch() with a string body


def _sign_in(api, setting, email: str) -> str:
    """GoogleSignIn -> exchangeForFlyEMToken: the Google credential only for the exchange; the
    website keeps the token if `iss` is clio's (loginGoogleUser) and reads `email` from it."""
    setting("ALLOWED_AUDIENCES", "gatehouse-test-audience")
    r = api.post("/v2/server/token", token=api.google_token(email))
    assert r.status_code == 200, r.get_data(as_text=True)
    token = r.get_json()
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["iss"] == "flyem-clio-store" and claims["email"] == email
    return token


def test_a_website_session_from_sign_in_to_the_merge_tool(api, setting):
    api.add_dataset(DS, location="gs://em-data/manc", transfer=["denoise"], tag="v1.0", uuid="abc")
    api.add_user(ALICE, datasets={DS: ["clio_general"]}, groups=["UK Drosophila Connectomics"])
    api.add_user(CURATOR, datasets={DS: ["clio_write"]})
    records = np.array([(1000, 2000, 3000, 42), (5000, 5000, 5000, 43)], dtype=sigindex.record_dtype())
    build_signatures.build(BUCKETS[1], DS, records, progress=False)
    token = _sign_in(api, setting, ALICE)

    # App.js: the datasets (templates filled in), then setUserRoles.
    datasets = api.get("/v2/datasets", token=token).get_json()
    assert datasets[DS]["tag"] == "v1.0"
    roles = api.get("/v2/roles", token=token).get_json()
    assert roles["email"] == ALICE and "clio_general" in roles["datasets"][DS]
    assert roles["groups"] == ["UK Drosophila Connectomics"]

    # Annotate: neuroglancer's clio layer adds a point, then lists the layer.
    point = {
        "tags": [],
        "user": ALICE,
        "prop": {"timestamp": "1700000000000"},
        "kind": "point",
        "pos": [1, 2, 3],
    }
    r = api.post(f"/v2/annotations/{DS}", token=token, json=point)
    assert r.status_code == 200 and r.get_json()["key"], r.get_data(as_text=True)
    listed = api.get(f"/v2/annotations/{DS}?groups=UK%20Drosophila%20Connectomics", token=token).get_json()
    assert [(a["kind"], a["pos"], a["user"]) for a in listed] == [("point", [1, 2, 3], ALICE)]

    # Atlas: ALICE's own entry from neuroglancer's atlas layer; the curator verifies it on the
    # Atlas page by re-POSTing the entry with `verified` toggled and `user` = its owner.
    entry = {
        "tags": [],
        "description": "soma",
        "user": ALICE,
        "title": "a soma",
        "kind": "point",
        "pos": [7, 8, 9],
    }
    assert api.post(f"/v2/atlas/{DS}?x=7&y=8&z=9", token=token, json=entry).status_code == 200
    curator = _sign_in(api, setting, CURATOR)
    (shown,) = [e for e in api.get("/v2/atlas/all", token=curator).get_json() if e["user"] == ALICE]
    assert shown["locationkey"] == "7_8_9" and shown["verified"] is False
    x, y, z = shown["location"]
    r = api.post(f"/v2/atlas/{DS}?x={x}&y={y}&z={z}", token=curator, json={**shown, "verified": True})
    assert r.status_code == 200, r.get_data(as_text=True)
    data = r.get_json()
    assert (data["locationkey"], data["dataset"], data["user"], data["verified"]) == (
        "7_8_9",
        DS,
        ALICE,
        True,
    )
    assert [e["user"] for e in api.get("/v2/atlas/all", token=curator).get_json()] == [ALICE]

    # Image search: similar points, a saved search (text/plain), then a transfer.
    matches = api.get(f"/v2/signatures/likelocation/{DS}?{AT}", token=token).get_json()["matches"]
    assert matches[0]["point"] == [5000, 5000, 5000]
    note = json.dumps({"note": "saved from clio image search"})
    assert api.post(f"/v2/savedsearches/{DS}?{AT}", token=token, data=note, headers=TEXT).get_json() is None
    (search,) = api.get(f"/v2/savedsearches/{DS}", token=token).get_json().values()
    assert search["dataset"] == DS and search["email"] == ALICE and isinstance(search["timestamp"], float)
    body = json.dumps({"dataset": DS, "model_name": "denoise", "center": [1000, 2000, 3000]})
    assert "addr" in api.post("/v2/transfer", token=token, data=body, headers=TEXT).get_json()

    # The merge tool (MergeBackendCloud): nothing stored reads as empty (404), then store and pull.
    scope = f"merges-{DS}-v1.0"
    assert api.get(f"/v2/kv/{scope}/mainToOthers", token=token).status_code == 404
    r = api.post(f"/v2/kv/{scope}/mainToOthers", token=token, json={"1001": [1002, 1003]})
    assert r.status_code == 200 and r.get_json() is None
    assert api.get(f"/v2/kv/{scope}/mainToOthers", token=token).get_json() == {"1001": [1002, 1003]}
    r = api.post("/v2/pull-request", token=token, json={"pull": f"kv/{scope}/mainToOthers"})
    assert r.status_code == 200, r.get_data(as_text=True)
    pulls = api.get("/v2/pull-request?user_email=", token=token).get_json()
    assert pulls[ALICE][scope]["mainToOthers"]["1001"] == [1002, 1003]
