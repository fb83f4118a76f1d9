"""One dataset lookup per request: a route's check reads the dataset's record once and hands it
to the handler, which never looks the name up again (data keys, generations, audit entries,
each commit of a bulk write)."""

import pytest

DS = "mb20"
CURATOR = "curator@example.com"
AT = "?x=1&y=2&z=3"

ROUTES = [  # method, path, body
    ("GET", f"/annotations/v2/{DS}", None),
    ("POST", f"/annotations/v2/{DS}", [{"kind": "point", "pos": [i, 0, 0]} for i in range(1_000)]),
    (
        "POST",
        f"/annotations/v2/{DS}?replace=false",
        [{"kind": "point", "pos": [i, 0, 0]} for i in range(600)],
    ),
    ("DELETE", f"/annotations/v2/{DS}/Pt1_2_3", None),
    ("POST", f"/annotations/{DS}{AT}", {"a": 1}),
    ("GET", f"/annotations/{DS}", None),
    ("DELETE", f"/annotations/{DS}{AT}", None),
    ("POST", f"/savedsearches/{DS}{AT}", {"a": 1}),
    ("GET", f"/savedsearches/{DS}", None),
    ("POST", f"/atlas/{DS}{AT}", {"title": "a point"}),
    ("GET", f"/atlas/{DS}", None),
    ("DELETE", f"/atlas/{DS}{AT}", None),
    ("GET", f"/datasets/{DS}", None),
    ("PUT", f"/datasets/{DS}", {"description": "changed"}),
    ("GET", f"/datasets/{DS}/logs", None),
    ("GET", f"/datasets/{DS}/attachments", None),
    ("DELETE", f"/datasets/{DS}/attachments/notes.txt", None),
]


@pytest.fixture
def reads(api, setting, monkeypatch):
    """The names of the dataset records read from Firestore, with the per-instance cache off so
    that every lookup is a read."""
    from common import cache
    from common.storage import datasets

    api.add_dataset(DS)
    api.add_user(CURATOR, datasets={DS: ["dataset_admin", "clio_write"]})
    for method, path, body in ROUTES:  # something for each DELETE to find
        if method == "POST":
            api.post(path, user=CURATOR, json=body[:1] if isinstance(body, list) else body)
    api.post(f"/annotations/v2/{DS}", user=CURATOR, json={"kind": "point", "pos": [1, 2, 3]})
    setting("ROLE_CACHE_SECONDS", "0")
    cache.clear_all()
    read, load = [], datasets._read

    def counting(name):
        read.append(name)
        return load(name)

    monkeypatch.setattr(datasets, "_read", counting)
    return read


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_one_dataset_lookup_per_request(api, reads, method, path, body):
    r = api.call(method, path, user=CURATOR, json=body)
    assert r.status_code < 300, r.get_data(as_text=True)
    r.get_data()  # a streamed answer is produced as it is read
    assert reads == [DS]


def test_verifying_an_atlas_entry_looks_its_dataset_up_once(api, reads):
    from tests.utils import load_function

    api.post(f"/atlas/{DS}{AT}", user=CURATOR, json={"title": "a point"})
    entry = load_function("atlas").entry_id(DS, CURATOR, "1_2_3")
    reads.clear()
    r = api.post(f"/atlas/verify/{entry}", user=CURATOR)
    assert r.status_code == 200 and r.get_json()["verified"] is True
    assert reads == [DS]
