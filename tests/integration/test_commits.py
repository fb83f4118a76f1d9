"""Writes at the wire (common/storage/commits.py) against the emulator: what they store is what
the client's `batch.set` stores, for every kind of value; commits run several at once and
report each one's outcome."""

from __future__ import annotations

import datetime
import threading
import time

import pytest
from google.api_core import exceptions
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.firestore_v1 import GeoPoint

from common.storage import commits, deadlines, store

INT64 = (-(2**63), 2**63 - 1)
UTC = datetime.UTC


def _values() -> dict:
    """A field of each kind of value Firestore holds, at its edges."""
    ref = store.collection("commits_other").document("target")
    return {
        "null": None,
        "true": True,
        "false": False,
        "zero": 0,
        "int_min": INT64[0],
        "int_max": INT64[1],
        "negative": -7,
        "double": 1.5,
        "minus_zero": -0.0,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "inf": float("inf"),
        "minus_inf": float("-inf"),
        "nan": float("nan"),
        "aware": datetime.datetime(2026, 12, 3, 16, 17, 33, 123456, tzinfo=UTC),
        "other_zone": datetime.datetime(
            2026, 12, 3, 16, 17, 33, 654321, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))
        ),
        "naive": datetime.datetime(2001, 2, 3, 4, 5, 6, 7),
        "before_epoch": datetime.datetime(1901, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        "nanoseconds": DatetimeWithNanoseconds(2020, 1, 2, 3, 4, 5, nanosecond=123456789, tzinfo=UTC),
        "string": "Zoë 🌍 \u0000 line\nbreak",
        "empty_string": "",
        "bytes": bytes(range(256)),
        "empty_bytes": b"",
        "reference": ref,
        "geo": GeoPoint(-33.8688, 151.2093),
        "array": [1, "two", 3.0, None, {"four": [5]}, b"six", GeoPoint(0, 0)],
        "tuple": (1, 2),
        "empty_array": [],
        "map": {"a": 1, "b": {"c": [True, {"d": b"x"}]}, "dotted.key": 1, "`quoted`": 2},
        "empty_map": {},
        "deep": {"l1": {"l2": {"l3": {"l4": {"l5": [{"l6": ["bottom"]}]}}}}},
        "unicode key é": "value",
    }


def _name(ref) -> str:
    return commits.document_name(*ref._path)  # noqa: SLF001


def _same(a, b) -> bool:
    """Equal, with NaN equal to NaN and -0.0 told from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (a != a and b != b) or (a == b and str(a) == str(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    if hasattr(a, "_document_path"):
        return a._document_path == b._document_path
    return a == b


def test_a_document_stored_by_commits_is_the_one_batch_set_stores(test_env):
    coll = store.collection("commits_kinds")
    data = _values()
    batch = store.db().batch()
    batch.set(coll.document("by_wire"), data)
    [by_library] = batch._write_pbs  # noqa: SLF001  # the client's own encoding of the same write
    by_commits = commits.set_write(_name(coll.document("by_wire")), data)
    assert by_commits.SerializeToString(deterministic=True) == type(by_library).pb(
        by_library
    ).SerializeToString(deterministic=True)

    batch = store.db().batch()
    batch.set(coll.document("by_client"), data)
    batch.commit()
    commits.commit([by_commits])
    by_client, by_wire = coll.document("by_client").get(), coll.document("by_wire").get()
    assert by_client._data.keys() == set(data)  # noqa: SLF001  # every kind was stored
    client_fields, wire_fields = by_client.to_dict(), by_wire.to_dict()
    for name in data:
        assert _same(wire_fields[name], client_fields[name]), name
    assert wire_fields["nanoseconds"].microsecond == 123456  # stored to the microsecond
    assert wire_fields["aware"].microsecond == 123456
    assert wire_fields["int_min"] == INT64[0] and wire_fields["int_max"] == INT64[1]
    assert str(wire_fields["minus_zero"]) == "-0.0"


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_an_integer_beyond_int64_is_refused_as_by_the_client(test_env, value):
    ref = store.collection("commits_kinds").document("big")
    with pytest.raises(ValueError):
        store.db().batch().set(ref, {"n": value})
    with pytest.raises(ValueError):
        commits.set_write(_name(ref), {"n": value})


def test_what_the_client_refuses_commits_refuses(test_env):
    ref = store.collection("commits_kinds").document("x")
    with pytest.raises(TypeError):
        commits.set_write(_name(ref), {"f": object()})
    for data in ({"": 1}, {"m": {"": 1}}):
        with pytest.raises(ValueError):
            store.db().batch().set(ref, data)
        with pytest.raises(ValueError):
            commits.set_write(_name(ref), data)


def test_create_delete_and_the_response(test_env):
    coll = store.collection("commits_ops")
    response = commits.commit(
        [
            commits.set_write(_name(coll.document("a")), {"n": 1}, create=True),
            commits.set_write(_name(coll.document("b")), {}),
        ]
    )
    assert len(response.write_results) == 2 and response.commit_time.seconds > 0
    with pytest.raises(exceptions.AlreadyExists):  # create: only where there is none
        commits.commit([commits.set_write(_name(coll.document("a")), {"n": 2}, create=True)])
    assert coll.document("a").get().to_dict() == {"n": 1}
    commits.commit([commits.delete_write(_name(coll.document("a")))])
    assert not coll.document("a").get().exists and coll.document("b").get().to_dict() == {}
    with pytest.raises(ValueError):
        commits.commit([commits.delete_write(_name(coll.document("a")))] * (store.MAX_WRITES_PER_COMMIT + 1))


def test_names_and_ids_are_the_clients(test_env):
    ref = store.collection("a").document("b").collection("c").document("d")
    assert commits.document_name("a", "b", "c", "d") == ref._document_path  # noqa: SLF001
    ids = {commits.auto_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 20 and i.isalnum() and store.valid_id(i) for i in ids)


def test_the_client_internals_a_commit_uses_are_there(test_env):
    """commits reads the client's private generated API and metadata (the version is pinned):
    a new version that moved them fails here, not in production."""
    from google.cloud.firestore_v1.services.firestore import FirestoreClient

    client = store.db()
    assert isinstance(client._firestore_api, FirestoreClient)
    assert client._database_string == f"projects/{client.project}/databases/(default)"
    assert ("google-cloud-resource-prefix", client._database_string) in client._rpc_metadata


def test_commits_run_concurrently_in_the_request_budget_and_report_each_outcome(test_env):
    coll = store.collection("commits_concurrent")
    in_flight, most, lock = [0], [0], threading.Lock()
    budgets: list[float] = []

    def job(i: int):
        def run():
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            budgets.append(deadlines.remaining())
            time.sleep(0.2)
            with lock:
                in_flight[0] -= 1
            if i == 1:
                raise exceptions.ServiceUnavailable("chunk 1 failed")
            commits.commit([commits.set_write(_name(coll.document(str(i))), {"i": i})])

        return run

    with deadlines.request_budget(10):
        outcomes = commits.concurrently([job(i) for i in range(6)])
    assert most[0] == commits.CONCURRENT_COMMITS
    assert all(b <= 10 for b in budgets)  # each ran in the request's budget
    assert [o is None for o in outcomes[:4]] == [True, False, True, True]  # in flight together
    assert all(isinstance(o, exceptions.ServiceUnavailable) for o in outcomes[4:])  # never started
    assert sorted(s.id for s in coll.stream()) == ["0", "2", "3"]
