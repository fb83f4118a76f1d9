"""Build a dataset's signatures in SIG_BUCKET: `info.json`, the blocks and the similarity index
(layout in common/catalog/sigindex.py), from a file of x, y, z, signature records.

    python -m tools.build_signatures --dataset mb20 --input points.csv [--block-size 256]
    python -m tools.build_signatures --dataset mb20 --input points.npy --bucket my-signatures

Input: CSV with the columns x, y, z, signature (decimal int64; a header line is skipped), or
NumPy .npy (a structured array with fields x, y, z, signature, or an N x 4 integer array).
A rebuild replaces the dataset's objects; info.json is written last, so readers see either the
old index or the complete new one. Against the emulators, set STORAGE_EMULATOR_HOST.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.catalog import sigindex  # noqa: E402

UPLOAD_THREADS = 8


def read_records(path: str):
    """The records of a CSV or .npy file as a structured array (x, y, z uint32; signature int64)."""
    import numpy as np

    if path.endswith(".npy"):
        data = np.load(path, allow_pickle=False)
        if data.dtype.names:
            missing = {"x", "y", "z", "signature"} - set(data.dtype.names)
            if missing:
                raise SystemExit(f"{path}: fields {sorted(missing)} are missing")
            columns = [data[n] for n in ("x", "y", "z", "signature")]
        elif data.ndim == 2 and data.shape[1] == 4 and data.dtype.kind in "iu":
            columns = [data[:, i] for i in range(4)]
        else:
            raise SystemExit(f"{path}: expected fields x, y, z, signature or an N x 4 integer array")
    else:
        with open(path) as f:
            first = f.readline()
        header = any(c.isalpha() for c in first)
        data = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2, skiprows=1 if header else 0)
        if data.size and data.shape[1] != 4:
            raise SystemExit(f"{path}: expected 4 columns x,y,z,signature, found {data.shape[1]}")
        columns = [data[:, i] for i in range(4)] if data.size else [np.zeros(0, np.int64)] * 4
    for name, column in zip("xyz", columns[:3]):
        if column.size and (column.min() < 0 or column.max() >= 1 << 32):
            raise SystemExit(f"{path}: {name} must be within [0, 2^32)")
    records = np.empty(len(columns[0]), dtype=sigindex.record_dtype())
    for name, column in zip(("x", "y", "z", "signature"), columns):
        records[name] = column
    return records


def _groups(records, keys):
    """(key, records) for each distinct key, sorted by key."""
    import numpy as np

    if not len(records):
        return
    order = np.lexsort(keys[::-1])
    sorted_keys = [k[order] for k in keys]
    changes = np.flatnonzero(np.any([np.diff(k) != 0 for k in sorted_keys], axis=0)) + 1
    starts = np.concatenate(([0], changes))
    ends = np.concatenate((changes, [len(records)]))
    for start, end in zip(starts, ends):
        yield tuple(int(k[start]) for k in sorted_keys), records[order[start:end]]


def objects(dataset: str, records, block_size: int, masks=sigindex.DEFAULT_MASKS):
    """(path, bytes) of every block and index partition of `records`."""
    import numpy as np

    size = np.uint32(block_size)
    block_keys = [records["x"] // size, records["y"] // size, records["z"] // size]
    for (xb, yb, zb), group in _groups(records, block_keys):
        yield sigindex.block_path(dataset, xb, yb, zb), group.tobytes()
    for number, mask in enumerate(masks):
        parts = sigindex.fmix64_array(records["signature"] & np.int64(mask)) % np.uint64(sigindex.PARTITIONS)
        for (part,), group in _groups(records, [parts]):
            yield sigindex.index_path(dataset, number, part), group.tobytes()


def build(bucket_name: str, dataset: str, records, *, block_size: int = 256, progress: bool = True) -> dict:
    from tqdm import tqdm

    from common.storage import blobs

    started = time.perf_counter()
    bucket = blobs.bucket(bucket_name)
    old = {b.name for b in blobs.client().list_blobs(bucket, prefix=f"{dataset.lower()}/")}
    written: set[str] = set()

    def upload(path: str, data: bytes) -> str:
        bucket.blob(path).upload_from_string(data, content_type="application/octet-stream")
        return path

    with (
        ThreadPoolExecutor(UPLOAD_THREADS) as pool,
        tqdm(desc=f"{dataset}: blocks and index", unit="obj", disable=not progress, file=sys.stderr) as bar,
    ):
        futures = [pool.submit(upload, path, data) for path, data in objects(dataset, records, block_size)]
        bar.total = len(futures)
        for future in as_completed(futures):
            written.add(future.result())
            bar.update()
    # built_at: the signatures function serves them only to a dataset created before this build.
    info = {
        "block_size": block_size,
        "count": int(len(records)),
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(),
        **{f"ham_{i}": mask for i, mask in enumerate(sigindex.DEFAULT_MASKS)},
    }
    upload(sigindex.info_path(dataset), json.dumps(info).encode())
    written.add(sigindex.info_path(dataset))
    for stale in old - written:
        bucket.blob(stale).delete()
    return {"records": int(len(records)), "objects": len(written), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, help="dataset name (stored lower-cased)")
    parser.add_argument("--input", required=True, help="a .csv or .npy file of x, y, z, signature")
    parser.add_argument("--bucket", default=os.environ.get("SIG_BUCKET", "gatehouse-signatures"))
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    if not 100 <= args.block_size <= 1 << 16:
        parser.error("--block-size is between 100 and 65536")
    from common.names import is_dataset_name

    if not is_dataset_name(args.dataset):
        parser.error(f"--dataset {args.dataset!r} is not a dataset name (letters, digits, _ . -)")
    try:
        records = read_records(args.input)
    except OSError as exc:
        raise SystemExit(f"{args.input}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:  # numpy's parse errors: a malformed CSV or .npy
        raise SystemExit(
            f"{args.input}: not a file of x,y,z,signature records ({str(exc).splitlines()[0][:200]})"
        ) from None
    if len(records) == 0:
        raise SystemExit(f"{args.input}: no records")
    from google.api_core import exceptions as gexc

    try:
        stats = build(args.bucket, args.dataset, records, block_size=args.block_size, progress=not args.quiet)
    except gexc.NotFound:
        raise SystemExit(f"gs://{args.bucket} does not exist (set --bucket or SIG_BUCKET)") from None
    except gexc.GoogleAPICallError as exc:
        raise SystemExit(f"gs://{args.bucket}: the upload failed ({exc.code}: {exc.message[:200]})") from None
    print(
        f"{args.dataset}: {stats['records']} records, {stats['objects']} objects in gs://{args.bucket} "
        f"in {stats['seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
