"""signatures without a store: the hash the index is keyed by, and the builder's input files.
The index itself, atlocation and likelocation: tests/integration/test_signatures.py."""

import numpy as np
import pytest

from common.catalog import sigindex
from tools import build_signatures


def test_fmix64_is_murmur3s_finalizer():
    assert sigindex.fmix64(0) == 0
    assert sigindex.fmix64(1) == 0xB456BCFC34C2CB2C  # MurmurHash3's published fmix64(1)
    values = np.array([1, -1, 2**62, -(2**63), 123456789], dtype=np.int64)
    assert [int(v) for v in sigindex.fmix64_array(values)] == [sigindex.fmix64(int(v)) for v in values]
    masks = [m & sigindex.U64 for m in sigindex.DEFAULT_MASKS]
    assert (
        sum(bin(m).count("1") for m in masks) == 64
        and masks[0] | masks[1] | masks[2] | masks[3] == sigindex.U64
    )


def test_builder_reads_csv_and_npy(tmp_path):
    rows = [(1, 2, 3, -(2**63)), (4, 5, 6, 2**63 - 1), (7, 8, 9, 0)]
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,z,signature\n" + "".join(f"{x},{y},{z},{s}\n" for x, y, z, s in rows))
    npy = tmp_path / "points.npy"
    np.save(npy, np.array(rows, dtype=np.int64))
    structured = tmp_path / "structured.npy"
    np.save(structured, np.array(rows, dtype=sigindex.record_dtype()))
    for path in (csv, npy, structured):
        loaded = build_signatures.read_records(str(path))
        assert [tuple(int(v) for v in r) for r in loaded] == rows
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    with pytest.raises(SystemExit):
        build_signatures.read_records(str(bad))
    negative = tmp_path / "negative.csv"
    negative.write_text("-1,2,3,4\n")
    with pytest.raises(SystemExit):
        build_signatures.read_records(str(negative))
