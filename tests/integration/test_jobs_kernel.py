"""The kernel of background work (common/storage/jobs.py) against the Firestore emulator:
concurrent claims of one record, finishing only while held, settling what was abandoned.
Its decisions one by one: tests/unit/test_jobs_kernel.py."""

from __future__ import annotations

import datetime
import threading

from common import errors
from common.storage import jobs, store

LEASE = datetime.timedelta(seconds=60)
KIND = jobs.Kind(lease_ends=lambda record: record["lease_until"])


def _claim(ref) -> jobs.Claim:
    return jobs.claim(
        ref,
        KIND,
        start=lambda transaction, record, now: {"lease_until": now + LEASE},
        abandon=lambda record, now: {"status": "failed", "finished_at": now},
        max_attempts=2,
    )


def test_of_concurrent_claims_of_one_record_exactly_one_holds_it(test_env):
    ref = store.collection("kernel_work").document("one")
    ref.set({"status": "pending", "attempts": 0})
    outcomes: list[object] = []

    def claim() -> None:
        try:
            outcomes.append(_claim(ref).outcome)
        except errors.Unavailable as exc:  # gave up on contention: 503, the caller comes back later
            outcomes.append(exc.details["reason"])

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(jobs.Outcome.CLAIMED) == 1, outcomes
    assert set(outcomes) <= {jobs.Outcome.CLAIMED, jobs.Outcome.HELD, "contention"}, outcomes
    assert ref.get().to_dict()["attempts"] == 1


def test_a_late_holder_finishes_nothing_and_abandoned_work_is_settled(test_env):
    ref = store.collection("kernel_work").document("two")
    past = store.now() - 2 * LEASE
    ref.set({"status": "running", "attempts": 1, "lease_until": past})
    claimed = _claim(ref)  # its first holder vanished: attempt 2
    assert (claimed.outcome, claimed.attempt) == (jobs.Outcome.CLAIMED, 2)
    assert jobs.finish(ref, KIND, 1, {"status": "done"}) == (False, ref.get().to_dict())
    assert ref.get().get("status") == "running"
    # the second holder vanished too: it is settled (by a reader), and no longer finished by it
    ref.update({"lease_until": past})
    record = ref.get().to_dict()
    settled = jobs.settle(ref, KIND, record, lambda record, now: {"status": "failed", "error": "gone"})
    assert settled["status"] == "failed" and ref.get().to_dict() == settled
    assert jobs.finish(ref, KIND, 2, {"status": "done"}).held is False
    assert _claim(ref).outcome == jobs.Outcome.FINISHED
    assert jobs.finish(store.collection("kernel_work").document("none"), KIND, 1, {}) == (False, None)
