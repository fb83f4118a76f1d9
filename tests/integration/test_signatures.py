"""signatures: the index builder, atlocation across block faces, likelocation against brute force."""

import os

import numpy as np
import pytest

from common.catalog import sigindex
from common.storage import datasets
from tests.conftest import BUCKETS, OWNER
from tests.utils import assert_error, load_function
from tools import build_signatures

SIG_BUCKET = BUCKETS[1]
DS = "Sig"  # stored lower-cased
READER, STRANGER = "reader@example.com", "stranger@example.com"


def records_of(rows):
    out = np.empty(len(rows), dtype=sigindex.record_dtype())
    for i, (x, y, z, s) in enumerate(rows):
        out[i] = (x, y, z, s)
    return out


def flip(signature: int, bits) -> int:
    value = signature & sigindex.U64
    for bit in bits:
        value ^= 1 << bit
    return value - (1 << 64) if value >= 1 << 63 else value


@pytest.fixture
def world(api):
    api.add_dataset(DS)
    api.add_dataset("nosigs")
    api.add_user(READER, datasets={DS: ["clio_read"], "nosigs": ["clio_read"]})


def build(records, block_size=256):
    return build_signatures.build(SIG_BUCKET, DS, records, block_size=block_size, progress=False)


def a_minute_later(monkeypatch):
    """The instance's info.json is stale (sigindex.INFO_SECONDS): it reads it again, so it
    sees a rebuild, and then reads the new build's objects instead of those it kept."""
    import time

    monkeypatch.setattr(sigindex._info, "clock", lambda: time.monotonic() + sigindex.INFO_SECONDS + 1)


def get(api, route, x, y, z, user=READER, ds=DS):
    return api.get(f"/signatures/{route}/{ds}?x={x}&y={y}&z={z}", user=user)


def test_atlocation_looks_across_block_faces(api, world, monkeypatch):
    # The query at x=257 is in block 1; the nearest point (x=255) is in block 0, and a point
    # of block 1 (x=300) is farther. Reading the query's own block only would answer 300.
    build(records_of([(255, 10, 10, 111), (300, 10, 10, 222), (600, 600, 600, -5)]))
    r = get(api, "atlocation", 257, 10, 10)
    assert r.status_code == 200 and r.get_json() == {"point": [255, 10, 10], "signature": "111"}
    # across a corner too: query in block (1,1,1), nearest in block (0,0,0)
    build(records_of([(250, 250, 250, 7), (340, 340, 340, 8)]))
    a_minute_later(monkeypatch)  # an instance sees a rebuild once its info.json is stale
    assert get(api, "atlocation", 260, 260, 260).get_json()["point"] == [250, 250, 250]
    assert_error(get(api, "atlocation", 600, 600, 700), 404, "not_found")  # the rebuild dropped it


def test_atlocation_not_found_and_no_signatures(api, world):
    build(records_of([(1000, 1000, 1000, 1)]))
    assert get(api, "atlocation", 1000, 1000, 1100).get_json()["point"] == [1000, 1000, 1000]  # exactly 100
    body = assert_error(get(api, "atlocation", 1000, 1000, 1101), 404, "not_found")
    assert body["message"] == "point not found"
    assert_error(get(api, "atlocation", 5, 5, 5, ds="nosigs"), 404, "not_found")
    assert_error(get(api, "likelocation", 5, 5, 5, ds="nosigs"), 404, "not_found")
    assert_error(get(api, "atlocation", 5, 5, 5, ds="unknown"), 404, "not_found")
    assert_error(api.get(f"/signatures/atlocation/{DS}?x=1.5&y=2&z=3", user=READER), 400, "bad_request")


def test_roles(api, world):
    build(records_of([(10, 10, 10, 1)]))
    assert get(api, "atlocation", 10, 10, 10, user=READER).status_code == 200
    assert get(api, "atlocation", 10, 10, 10, user=OWNER).status_code == 200
    assert_error(get(api, "atlocation", 10, 10, 10, user=STRANGER), 404, "not_found")
    assert_error(get(api, "likelocation", 10, 10, 10, user=STRANGER), 404, "not_found")
    assert api.get(f"/signatures/atlocation/{DS}?x=1&y=2&z=3").status_code == 401
    api.put(f"/datasets/{DS}", user=OWNER, json={"public": True})
    assert get(api, "likelocation", 10, 10, 10, user=STRANGER).status_code == 200


def test_likelocation_orders_suppresses_and_scores(api, world):
    base = 0x0123_4567_89AB_CDEF
    build(
        records_of(
            [
                (1000, 1000, 1000, base),  # the query's own point: within 100 of the query
                (2000, 1000, 1000, flip(base, [0])),  # dist 1, exactly 100 from 1900: suppressed
                (2050, 1000, 1000, flip(base, [1])),  # dist 1, near 2000 only, which was not kept
                (1900, 1000, 1000, flip(base, [2])),  # dist 1, lowest x: first of the ties
                (3000, 1000, 1000, flip(base, [0, 17, 33])),  # dist 3, one flip in each of three masks
                (4000, 1000, 1000, flip(base, range(7))),  # dist 7
                (5000, 1000, 1000, flip(base, range(8))),  # dist 8: not a match
                (1050, 1000, 1000, flip(base, [5])),  # dist 1 but within 100 of the query point
            ]
        )
    )
    r = get(api, "likelocation", 1000, 1000, 1000)
    assert r.status_code == 200
    assert r.get_json()["matches"] == [
        {"point": [1900, 1000, 1000], "dist": 1, "score": 0.875},
        {"point": [2050, 1000, 1000], "dist": 1, "score": 0.875},
        {"point": [3000, 1000, 1000], "dist": 3, "score": 0.625},
        {"point": [4000, 1000, 1000], "dist": 7, "score": 0.125},
    ]


def test_likelocation_no_matches(api, world):
    build(records_of([(10, 10, 10, 0), (5000, 5000, 5000, -1)]))
    assert get(api, "likelocation", 10, 10, 10).get_json() == {"matches": [], "message": "no matches"}
    assert_error(get(api, "likelocation", 2000, 2000, 2000), 404, "not_found")


def _generated(seed=7, count=500, copies=(250, *[15] * 9)):
    """Random points and signatures, plus near-copies (Hamming 1..5, flips spread over the
    masks) of the first ten signatures, placed within 150 voxels of their source's point so the
    spatial suppression has work to do (by the query point and by kept matches); the first
    source has more than 200 near-copies, so its answer is cut at 200 candidates."""
    rng = np.random.default_rng(seed)
    xyz = rng.integers(200, 3896, size=(count, 3))
    sig = rng.integers(-(2**63), 2**63 - 1, size=count, dtype=np.int64)
    rows = [(int(x), int(y), int(z), int(s)) for (x, y, z), s in zip(xyz, sig)]
    for source, n in enumerate(copies):
        sx, sy, sz, signature = rows[source]
        for _ in range(n):
            bits = rng.choice(64, size=int(rng.integers(1, 6)), replace=False)
            dx, dy, dz = (int(v) for v in rng.integers(-150, 151, size=3))
            rows.append((sx + dx, sy + dy, sz + dz, flip(signature, [int(b) for b in bits])))
    return records_of(rows)


def _spec_likelocation(records, point, signature) -> list[dict]:
    """SPEC's likelocation written out over every record, none of the function's code: the
    candidates share a masked hash with the query's signature and are within Hamming 8, best
    (distance, then x, y, z) first, at most 200; then greedy suppression keeps a candidate only
    if it is more than 100 voxels from the query point and from every candidate kept before."""
    u64 = (1 << 64) - 1
    query = signature & u64
    hashes = [sigindex.fmix64(m & query) for m in sigindex.DEFAULT_MASKS]
    candidates = []
    for r in records:
        s = int(r["signature"]) & u64
        d = bin(s ^ query).count("1")
        if d < 8 and any(sigindex.fmix64(m & s) == h for m, h in zip(sigindex.DEFAULT_MASKS, hashes)):
            candidates.append((d, int(r["x"]), int(r["y"]), int(r["z"])))
    kept: list[tuple[int, int, int]] = []
    matches = []
    for d, *xyz in sorted(set(candidates))[:200]:
        far = all(sum((a - b) ** 2 for a, b in zip(xyz, other)) > 100**2 for other in [point, *kept])
        if far:
            kept.append(tuple(xyz))
            matches.append({"point": list(xyz), "dist": d, "score": 1 - d / 8})
    return matches


def test_likelocation_equals_brute_force(api, world):
    records = _generated()
    build(records, block_size=512)
    signatures = load_function("signatures")
    dataset = datasets.Dataset(DS, datasets.record(DS))  # as the routes' check hands it over
    checked_close = suppressed_by_kept = 0
    for i in range(10):
        x, y, z, signature = (int(v) for v in records[i])
        # every record within Hamming 3, by brute force over all of them, is an index candidate
        within3 = {
            (int(r["x"]), int(r["y"]), int(r["z"]))
            for r in records
            if sigindex.hamming(int(r["signature"]), signature) <= 3
        }
        found, dist = signatures.candidates(dataset, signature)
        assert {(int(r["x"]), int(r["y"]), int(r["z"])) for r, d in zip(found, dist) if d <= 3} == within3
        checked_close += len(within3)
        # and the whole answer equals SPEC's algorithm run on every record
        expected = _spec_likelocation(records, (x, y, z), signature)
        r = get(api, "likelocation", x, y, z)
        assert r.status_code == 200
        assert r.get_json()["matches"] == expected, i
        far_from_query = [
            p
            for d, p in zip(dist, found)
            if (int(p["x"]) - x) ** 2 + (int(p["y"]) - y) ** 2 + (int(p["z"]) - z) ** 2 > 100**2
        ]
        suppressed_by_kept += len(far_from_query) - len(expected)
    assert checked_close > 50  # the planted near-copies were found
    assert suppressed_by_kept > 20  # matches were dropped for being near a kept match, not only the query
    assert len(signatures.candidates(dataset, int(records[0]["signature"]))[0]) == 200  # the cap was reached


def test_rebuild_replaces_the_index(api, world):
    from common.storage import blobs

    build(records_of([(10, 10, 10, 1), (3000, 3000, 3000, 2)]))
    build(records_of([(10, 10, 10, 5)]))
    names = [b.name for b in blobs.client().list_blobs(blobs.bucket(SIG_BUCKET), prefix="sig/")]
    assert not any(n.startswith("sig/blocks/11_") for n in names)  # the old far block is gone
    assert get(api, "atlocation", 10, 10, 10).get_json()["signature"] == "5"
    assert os.path.basename(sigindex.info_path(DS)) in {n.split("/")[-1] for n in names}


def test_objects_are_read_once_per_build_and_a_rebuild_reads_the_new_ones(api, world, monkeypatch):
    """Blocks and index partitions are kept per instance (reads from Cloud Storage take tens of
    ms): a query at a point seen before reads nothing; the answers are those of the build the
    instance's info.json names, and after a rebuild, once it sees the new info.json, the new
    build's objects are read, however many of the old ones it kept."""
    base = 0x0123_4567_89AB_CDEF
    build(records_of([(1000, 1000, 1000, base), (3000, 1000, 1000, flip(base, [3]))]))
    signatures = load_function("signatures")
    reads: list[str] = []
    read = signatures._read
    monkeypatch.setattr(signatures, "_read", lambda path: reads.append(path) or read(path))
    dataset = datasets.Dataset(DS, datasets.record(DS))

    def query():
        origin = signatures.nearest(dataset, (1000, 1000, 1000))
        found, dist = signatures.candidates(dataset, int(origin["signature"]))
        return int(origin["signature"]), [(int(r["x"]), int(d)) for r, d in zip(found, dist)]

    assert query() == (base, [(1000, 0), (3000, 1)])
    first = list(reads)  # info.json, the point's block(s) and four partitions
    assert len([p for p in first if "/index/" in p]) == 4 and any("/blocks/" in p for p in first)
    assert query() == (base, [(1000, 0), (3000, 1)]) and reads == first  # nothing read again

    build(records_of([(1000, 1000, 1000, base), (3000, 1000, 1000, flip(base, [3, 4]))]))
    assert query() == (base, [(1000, 0), (3000, 1)]) and reads == first  # the build it knows
    a_minute_later(monkeypatch)
    assert query() == (base, [(1000, 0), (3000, 2)])  # the new build
    assert sorted(reads[len(first) :]) == sorted(first)  # each object read again, once


def test_the_kept_objects_stay_within_their_byte_bound(api, world, monkeypatch):
    """SIG_CACHE_MB bounds the bytes an instance keeps: with a bound of a few objects, queries
    over many blocks keep no more than it, and their answers stay exact."""
    import time

    from common import cache

    records = _generated(count=400, copies=(5,) * 10)
    build(records, block_size=128)
    monkeypatch.setattr(sigindex, "_objects", lambda: kept)
    kept = cache.TTLCache(60, 1000, clock=time.monotonic, max_bytes=3 * 20 * 20)  # ~3 small objects
    for i in range(10):
        x, y, z, signature = (int(v) for v in records[i])
        r = get(api, "likelocation", x, y, z)
        assert r.get_json()["matches"] == _spec_likelocation(records, (x, y, z), signature), i
        assert kept.bytes <= 3 * 20 * 20 and len(kept) > 0
