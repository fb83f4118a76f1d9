"""The kernel of background work (common/storage/jobs.py): its decisions, on a record in memory.
Against Firestore, with contention: tests/integration/test_jobs_kernel.py."""

from __future__ import annotations

import datetime

import pytest

from common.storage import jobs, store

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
LEASE = datetime.timedelta(seconds=60)


class _Snap:
    def __init__(self, doc, reference=None):
        self.exists, self._doc, self.reference = doc is not None, doc, reference

    def to_dict(self):
        return dict(self._doc) if self._doc is not None else None


class _Ref:
    """One document; `writes` counts the transactions' updates of it."""

    def __init__(self, doc=None):
        self.doc, self.writes = doc, 0
        self.path = f"work/{id(self)}"

    def get(self, transaction=None):
        return _Snap(self.doc, self)


class _Transaction:
    def get_all(self, refs):
        return (ref.get(transaction=self) for ref in reversed(refs))  # in no particular order

    def update(self, ref, change):
        ref.doc = {**ref.doc, **change}
        ref.writes += 1


@pytest.fixture(autouse=True)
def in_memory(monkeypatch):
    monkeypatch.setattr(store, "transactional", lambda fn: fn(_Transaction()))
    monkeypatch.setattr(store, "now", lambda: NOW)


KIND = jobs.Kind(lease_ends=lambda record: record.get("lease_until"))
START = {"start": lambda transaction, record, now: {"lease_until": now + LEASE}}


def _abandon(record, now):
    return {"status": "failed", "error": "abandoned", "finished_at": now}


def _claim(ref, kind=KIND, **options):
    return jobs.claim(ref, kind, **{**START, "abandon": _abandon, "max_attempts": 3, **options})


def _running(attempts, lease_until):
    return {"status": "running", "attempts": attempts, "lease_until": lease_until}


def test_a_claim_counts_an_attempt_and_takes_a_lease():
    ref = _Ref({"status": "pending", "attempts": 0, "what": "x"})
    claimed = _claim(ref)
    assert claimed == (jobs.Outcome.CLAIMED, ref.doc, 1)
    assert ref.doc == {"status": "running", "attempts": 1, "lease_until": NOW + LEASE, "what": "x"}


def test_work_held_within_its_lease_is_not_claimed_again():
    ref = _Ref(_running(1, NOW + datetime.timedelta(seconds=1)))
    assert _claim(ref).outcome == jobs.Outcome.HELD and ref.writes == 0


def test_work_whose_holder_vanished_is_claimed_again_until_its_attempts_are_used_up():
    ref = _Ref(_running(2, NOW))
    assert _claim(ref)[::2] == (jobs.Outcome.CLAIMED, 3)
    ref.doc["lease_until"] = NOW - LEASE
    abandoned = _claim(ref)
    assert abandoned.outcome == jobs.Outcome.ABANDONED and abandoned.record == ref.doc
    assert ref.doc == {**_running(3, NOW - LEASE), **_abandon(None, NOW)}


def test_single_use_work_is_abandoned_once_its_lease_runs_out():
    kind = jobs.Kind(lease_ends=lambda record: record["run"]["lease_until"], holder="run.id", attempts=None)
    ref = _Ref({"status": "running", "run": {"id": "r1", "lease_until": NOW}})
    assert _claim(ref, kind).outcome == jobs.Outcome.ABANDONED and ref.doc["status"] == "failed"
    queued = _Ref({"status": "queued", "run": {"id": "r2"}})
    start = {"start": lambda transaction, record, now: {"run": {"id": "r2", "lease_until": now + LEASE}}}
    assert _claim(queued, kind, **start)[::2] == (jobs.Outcome.CLAIMED, 1) and "attempts" not in queued.doc


def test_finished_gone_and_unclaimable_work_is_left_alone():
    done = _Ref({"status": "done", "attempts": 1})
    assert _claim(done) == (jobs.Outcome.FINISHED, done.doc, 0) and done.writes == 0
    assert _claim(_Ref()) == (jobs.Outcome.GONE, None, 0)
    other = _Ref({"status": "pending", "attempts": 0, "owner": "b"})
    assert _claim(other, claimable=lambda r: r["owner"] == "a").outcome == jobs.Outcome.FINISHED
    assert other.writes == 0


def test_a_start_that_ends_the_work_is_no_claim():
    ref = _Ref({"status": "pending", "attempts": 0})
    refused = _claim(ref, start=lambda transaction, record, now: {"status": "failed", "error": "refused"})
    assert refused.outcome == jobs.Outcome.FINISHED and ref.doc["status"] == "failed"


def test_only_the_holder_finishes_the_work():
    ref = _Ref(_running(2, NOW + LEASE))
    late = jobs.finish(ref, KIND, 1, {"status": "done"})
    assert late == (False, _running(2, NOW + LEASE)) and ref.writes == 0
    assert jobs.finish(ref, KIND, 2, {"status": "done"}) == (
        True,
        {**_running(2, NOW + LEASE), "status": "done"},
    )
    assert jobs.finish(ref, KIND, 2, {"status": "failed"}).held is False  # finished already
    assert jobs.finish(_Ref(), KIND, 2, {"status": "done"}) == (False, None)


def test_work_is_settled_only_past_its_lease_and_grace_and_while_the_same_holder_holds_it():
    record = _running(1, NOW - datetime.timedelta(seconds=30))
    ref = _Ref(dict(record))
    assert jobs.settle(ref, KIND, record, _abandon, grace=60) == record and ref.writes == 0
    ref.doc = _running(2, NOW + LEASE)  # claimed again since it was read
    assert jobs.settle(ref, KIND, record, _abandon) == ref.doc and ref.writes == 0
    ref.doc = dict(record)
    assert jobs.settle(ref, KIND, record, _abandon) == {**record, **_abandon(record, NOW)} == ref.doc
    pending = {"status": "pending", "attempts": 0}
    assert jobs.settle(_Ref(pending), KIND, pending, _abandon) == pending


def test_the_lease_of_work_that_is_not_claimed_is_never_read():
    kind = jobs.Kind(lease_ends=lambda record: record["lease_until"])  # only claimed work has one
    pending = {"status": "pending", "attempts": 0}
    assert jobs.settle(_Ref(pending), kind, pending, _abandon) == pending
    assert not kind.expired({"status": "done"}, NOW)


def test_claim_all_decides_for_each_piece_in_one_transaction(monkeypatch):
    """The pieces of one job claimed together: each its own decision, claim and attempt count."""
    transactions = []
    pieces = [
        _Ref({"status": "pending", "attempts": 0}),
        _Ref(_running(1, NOW + LEASE)),  # held
        _Ref({"status": "done", "attempts": 1}),
        _Ref(),  # gone
        _Ref(_running(3, NOW - LEASE)),  # its holder vanished with its last attempt
        _Ref(_running(1, NOW - LEASE)),  # its holder vanished: claimed again
    ]

    def once(fn):
        transactions.append(fn)
        return fn(_Transaction())

    monkeypatch.setattr(store, "transactional", once)
    claims = jobs.claim_all(pieces, KIND, **START, abandon=_abandon, max_attempts=3)
    assert len(transactions) == 1
    assert [c.outcome for c in claims] == [
        jobs.Outcome.CLAIMED,
        jobs.Outcome.HELD,
        jobs.Outcome.FINISHED,
        jobs.Outcome.GONE,
        jobs.Outcome.ABANDONED,
        jobs.Outcome.CLAIMED,
    ]
    assert [c.attempt for c in claims] == [1, 0, 0, 0, 0, 2]
    assert [p.writes for p in pieces] == [1, 0, 0, 0, 1, 1]
    assert pieces[0].doc == {"status": "running", "attempts": 1, "lease_until": NOW + LEASE}
    assert pieces[4].doc["status"] == "failed"
