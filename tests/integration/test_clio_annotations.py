"""clio's /v2/annotations routes: the requests clio's clients send, replayed as they send them
(paths, query strings, bodies, Content-Types), and the fields each client reads checked on the
answer. The clients' parsers are TypeScript (neuroglancer) and R (malevnc): what they read is
checked here the way they read it (`_neuroglancer_reads`)."""

import json

import pytest

from tests.utils import assert_error

DS = "mb20"
ALICE, BOB, CAROL, CURATOR = (
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "curator@example.com",
)
GROUP = "lab"


@pytest.fixture
def world(api):
    api.add_dataset(DS)
    api.add_user(ALICE, datasets={DS: ["clio_general"]}, groups=[GROUP])
    api.add_user(BOB, datasets={DS: ["clio_general"]}, groups=[GROUP])
    api.add_user(CAROL, datasets={DS: ["clio_general"]})
    api.add_user(CURATOR, datasets={DS: ["clio_write"]})


POS_LENGTH = {"point": 3, "lineseg": 6, "sphere": 6}


def _neuroglancer_reads(item: dict) -> dict:
    """What neuroglancer's clio source reads of a listed annotation (its V2 decoder): `key`,
    `kind`, integer `pos` of the kind's length, `prop` an object when present (null throws),
    and the optional strings."""
    assert isinstance(item["key"], str) and item["kind"] in POS_LENGTH
    assert len(item["pos"]) == POS_LENGTH[item["kind"]] and all(type(c) is int for c in item["pos"])
    if "prop" in item:
        assert isinstance(item["prop"], dict), item  # decodeAnnotationPropV2: verifyObject
    for name in ("title", "description", "user"):
        assert name not in item or isinstance(item[name], str), item
    return item


def _replay(api, method, path, *, user=None, body=None, content_type="application/json"):
    """One request as a client sends it: the body serialized by the client, its Content-Type."""
    data = None if body is None else json.dumps(body)
    headers = {"Content-Type": content_type} if body is not None and content_type else {}
    return api.call(method, path, user=user, data=data, headers=headers)


def test_neuroglancer_annotation_layer(api, world):
    """neuroglancer's clio annotation layer: an anonymous first request, 401, then with the token
    (its credentials provider retries on 401/403); its point encoder's body; the listing decoded;
    a delete, which must be a 2xx even when repeated."""
    listing = f"/v2/annotations/{DS}?groups={GROUP}"
    anonymous = api.get(listing)
    assert anonymous.status_code == 401 and anonymous.get_json()["detail"]
    assert api.get(listing, user=ALICE).get_json() == []

    encoded = {  # V2PointAnnotationRequestHelper.encode, after roundPos
        "tags": [],
        "description": "a soma",
        "user": ALICE,
        "verified": False,  # sent back on entries decoded with one: dropped, as clio did
        "title": "soma",
        "prop": {"timestamp": "1700000000000", "user": ALICE, "title": "soma", "comment": "c"},
        "kind": "point",
        "pos": [100, 200, 300],
    }
    written = _replay(api, "POST", f"/v2/annotations/{DS}", user=ALICE, body=encoded)
    assert written.status_code == 200 and written.get_json() == {"key": "Pt100_200_300"}  # response.key

    (item,) = api.get(listing, user=ALICE).get_json()
    _neuroglancer_reads(item)
    assert (item["key"], item["kind"], item["pos"], item["user"]) == (
        "Pt100_200_300",
        "point",
        [100, 200, 300],
        ALICE,
    )
    assert item["prop"] == encoded["prop"] and (item["title"], item["description"]) == ("soma", "a soma")
    assert "verified" not in item and isinstance(item["timestamp"], float)

    for _ in range(2):  # deleteAnnotation: any 2xx; the second finds nothing, as clio answered
        deleted = api.delete(f"/v2/annotations/{DS}/Pt100_200_300", user=ALICE)
        assert deleted.status_code == 200 and deleted.get_json() is None
    assert api.get(listing, user=ALICE).get_json() == []


def test_neuroglancer_line_and_sphere_encoders(api, world):
    """Line segments (two end points) and spheres (centre + radii) are 6 integers."""
    for kind, pos in (("lineseg", [1, 2, 3, 4, 5, 6]), ("sphere", [10, 10, 10, 2, 2, 2])):
        body = {"tags": [], "user": ALICE, "prop": {"timestamp": "1"}, "kind": kind, "pos": pos}
        assert _replay(api, "POST", f"/v2/annotations/{DS}", user=ALICE, body=body).status_code == 200
    items = api.get(f"/v2/annotations/{DS}", user=ALICE).get_json()
    assert sorted(i["key"] for i in map(_neuroglancer_reads, items)) == ["Ln1_2_3_4_5_6", "Sp10_10_10_2_2_2"]


def test_malevnc_soma_points(api, world):
    """malevnc's manc_annotate_soma -> manc_annotate_point: `replace=false&conditional=user`,
    `app=natverse` on every call, httr's JSON body; then manc_point_annotations reads `pos` and
    `prop$timestamp` of its group's annotations (a group name without spaces here: see below)."""
    body = {"kind": "point", "pos": [4, 5, 6], "user": ALICE, "tags": ["soma"], "description": "soma"}
    path = f"/v2/annotations/{DS}?replace=false&conditional=user&app=natverse"
    for _ in range(2):  # idempotent, as malevnc re-runs it
        r = _replay(api, "POST", path, user=ALICE, body=body)
        assert r.status_code == 200 and r.get_json() == {"key": "Pt4_5_6"}
    listed = api.get(f"/v2/annotations/{DS}?groups={GROUP}&app=natverse", user=BOB)
    assert listed.status_code == 200
    (item,) = listed.get_json()
    assert item["pos"] == [4, 5, 6] and item["tags"] == ["soma"]
    assert "prop" not in item  # malevnc writes none: left out, not null (neuroglancer skips a null)
    _neuroglancer_reads(item)


def test_malevnc_default_group_has_spaces(api, world):
    """malevnc's default group is "UK Drosophila Connectomics"."""
    api.add_user(CAROL, datasets={DS: ["clio_general"]}, groups=["UK Drosophila Connectomics"])
    r = api.get(f"/v2/annotations/{DS}?groups=UK%20Drosophila%20Connectomics&app=natverse", user=CAROL)
    assert r.status_code == 200  # needs clio names (R11)


def test_clio_py_group_annotations(api, world):
    """schlegelp/clio-py's fetch_group_annotations: the members' annotations and the caller's."""
    for email, x in ((ALICE, 1), (BOB, 2), (CAROL, 3)):
        body = {"kind": "point", "pos": [x, 0, 0], "user": email}
        assert (
            _replay(api, "POST", f"/v2/annotations/{DS}?app=clio-py", user=email, body=body).status_code
            == 200
        )
    r = api.get(f"/v2/annotations/{DS}?groups={GROUP}&app=clio-py", user=BOB)
    assert r.status_code == 200
    assert sorted((i["user"], i["key"]) for i in r.get_json()) == [(ALICE, "Pt1_0_0"), (BOB, "Pt2_0_0")]
    mine_too = api.get(f"/v2/annotations/{DS}?groups={GROUP}&app=clio-py", user=CURATOR)
    assert_error(mine_too, 403, "forbidden")  # not a member of the group (an admin may be)
    assert mine_too.get_json()["detail"] == mine_too.get_json()["message"]


def test_website_bulk_upload(api, world):
    """The website's AnnotationTable uploadAnnotations: a JSON array (clio wrote only the first)."""
    body = [{"kind": "point", "pos": [i, 1, 1], "prop": {"comment": str(i)}} for i in range(3)]
    r = _replay(api, "POST", f"/v2/annotations/{DS}", user=ALICE, body=body)
    assert r.status_code == 200 and r.get_json() == {"keys": ["Pt0_1_1", "Pt1_1_1", "Pt2_1_1"]}
    assert len(api.get(f"/v2/annotations/{DS}", user=ALICE).get_json()) == 3


def test_a_body_is_read_as_clio_read_it(api, world):
    """Unknown fields dropped and float positions truncated, as pydantic v1 did; the shape
    itself still checked (and the error carries `detail`)."""
    body = {"kind": "point", "pos": [1.7, -2.5, 3], "verified": True, "colour": "red"}
    assert api.post(f"/v2/annotations/{DS}", user=ALICE, json=body).get_json() == {"key": "Pt1_-2_3"}
    (item,) = api.get(f"/v2/annotations/{DS}", user=ALICE).get_json()
    assert item["pos"] == [1, -2, 3] and "colour" not in item and "verified" not in item
    bad = assert_error(
        api.post(f"/v2/annotations/{DS}", user=ALICE, json={"kind": "point", "pos": [1, 2]}),
        422,
        "validation_error",
    )
    assert bad["detail"] == bad["message"]


def test_conditional_keeps_truthy_fields_with_replace_false_only(api, world):
    at = f"/v2/annotations/{DS}"
    first = {
        "kind": "point",
        "pos": [1, 1, 1],
        "title": "kept",
        "tags": [],
        "description": "old",
        "prop": {"a": 1},
    }
    api.post(at, user=ALICE, json=first)
    later = {
        "kind": "point",
        "pos": [1, 1, 1],
        "title": "new",
        "tags": ["t"],
        "description": "new",
        "prop": {"b": 2},
    }
    api.post(f"{at}?replace=false&conditional=title,tags,user", user=ALICE, json=later)
    (item,) = api.get(at, user=ALICE).get_json()
    assert item["title"] == "kept"  # truthy: kept
    assert item["tags"] == ["t"]  # stored [] is falsy: overwritten (Gatehouse's own route keeps it)
    assert item["description"] == "new" and item["prop"] == {"a": 1, "b": 2}  # prop merged key by key
    api.post(
        f"{at}?replace=true&conditional=title",
        user=ALICE,
        json={"kind": "point", "pos": [1, 1, 1], "title": "replaced"},
    )
    (item,) = api.get(at, user=ALICE).get_json()
    assert item["title"] == "replaced" and "prop" not in item  # conditional applies with replace=false only


def test_listing_unions_user_groups_and_the_caller(api, world):
    api.add_user(CURATOR, datasets={DS: ["clio_write"]}, groups=[GROUP])
    for email, x in ((ALICE, 1), (BOB, 2), (CAROL, 3), (CURATOR, 4)):
        api.post(f"/v2/annotations/{DS}", user=email, json={"kind": "point", "pos": [x, 0, 0]})

    def users(path, caller):
        r = api.get(path, user=caller)
        assert r.status_code == 200, r.get_data(as_text=True)
        return sorted(i["user"] for i in r.get_json())

    assert users(f"/v2/annotations/{DS}", CAROL) == [CAROL]
    assert users(f"/v2/annotations/{DS}?user={CAROL}&groups={GROUP}", CURATOR) == [ALICE, BOB, CAROL, CURATOR]
    assert_error(api.get(f"/v2/annotations/{DS}?user={ALICE}", user=CAROL), 403, "forbidden")
    assert_error(api.get(f"/v2/annotations/{DS}?user=not-an-email", user=CAROL), 400, "bad_request")


def test_delete_of_another_users_annotation(api, world):
    """`user_email` is Gatehouse's `user`: another user's needs write_others."""
    api.post(f"/v2/annotations/{DS}", user=ALICE, json={"kind": "point", "pos": [7, 7, 7]})
    refused = api.delete(f"/v2/annotations/{DS}/Pt7_7_7?user_email={ALICE}", user=BOB)
    assert_error(refused, 403, "forbidden")
    deleted = api.delete(f"/v2/annotations/{DS}/Pt7_7_7?user_email={ALICE}", user=CURATOR)
    assert deleted.status_code == 200 and deleted.get_json() is None
    assert api.get(f"/v2/annotations/{DS}", user=ALICE).get_json() == []
    assert api.delete(f"/v2/annotations/{DS}/not-a-key", user=ALICE).status_code == 200


def test_gatehouse_routes_are_unchanged(api, world):
    """The same operations on Gatehouse's own routes keep their strictness and codes."""
    assert_error(api.get(f"/annotations/v2/{DS}?app=natverse", user=ALICE), 400, "bad_request")
    assert_error(
        api.post(f"/annotations/v2/{DS}", user=ALICE, json={"kind": "point", "pos": [1.5, 2, 3]}),
        422,
        "validation_error",
    )
    assert_error(api.delete(f"/annotations/v2/{DS}/Pt1_2_3", user=ALICE), 404, "not_found")
    assert "detail" not in api.delete(f"/annotations/v2/{DS}/Pt1_2_3", user=ALICE).get_json()
