"""Reads at the wire (common/storage/wire.py) give what the Firestore client gives: every kind of
stored value decodes as `DocumentSnapshot.to_dict()` decodes it, and queries keep their order,
cursors and limits."""

from __future__ import annotations

import datetime
import math

import pytest

from common.storage import store, wire

INT64 = 2**63


def _same(a, b) -> bool:
    """Equal, of the same types, -0.0 and NaN included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime.datetime):
        # to_dict()'s deep copy drops DatetimeWithNanoseconds' nanoseconds (a copy of a datetime
        # keeps only its microseconds); the wire keeps them: equal times, to the microsecond.
        return a == b and a.tzinfo == b.tzinfo
    if type(a).__name__ == "DocumentReference":
        return a.path == b.path and a._client is b._client
    return a == b


def _every_kind() -> dict:
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds
    from google.cloud.firestore import GeoPoint

    return {
        "null": None,
        "true": True,
        "false": False,
        "int_min": -INT64,
        "int_max": INT64 - 1,
        "int_zero": 0,
        "double": 1.5,
        "negative_zero": -0.0,
        "nan": math.nan,
        "inf": math.inf,
        "minus_inf": -math.inf,
        "timestamp": DatetimeWithNanoseconds(
            2024, 2, 29, 23, 59, 59, nanosecond=123456789, tzinfo=datetime.UTC
        ),
        "epoch": datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC),
        "string": "héllo ✓",
        "empty_string": "",
        "bytes": b"\x00\xffbytes",
        "reference": store.collection("elsewhere").document("doc"),
        "geo": GeoPoint(-33.5, 151.25),
        "array": [1, "two", 3.0, None, {"inner": [4, {"five": [5]}]}, {"six": 6}],  # no array in an array
        "empty_array": [],
        "map": {"a": {"b": {"c": [1, {"d": True}]}}, "e": -1},
        "empty_map": {},
    }


def test_every_value_kind_decodes_as_to_dict_does(test_env):
    ref = store.collection("wire_kinds").document("one")
    ref.set(_every_kind())
    snap = ref.get()
    expected = snap.to_dict()
    (queried,) = list(store.stream(store.collection("wire_kinds")))
    (fetched,) = list(store.get_all([ref]))
    for doc in (queried, fetched):
        got = doc.to_dict()
        assert got.keys() == expected.keys()
        for name in expected:
            assert _same(got[name], expected[name]), name
        assert got["timestamp"].nanosecond == 123456000  # what the emulator keeps of it
        for time in ("create_time", "update_time"):  # the same type: a precondition sends it back
            assert getattr(doc, time) == getattr(snap, time)
            assert type(getattr(doc, time)) is type(getattr(snap, time))
            assert getattr(doc, time).nanosecond == getattr(snap, time).nanosecond
        assert doc.id == "one" and doc.exists and doc.reference.path == ref.path
        assert doc.get("map.a.b") == {"c": [1, {"d": True}]}
        with pytest.raises(KeyError):
            doc.get("absent")


def test_batched_gets_say_which_documents_are_missing(test_env):
    coll = store.collection("wire_gets")
    coll.document("a").set({"n": 1})
    docs = {d.id: d for d in store.get_all([coll.document("a"), coll.document("b"), coll.document("a")])}
    assert set(docs) == {"a", "b"}
    assert docs["a"].exists and docs["a"].to_dict() == {"n": 1}
    assert not docs["b"].exists and docs["b"].to_dict() is None
    assert list(store.get_all([])) == []


def test_queries_keep_their_order_filters_cursors_and_limits(test_env):
    from google.cloud.firestore import Query
    from google.cloud.firestore_v1.base_query import FieldFilter

    coll = store.collection("wire_query")
    batch = store.db().batch()
    for i in range(25):
        batch.set(coll.document(f"d{i:02}"), {"n": i, "even": i % 2 == 0, "sub": {"k": -i}})
    batch.commit()
    coll.document("d00").collection("nested").document("x").set({"n": 99})  # not in coll's queries

    queries = [
        coll,
        coll.order_by("n", direction=Query.DESCENDING).limit(7),
        coll.where(filter=FieldFilter("even", "==", True)).order_by("n").start_after({"n": 10}),
        coll.order_by("sub.k").limit(3),
        coll.select([]).order_by("__name__").start_after({"__name__": "d20"}),
    ]
    for query in queries:
        expected = [(s.id, s.to_dict()) for s in query.stream()]
        assert [(d.id, d.to_dict()) for d in store.stream(query)] == expected
        assert expected

    page = store.page_by_id([coll.where(filter=FieldFilter("even", "==", False))], limit=5, cursor=None)
    first = [d.id for d in page]
    assert first == ["d01", "d03", "d05", "d07", "d09"]
    after = store.page_by_id(
        [coll.where(filter=FieldFilter("even", "==", False))], limit=5, cursor=page.next_cursor()
    )
    assert [d.id for d in after] == ["d11", "d13", "d15", "d17", "d19"]
    paged = store.page(coll.order_by("n"), coll, limit=4, cursor=store.encode_cursor("d21"))
    assert [d.id for d in paged] == ["d22", "d23", "d24"] and paged.next_cursor() is None


def test_reads_get_the_requests_deadline(test_env):
    """On the client's own channel: the budget of common.storage.deadlines bounds them."""
    import time

    from common.storage import clients, deadlines

    coll = store.collection("wire_deadline")
    with deadlines.request_budget(0.01):
        time.sleep(0.02)
        with pytest.raises(clients.OutOfTime):
            list(store.stream(coll))
        with pytest.raises(clients.OutOfTime):
            list(store.get_all([coll.document("a")]))


def test_the_private_parts_of_the_client_wire_relies_on(test_env):
    """What wire.py uses of google-cloud-firestore beyond its public surface (pinned in
    requirements.txt): a new version that changes one fails here."""
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    client = store.db()
    assert isinstance(client._firestore_api, FirestoreClient)
    assert client._database_string == f"projects/{client.project}/databases/(default)"
    assert ("google-cloud-resource-prefix", client._database_string) in client._rpc_metadata
    query = store.collection("wire_private").limit(1)
    assert query._parent._parent_info()[0] == f"{client._database_string}/documents"
    assert query._to_protobuf().limit == 1 and query._limit == 1  # _limit: what a resumed stream has left
    assert store.collection("wire_private")._query()._to_protobuf().from_[0].collection_id == "wire_private"
    doc = wire.Doc(client, f"{client._database_string}/documents/wire_private/b", {"n": 1})
    assert doc.snapshot().reference.path == "wire_private/b"
    assert store.collection("wire_private").order_by("n").start_after(doc.snapshot())._to_protobuf().start_at


def test_a_stream_broken_by_a_retryable_error_goes_on_after_the_last_document(test_env, monkeypatch):
    from google.api_core import exceptions

    coll = store.collection("wire_resume")
    batch = store.db().batch()
    for i in range(6):
        batch.set(coll.document(f"d{i}"), {"n": i})
    batch.commit()
    run, calls = wire._run, []

    def broken_once(client, query):
        calls.append(query)
        responses = run(client, query)
        if len(calls) > 1:
            return responses

        def two_then_fail():
            yield next(responses)
            yield next(responses)
            raise exceptions.ServiceUnavailable("the stream broke")

        return two_then_fail()

    monkeypatch.setattr(wire, "_run", broken_once)
    assert [d.id for d in store.stream(coll.order_by("n"))] == [f"d{i}" for i in range(6)]
    assert len(calls) == 2
    # A limited query (and one with an offset) yields no more than it would unbroken.
    calls.clear()
    assert [d.id for d in store.stream(coll.order_by("n").offset(1).limit(4))] == ["d1", "d2", "d3", "d4"]
    assert len(calls) == 2

    def broken(error):
        def responses(client, query):
            raise error
            yield

        return responses

    monkeypatch.setattr(wire, "_run", broken(exceptions.InternalServerError("down")))
    with pytest.raises(exceptions.InternalServerError):  # resumed RESUMES times, then given up
        list(store.stream(coll))
    monkeypatch.setattr(wire, "_run", broken(exceptions.PermissionDenied("no")))
    with pytest.raises(exceptions.PermissionDenied):  # not resumed
        list(store.stream(coll))
