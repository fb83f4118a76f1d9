"""signatures: the image signature at a point, and points whose images look alike (SPEC §3).

Reads the layout of common/catalog/sigindex.py from SIG_BUCKET: blocks for `atlocation`, and for
`likelocation` one index partition per mask (four objects) instead of a scan of every record.
"""

from __future__ import annotations

import datetime
import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import errors
from common.catalog import sigindex
from common.catalog.locations import LocationQuery, location
from common.identity import auth, authz
from common.models import Public
from common.storage import blobs, datasets
from common.web.http import App

app = App(
    "signatures",
    "Image signatures: the signature at a point, and similar points.",
    authenticate=auth.authenticate,
)

NEAR = 100  # voxels: how far atlocation looks, and the suppression radius of likelocation
MAX_DISTANCE = 8  # Hamming distance of a match: < 8
MAX_CANDIDATES = 200
_pool_lock = threading.Lock()
_pool = None


def _executor():
    """One small thread pool per instance for parallel reads from Cloud Storage."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sig-read")
    return _pool


def _read(path: str) -> bytes | None:
    from google.api_core.exceptions import NotFound

    try:
        return blobs.bucket(app.settings.sig_bucket).blob(path).download_as_bytes()
    except NotFound:
        return None


def _read_many(paths: list[str]) -> list[bytes]:
    """The bytes of each object (missing ones: empty), read in parallel."""
    return [data or b"" for data in _executor().map(_read, paths)]


def _read_all(info: dict[str, Any], paths: list[str]):
    """The records of each object of the dataset's build `info` describes (missing ones are
    empty): those this instance read recently from its cache, the others in one parallel round."""
    import numpy as np

    dtype = sigindex.record_dtype()
    return [
        np.frombuffer(data, dtype=dtype)
        for data in sigindex.cached_objects(sigindex.build_of(info), paths, _read_many)
    ]


def _load_info(dataset: str) -> dict[str, Any] | None:
    data = _read(sigindex.info_path(dataset))
    return json.loads(data) if data else None


def _info(dataset: authz.Dataset) -> dict[str, Any]:
    info = sigindex.cached_info(dataset.name, _load_info)
    if info is None or not _built_for(info, dataset.record):
        raise errors.NotFound(f"dataset {dataset.name!r} has no signatures")
    return info


def _built_for(info: dict[str, Any], record: dict[str, Any] | None) -> bool:
    """Signatures are stored under the dataset's name: those built before the dataset was created
    belong to a deleted dataset of the same name, never to this one."""
    if record is None or not datasets.generation(record):
        return True  # a dataset made before generations: its signatures carry no build time
    built_at = info.get("built_at")
    if not isinstance(built_at, str):
        return False
    try:
        return datetime.datetime.fromisoformat(built_at) >= record["created_at"]
    except (TypeError, ValueError):
        return False


def _blocks_near(point: tuple[int, int, int], block_size: int) -> list[tuple[int, ...]]:
    """Every block the ball of radius NEAR around `point` touches (not just the point's own)."""
    ranges = [range(max(0, c - NEAR) // block_size, max(0, c + NEAR) // block_size + 1) for c in point]
    touched = []
    for block in itertools.product(*ranges):
        # distance from the point to the block's box, axis by axis
        gap = sum(max(b * block_size - c, 0, c - (b + 1) * block_size + 1) ** 2 for b, c in zip(block, point))
        if gap <= NEAR * NEAR:
            touched.append(block)
    return touched


def _squared_distances(records, point):
    import numpy as np

    return sum((records[axis].astype(np.int64) - c) ** 2 for axis, c in zip("xyz", point))


def nearest(dataset: authz.Dataset, point: tuple[int, int, int]):
    """The stored record nearest to `point` within NEAR voxels (ties: lowest x, y, z), or None."""
    import numpy as np

    info = _info(dataset)
    blocks = _blocks_near(point, info["block_size"])
    records: Any = (
        np.concatenate(_read_all(info, [sigindex.block_path(dataset.name, *b) for b in blocks]))
        if blocks
        else []
    )
    if not len(records):
        return None
    d2 = _squared_distances(records, point)
    within = d2 <= NEAR * NEAR
    if not within.any():
        return None
    close = records[within]
    return close[np.lexsort((close["z"], close["y"], close["x"], d2[within]))[0]]


class SignaturePublic(Public):
    point: list[int]
    signature: str  # a 64-bit integer, as text: JSON readers lose precision past 2^53


class MatchPublic(Public):
    point: list[int]
    dist: int
    score: float


class MatchesPublic(Public):
    matches: list[MatchPublic]
    message: str | None = None  # "no matches" when there are none


def _record_view(record) -> tuple[list[int], int]:
    return [int(record["x"]), int(record["y"]), int(record["z"])], int(record["signature"])


@app.get(
    "/signatures/atlocation/<name>",
    check=authz.on_dataset(authz.READ),
    query=LocationQuery,
    response=SignaturePublic,
)
def at_location(req, name, dataset):
    """The signature of the stored point nearest to x, y, z (within 100 voxels)."""
    record = nearest(dataset, location(req))
    if record is None:
        raise errors.NotFound("point not found")
    point, signature = _record_view(record)
    return {"point": point, "signature": str(signature)}


def candidates(dataset: authz.Dataset, signature: int):
    """Records sharing at least one masked hash with `signature`, at Hamming distance < 8, by
    (distance, x, y, z), at most 200: the index's four partitions, not a scan."""
    import numpy as np

    info = _info(dataset)
    masks = [info[f"ham_{i}"] for i in range(sigindex.MASKS)]
    parts = _read_all(
        info,
        [sigindex.index_path(dataset.name, i, sigindex.partition(m, signature)) for i, m in enumerate(masks)],
    )
    # Same partition is not enough (4000 partitions share hashes); the masked bits must agree.
    shared = [
        p[
            (p["signature"].view(np.uint64) & np.uint64(m & sigindex.U64))
            == np.uint64(m & signature & sigindex.U64)
        ]
        for p, m in zip(parts, masks)
    ]
    found = np.unique(np.concatenate(shared))  # a record may share several masks
    dist = np.bitwise_count((found["signature"] ^ np.int64(signature)).view(np.uint64)).astype(np.int64)
    keep = dist < MAX_DISTANCE
    found, dist = found[keep], dist[keep]
    order = np.lexsort((found["z"], found["y"], found["x"], dist))[:MAX_CANDIDATES]
    return found[order], dist[order]


def suppress(point: tuple[int, int, int], found, dist) -> list[dict[str, Any]]:
    """Greedy, in order: keep a match more than NEAR voxels from the query point and from
    every match kept before it."""
    kept: list[tuple[int, int, int]] = []
    matches = []
    for record, d in zip(found, dist):
        xyz = (int(record["x"]), int(record["y"]), int(record["z"]))
        if all(sum((a - b) ** 2 for a, b in zip(xyz, other)) > NEAR * NEAR for other in [point, *kept]):
            kept.append(xyz)
            matches.append({"point": list(xyz), "dist": int(d), "score": 1 - int(d) / MAX_DISTANCE})
    return matches


@app.get(
    "/signatures/likelocation/<name>",
    check=authz.on_dataset(authz.READ),
    query=LocationQuery,
    response=MatchesPublic,
)
@app.get(  # clio's path for the same search (the clio website's image search)
    "/v2/signatures/likelocation/<name>",
    check=authz.on_dataset(authz.READ),
    query=LocationQuery,
    response=MatchesPublic,
    operation_id="clio_like_location",
)
def like_location(req, name, dataset):
    """Points whose signature is within Hamming distance 8 of the one at x, y, z, best first."""
    point = location(req)
    origin = nearest(dataset, point)
    if origin is None:
        raise errors.NotFound("point not found")
    found, dist = candidates(dataset, _record_view(origin)[1])
    matches = suppress(point, found, dist)
    return {"matches": matches} if matches else {"matches": [], "message": "no matches"}


def handle(request):
    return app(request)
