"""Moving a clio-store deployment in (tools/import_clio.py): clio's Firestore layout is written
into a project of its own on the emulator, document for document as clio-store's code writes it
(services/*.py: annotations_v3, atlas, savedsearches, kv, pull_request, users, datasets; the
version map of json_annotations), imported, and read back through the /v2 routes as the
clients read it. A second run changes nothing; a dry run writes nothing; a Gatehouse record
newer than clio's is left alone (and reported) unless --overwrite."""

from __future__ import annotations

import json
import os
import random
import sys
import time

import pytest
import requests

from tests.conftest import OWNER
from tools import import_clio

SOURCE = "clio-store-source"  # clio's project, on the session's Firestore emulator
SMALL = "clio-store-small"
GROUP = "UK Drosophila Connectomics"  # malevnc's default group: spaces
MANC, MB20, CNS = "manc:v1.0", "mb20", "cns"
ALICE, BOB, CAROL, DAVE = "alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"
# Who may read which dataset in clio (cns is public), so whose annotations are where.
READERS = {MANC: (ALICE, BOB, CAROL, DAVE), MB20: (ALICE, CAROL, DAVE), CNS: (ALICE, BOB, CAROL, DAVE)}
N_ANNOTATIONS = 10_000
NOW = 1_700_000_000.0


def _host() -> str:
    return os.environ["FIRESTORE_EMULATOR_HOST"]


def _wipe(project: str) -> None:
    requests.delete(
        f"http://{_host()}/emulator/v1/projects/{project}/databases/(default)/documents", timeout=30
    ).raise_for_status()


class Writer:
    """Writes as clio-store's code does, batched (clio wrote one document per request: the
    documents are the same, the seeding is quicker)."""

    def __init__(self, project: str):
        self.db = import_clio.source_client(project, _host())
        self.batch, self.size = self.db.batch(), 0

    def set(self, path: str, doc: dict) -> None:
        self.batch.set(self.db.document(path), doc)
        self.size += 1
        if self.size == 500:
            self.flush()

    def add(self, collection: str, doc: dict) -> str:
        ref = self.db.collection(collection).document()  # clio: collection.document() (auto id)
        self.set(f"{collection}/{ref.id}", doc)
        return ref.id

    def flush(self) -> None:
        if self.size:
            self.batch.commit()
        self.batch, self.size = self.db.batch(), 0


DATASETS = {
    MANC: {
        "title": "Male adult nerve cord",
        "description": "MANC v1.0",
        "tag": "v1.0",
        "uuid": "a3b4c5",
        "dvid": "https://manc-dvid.example.org",
        "location": "precomputed://gs://manc/em",
        "neuroglancer": {"layers": [{"name": "seg", "source": "dvid://https://manc/{uuid}/seg"}]},
        "versions": [{"version": "{tag}", "neuroglancer": {"layers": []}}],
        "neuprintHTTP": {"server": "neuprint.example.org", "dataset": "manc:v1.0", "version": "1.0"},
        "bodyAnnotationSchema": {"collection": "neurons"},
        "mainLayer": "seg",
        "orderedLayers": ["seg"],
        "public": False,
    },
    MB20: {"title": "Mushroom body", "description": "mb20", "location": "gs://mb20/em", "tag": "v1"},
    CNS: {"title": "CNS", "description": "central nervous system", "public": True},
}
VERSION_MAP = {
    MANC: {
        "tag_to_uuid": {"v0.9": "f0e1d2", "v1.0": "a3b4c5"},
        "uuid_to_tag": {"f0e1d2": "v0.9", "a3b4c5": "v1.0"},
        "head_tag": "v1.0",
        "head_uuid": "a3b4c5",
        "fields": ["bodyid", "type", "instance"],
    }
}
USERS = {  # clio_users/{email}: clio's User.dict(exclude={"email"}) (its sets are arrays)
    ALICE: {
        "name": "Alice",
        "org": "Cambridge",
        "disabled": False,
        "global_roles": [],
        "datasets": {MANC: ["clio_general"], MB20: ["clio_general"]},
        "groups": [GROUP],
    },
    BOB: {
        "name": None,
        "org": None,
        "disabled": False,
        "global_roles": [],
        "datasets": {MANC: ["clio_write"]},
        "groups": [GROUP],
    },
    CAROL: {
        "name": "Carol",
        "org": None,
        "disabled": False,
        "global_roles": ["clio_general"],
        "datasets": {},
        "groups": [".hidden", "lab"],
    },
    # the later clio-store wrote UserPayload.dict() alone: roles, no groups
    DAVE: {"global_roles": ["admin"], "datasets": {}},
}


def _annotation(rng: random.Random, user: str) -> dict:
    """A v2 annotation as clio stored it: jsonable_encoder(annotation, exclude_unset=True), the
    user set by the server; the other fields as the clients send them."""
    kind = rng.choice(("point", "point", "lineseg", "sphere"))
    pos = [rng.randrange(0, 50_000) for _ in range(3 if kind == "point" else 6)]
    doc: dict = {"kind": kind, "pos": pos, "user": user}
    style = rng.randrange(3)
    if style == 0:  # neuroglancer
        doc["tags"] = []
        doc["prop"] = {"timestamp": str(int(NOW * 1000) + rng.randrange(10**6)), "user": user, "comment": "c"}
        doc["title"] = f"t{rng.randrange(100)}"
    elif style == 1:  # malevnc's soma points
        doc["tags"] = ["soma"]
        doc["description"] = "soma"
    return doc


def _key(doc: dict) -> str:
    return {"point": "Pt", "lineseg": "Ln", "sphere": "Sp"}[doc["kind"]] + "_".join(map(str, doc["pos"]))


def seed(project: str) -> dict:
    """clio's whole layout; returns what was written, by kind, to check the answers against."""
    w = Writer(project)
    for name, metadata in DATASETS.items():
        w.set(f"clio_datasets/{name}", metadata)
    w.set("clio_annotations_global/metadata", {"neurons": VERSION_MAP})
    for email, user in USERS.items():
        w.set(f"clio_users/{email}", user)
    rng = random.Random(22)
    annotations: dict[tuple[str, str], dict[str, dict]] = {}
    slots = [(ds, user) for ds, users in READERS.items() for user in users]
    while sum(map(len, annotations.values())) < N_ANNOTATIONS:
        ds, user = (
            slots[len(annotations) % len(slots)] if len(annotations) < len(slots) else rng.choice(slots)
        )
        doc = _annotation(rng, user)
        annotations.setdefault((ds, user), {})[_key(doc)] = doc
    for (ds, user), docs in annotations.items():
        for key, doc in docs.items():
            w.set(f"clio_annotations_v2/{ds}/{user}/{key}", doc)
    atlas = []
    for n, (ds, user, verified) in enumerate(
        [
            (MANC, ALICE, True),
            (MANC, ALICE, False),
            (MANC, BOB, False),
            (MB20, CAROL, True),
            (CNS, DAVE, False),
        ]
    ):
        x, y, z = 100 + n, 200, 300
        entry = {"title": f"entry {n}", "user": user, "description": "d", "tags": [], "kind": "point"}
        entry |= {
            "timestamp": NOW + n + 0.25,
            "dataset": ds,
            "location": [x, y, z],
            "locationkey": f"{x}_{y}_{z}",
        }
        entry |= {"verified": verified}
        entry["id"] = w.add("clio_annotations/ATLAS/annotations", entry)
        atlas.append(entry)
    searches = []
    for n, (ds, user, at) in enumerate(
        [(MANC, ALICE, [1, 2, 3]), (MANC, ALICE, [1, 2, 3]), (MB20, ALICE, [4, 5, 6]), (MANC, BOB, [7, 8, 9])]
    ):
        search = {"note": f"saved {n}", "timestamp": NOW + n, "dataset": ds, "location": at}
        search |= {"locationkey": "_".join(map(str, at)), "email": user}
        w.add("clio_savedsearches/USER/searches", search)  # clio added one per POST
        searches.append(search)
    kv = {
        (ALICE, "merges-mb20-v1", "mainToOthers"): {"10017": [10043, 10086], "_timestamp": NOW + 1.5},
        (ALICE, "merges-mb20-v1", "mainOrdered"): {"array": [10017], "_timestamp": NOW + 1.6},
        (BOB, "merges-manc:v1.0-v1.0", "otherToMain"): {"7": 5, "_timestamp": NOW + 2.5},
    }
    for (user, scope, key), value in kv.items():
        w.set(f"clio_keyvalue/{user}/{scope}/{key}", value)
    pulls = {(ALICE, "merges-mb20-v1", "mainToOthers"): {"10017": [10043, 10086], "_timestamp": NOW + 9.5}}
    for (user, scope, key), value in pulls.items():
        w.set(f"clio_pull_requests/{user}/{scope}/{key}", value)
    # What is not imported, and reported: a v1 annotation, a site report.
    w.add(
        "clio_annotations/USER/annotations",
        {"title": "v1", "timestamp": NOW, "dataset": MANC, "location": [1, 2, 3], "locationkey": "1_2_3"}
        | {"email": ALICE},
    )
    w.set(f"clio_site_reports/{ALICE}-2023-11-14", {"page": "annotate"})
    w.flush()
    return {"annotations": annotations, "atlas": atlas, "searches": searches, "kv": kv, "pulls": pulls}


@pytest.fixture(scope="module")
def clio(emulators, test_env):
    _wipe(SOURCE)
    started = time.monotonic()
    seeded = seed(SOURCE)
    seeded["seconds"] = time.monotonic() - started
    yield seeded
    _wipe(SOURCE)


def run(capsys, *args: str, project: str = SOURCE) -> dict:
    """python -m tools.import_clio ... --json: its report; its progress is on stderr."""
    code = import_clio.main(["--source-project", project, "--source-emulator", _host(), "--json", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return {**json.loads(out), "progress": err}


def _target_documents() -> int:
    from common.storage import store

    return sum(1 for c in store.db().collections() for _ in c.list_documents())


def _audit_entries() -> list[dict]:
    from common import audit
    from common.storage import store

    return [s.to_dict() for s in store.collection(audit.COLLECTION).stream()]


CLIENT_FIELDS = ("key", "user", "kind", "pos", "prop", "tags", "title", "description")


def test_a_clio_deployment_is_imported_once_and_served_as_clio_served_it(api, clio, capsys):
    # A dry run reads both sides, says what it would write, and writes nothing.
    started = time.monotonic()
    dry = run(capsys, "--dry-run")
    dry_seconds = time.monotonic() - started
    assert _target_documents() == 0
    assert dry["counts"]["annotations"]["created"] == N_ANNOTATIONS
    assert dry["counts"]["datasets"]["created"] == 3 and dry["counts"]["users"]["created"] == 4

    started = time.monotonic()
    report = run(capsys)
    seconds = time.monotonic() - started
    counts = report["counts"]
    assert counts["annotations"] == {"created": N_ANNOTATIONS, "unmapped": 1}, counts  # + the v1 one
    assert counts["datasets"] == {"created": 3} and counts["users"] == {"created": 4}
    assert counts["atlas"] == {"created": 5}
    assert counts["savedsearches"] == {"created": 3, "duplicates": 1}  # two at one place: the newest
    assert counts["kv"] == {"created": 3} and counts["pull_requests"] == {"created": 1}
    assert [u["why"] for u in report["unmapped"]] == [
        "clio's v1 annotations were removed from clio in 2021; no client reads them"
    ]
    assert any("clio_site_reports not imported" in note for note in report["notes"]), report["notes"]
    assert "annotations: 10000 compared" in report["progress"]
    audit_entries = _audit_entries()
    assert sorted(e["target_type"] for e in audit_entries) == sorted(import_clio.KINDS)
    assert all(e["action"] == "clio_import" and e["actor"] == import_clio.ACTOR for e in audit_entries)

    _datasets_and_roles_read_back(api)
    _annotations_read_back(api, clio["annotations"])
    _atlas_read_back(api, clio["atlas"])
    _rest_read_back(api, clio)

    # Run again: nothing changes, nothing is written (not even an audit entry).
    started = time.monotonic()
    again = run(capsys)
    again_seconds = time.monotonic() - started
    assert again["changes"] == 0 and not again["conflicts"], again
    assert again["counts"]["annotations"] == {"unchanged": N_ANNOTATIONS, "unmapped": 1}
    assert len(_audit_entries()) == len(audit_entries)
    print(  # the figures, for whoever runs this with -s
        f"\nclio layout with {N_ANNOTATIONS} annotations seeded (batched writes) in {clio['seconds']:.1f} s; "
        f"dry run {dry_seconds:.1f} s, import {seconds:.1f} s, second run {again_seconds:.1f} s",
        file=sys.stderr,
    )


def _datasets_and_roles_read_back(api):
    """GET /v2/datasets (the website, malevnc, clio-py) and GET /v2/roles (the website)."""
    listed = api.get("/v2/datasets?app=natverse", user=ALICE).get_json()
    assert sorted(listed) == [CNS, MANC, MB20]
    manc = listed[MANC]
    for field in ("title", "description", "tag", "uuid", "dvid", "location", "neuprintHTTP", "mainLayer"):
        assert manc[field] == DATASETS[MANC][field], field
    assert manc["neuroglancer"]["layers"][0]["source"] == "dvid://https://manc/a3b4c5/seg"  # {uuid} filled
    assert manc["versions"][0]["version"] == "v1.0"  # {tag} filled
    assert manc["bodyAnnotationSchema"] == {"collection": "neurons"}
    # The version map, where the bodyannotations function reads it (clio's `fields` is DVID's).
    assert manc["neurons"] == {k: VERSION_MAP[MANC][k] for k in import_clio.VERSION_MAP_KEYS}
    assert sorted(api.get("/v2/datasets", user=BOB).get_json()) == [CNS, MANC]  # cns is public
    for email, user in USERS.items():
        roles = api.get("/v2/roles?app=clio-py", user=email).get_json()
        assert roles["email"] == email
        assert roles["global_roles"] == user["global_roles"] and roles["groups"] == user.get("groups", [])
        assert roles["datasets"] == user["datasets"], email


def _annotations_read_back(api, seeded):
    """GET /v2/annotations/{ds}: each user's own, and a group's, in the fields clients parse."""
    for (ds, user), docs in seeded.items():
        answer = api.get(f"/v2/annotations/{ds}?app=natverse", user=user)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        got = {a["key"]: {k: a[k] for k in CLIENT_FIELDS if k in a} for a in answer.get_json()}
        assert got == {key: {"key": key, **doc} for key, doc in docs.items()}, (ds, user)
    group = api.get(f"/v2/annotations/{MANC}?groups={GROUP}", user=ALICE).get_json()
    assert len(group) == len(seeded[(MANC, ALICE)]) + len(seeded[(MANC, BOB)])


def _atlas_read_back(api, seeded):
    """GET /v2/atlas/all (the website's Atlas page) and GET /v2/atlas/{ds} (neuroglancer)."""
    everything = api.get("/v2/atlas/all", user=DAVE).get_json()  # an admin sees every entry
    by_place = {(e["dataset"], e["user"], e["locationkey"]): e for e in everything}
    assert len(by_place) == len(seeded)
    for entry in seeded:
        got = by_place[(entry["dataset"], entry["user"], entry["locationkey"])]
        for field in ("title", "description", "location", "verified", "kind", "tags"):
            assert got[field] == entry[field], field
        assert got["timestamp"] == pytest.approx(entry["timestamp"], abs=1e-6)
    seen = api.get("/v2/atlas/all", user=BOB).get_json()
    assert sorted(e["title"] for e in seen) == ["entry 0", "entry 1", "entry 2"]  # write_others on manc
    own = api.get(f"/v2/atlas/{MANC}", user=ALICE).get_json()
    assert sorted(own) == ["100_200_300", "101_200_300"] and own["100_200_300"]["verified"] is True


def _rest_read_back(api, seeded):
    """Saved searches (the website's image search), kv (its merge tool), pull requests (neuclease)."""
    searches = api.get(f"/v2/savedsearches/{MANC}", user=ALICE).get_json()
    assert list(searches) == ["1_2_3"]
    search = searches["1_2_3"]
    assert search["note"] == "saved 1" and search["timestamp"] == NOW + 1  # the newer of the two
    assert search["location"] == [1, 2, 3] and search["dataset"] == MANC and search["email"] == ALICE
    for (user, scope, key), value in seeded["kv"].items():
        got = api.get(f"/v2/kv/{scope}/{key}?timestamp=true", user=user)
        assert got.status_code == 200 and got.get_json() == value, (scope, key)
    pulls = api.get("/v2/pull-request?user_email=all", user=DAVE).get_json()
    assert pulls == {
        ALICE: {
            "merges-mb20-v1": {"mainToOthers": seeded["pulls"][(ALICE, "merges-mb20-v1", "mainToOthers")]}
        }
    }


def test_a_newer_gatehouse_record_is_kept_and_what_cannot_be_mapped_is_reported(api, capsys):
    _wipe(SMALL)
    w = Writer(SMALL)
    w.set(f"clio_datasets/{MB20}", {"description": "mb20", "location": "file:///local/em", "name": MB20})
    w.set("clio_datasets/CNS", {"description": "in capitals"})
    w.set("clio_datasets/cns", {"description": "in small letters"})  # Firestore lists CNS first
    w.set("clio_datasets/v2", {"description": "a reserved name"})
    w.set(f"clio_users/{ALICE}", {"global_roles": [], "datasets": {MB20: ["clio_general", "tracer"]}})
    w.set("clio_users/alice", {"global_roles": ["admin"]})  # no email
    w.set(f"clio_annotations_v2/{MB20}/{ALICE}/Pt1_2_3", {"kind": "point", "pos": [1, 2, 3], "user": ALICE})
    w.set(f"clio_annotations_v2/v2/{ALICE}/Pt1_2_3", {"kind": "point", "pos": [1, 2, 3], "user": ALICE})
    w.flush()
    try:
        first = run(capsys, project=SMALL)
        assert first["counts"]["datasets"] == {"created": 2, "unmapped": 2}
        assert first["counts"]["users"] == {"created": 1, "unmapped": 1}
        assert first["counts"]["annotations"] == {"created": 1, "unmapped": 1}
        why = {u["what"]: u["why"] for u in first["unmapped"]}
        assert why["alice"] == "the user's id is not an email"
        assert "not a valid Gatehouse dataset name" in why["v2"]
        assert why["cns"] == "the name is taken by 'CNS' (names are unique regardless of case)"
        assert why[f"v2/{ALICE}/Pt1_2_3"] == "its dataset 'v2' was not imported"
        notes = "\n".join(first["notes"])
        assert "location 'file:///local/em' cannot be stored" in notes and "role 'tracer'" in notes
        assert "field 'name' dropped" in notes
        assert api.get("/v2/datasets", user=OWNER).get_json()[MB20].get("location") is None

        # Alice edits her annotation in Gatehouse; an admin changes her roles. Both are kept.
        r = api.post(
            f"/v2/annotations/{MB20}", user=ALICE, json={"kind": "point", "pos": [1, 2, 3], "title": "new"}
        )
        assert r.status_code == 200, r.get_data(as_text=True)
        api.add_user(ALICE, datasets={MB20: ["clio_write"]})
        second = run(capsys, project=SMALL)
        assert second["changes"] == 0
        assert sorted(c["kind"] for c in second["conflicts"]) == ["annotations", "users"], second["conflicts"]
        (mine,) = api.get(f"/v2/annotations/{MB20}", user=ALICE).get_json()
        assert mine["title"] == "new"
        assert api.get("/v2/roles", user=ALICE).get_json()["datasets"] == {MB20: ["clio_write"]}
        # The report as an operator reads it (without --json).
        assert import_clio.main(["--source-project", SMALL, "--source-emulator", _host(), "--dry-run"]) == 0
        text = capsys.readouterr().out
        assert "clio-store import (dry run: nothing written); would write:" in text
        assert (
            f"conflict: annotations {MB20}/{ALICE}/Pt1_2_3: Gatehouse's record differs and is newer" in text
        )
        assert "conflict: users alice@example.com: Gatehouse's record differs and neither side" in text
        assert "not imported: users alice: the user's id is not an email" in text

        # --overwrite puts clio's back.
        forced = run(capsys, "--overwrite", project=SMALL)
        assert forced["counts"]["annotations"]["updated"] == 1 and forced["counts"]["users"]["updated"] == 1
        (mine,) = api.get(f"/v2/annotations/{MB20}", user=ALICE).get_json()
        assert "title" not in mine

        # Alice goes on working in clio; the next import brings the newer write over.
        w.set(
            f"clio_annotations_v2/{MB20}/{ALICE}/Pt1_2_3",
            {"kind": "point", "pos": [1, 2, 3], "user": ALICE, "title": "in clio"},
        )
        w.flush()
        later = run(capsys, project=SMALL)
        assert later["counts"]["annotations"] == {"updated": 1, "unmapped": 1} and not later["conflicts"]
        (mine,) = api.get(f"/v2/annotations/{MB20}", user=ALICE).get_json()
        assert mine["title"] == "in clio"
    finally:
        _wipe(SMALL)
