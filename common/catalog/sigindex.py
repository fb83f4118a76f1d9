"""The signatures layout in SIG_BUCKET (SPEC §3 signatures), shared by the function and the
index builder (tools/build_signatures.py).

Per dataset (its lower-cased name):
- `<ds>/info.json`: {"block_size": int, "ham_0".."ham_3": masks as signed int64, "count": int}
- `<ds>/blocks/<xb>_<yb>_<zb>`: records `<IIIq` (x, y, z uint32; signature int64) of the points
  in that block (xb = x // block_size ...)
- `<ds>/index/ham_<i>/<p>`: the similarity index replacing BigQuery: for mask i, the records
  whose fmix64(mask_i & signature) mod 4000 is p. A likelocation query reads one object per
  mask (four in all). The four default masks are disjoint 16-bit slices of the 64 bits, so two
  signatures within Hamming distance 3 agree on at least one whole mask and always meet.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import Any

from common.cache import TTLCache
from common.config import settings

RECORD = struct.Struct("<IIIq")
PARTITIONS = 4000
MASKS = 4
# Four disjoint 16-bit slices of the 64 bits, as signed int64 (the last is 0xFFFF << 48).
DEFAULT_MASKS = (0xFFFF, 0xFFFF << 16, 0xFFFF << 32, -(1 << 48))
U64 = (1 << 64) - 1
_C1, _C2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53


def fmix64(value: int) -> int:
    """MurmurHash3's 64-bit finalizer, on the unsigned 64 bits of `value`."""
    k = value & U64
    k ^= k >> 33
    k = (k * _C1) & U64
    k ^= k >> 33
    k = (k * _C2) & U64
    k ^= k >> 33
    return k


def fmix64_array(values):
    """fmix64 over a numpy int64/uint64 array (wrapping multiplication, as in C)."""
    import numpy as np

    k = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        k ^= k >> np.uint64(33)
        k *= np.uint64(_C1)
        k ^= k >> np.uint64(33)
        k *= np.uint64(_C2)
        k ^= k >> np.uint64(33)
    return k


def partition(mask: int, signature: int) -> int:
    return fmix64(mask & signature) % PARTITIONS


def record_dtype():
    import numpy as np

    return np.dtype([("x", "<u4"), ("y", "<u4"), ("z", "<u4"), ("signature", "<i8")])


def info_path(dataset: str) -> str:
    return f"{dataset.lower()}/info.json"


def block_path(dataset: str, xb: int, yb: int, zb: int) -> str:
    return f"{dataset.lower()}/blocks/{xb}_{yb}_{zb}"


def index_path(dataset: str, mask_number: int, part: int) -> str:
    return f"{dataset.lower()}/index/ham_{mask_number}/{part}"


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & U64).bit_count()


INFO_SECONDS = 60  # how long an instance trusts a dataset's info.json
_info: TTLCache[str, dict[str, Any] | None] = TTLCache(INFO_SECONDS, 1000)


def cached_info(dataset: str, load: Callable[[str], dict[str, Any] | None]) -> dict[str, Any] | None:
    """A dataset's info.json (None: no signatures), loaded at most once a minute per instance."""
    return _info.load(dataset, load)


# Blocks and index partitions this instance read, by (build, path): a query at a point it has
# seen, or near one, reads nothing from Cloud Storage (tens of ms per object there). The build is
# info.json's `built_at`, written by every rebuild, so once an instance sees a new info.json
# (within INFO_SECONDS) it reads the new objects and the old ones only age out.
# Sizing, from a dataset's info.json: its `count` records of RECORD.size (20) bytes are stored
# five times (the blocks, and once per mask in the index); a query reads four partitions of
# about 20 * count / 4000 bytes (5 KB at 1M records) and the 1-8 blocks near its point. So
# SIG_CACHE_MB (64) holds every object of a dataset of about 600k records, or at 1M the objects
# of the last ~2,000 queries; the entry bound (OBJECTS) counts missing objects (kept as empty)
# and keeps the bookkeeping small (about 200 bytes an entry).
OBJECT_SECONDS = 3600
OBJECTS = 20_000


@functools.cache
def _objects() -> TTLCache[tuple[str, str], bytes]:
    return TTLCache(OBJECT_SECONDS, OBJECTS, max_bytes=settings().sig_cache_mb << 20)


def build_of(info: dict[str, Any]) -> str:
    """Which build of a dataset's signatures `info` describes (older builds carry no built_at)."""
    return str(info.get("built_at", ""))


def cached_objects(build: str, paths: list[str], read: Callable[[list[str]], list[bytes]]) -> list[bytes]:
    """The bytes of each object of `build` at `paths` (empty: missing), reading those this
    instance does not keep with `read` (all in one call: one round of parallel reads)."""
    cache = _objects()
    found = [cache.get((build, path)) for path in paths]
    missing = [path for path, data in zip(paths, found) if data is None]
    read_now = dict(zip(missing, read(missing))) if missing else {}
    for path, data in read_now.items():
        cache.put((build, path), data)
    return [data if data is not None else read_now[path] for path, data in zip(paths, found)]
