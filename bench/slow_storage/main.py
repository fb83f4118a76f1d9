"""The signatures function with each object read from Cloud Storage BENCH_BLOB_DELAY_MS (20)
slower, for bench/signatures.py: real Cloud Storage takes tens of ms per small GET, the emulator
about one. The delay is added here, by the bench, around the function's one read of one object;
production code knows nothing of it."""

import os
import time

from functions.signatures import main as signatures

DELAY_SECONDS = float(os.environ.get("BENCH_BLOB_DELAY_MS", "20")) / 1000
_read = signatures._read


def _slow_read(path: str) -> bytes | None:
    time.sleep(DELAY_SECONDS)
    return _read(path)


signatures._read = _slow_read
handle = signatures.handle
