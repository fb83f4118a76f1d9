"""At-least-once background work kept in Firestore (transfer parts, twin jobs, approval runs).

Pub/Sub delivers a message at least once and a worker may stop half way, so each piece of work
is a record with a status, and a worker:
- `claim`s it in a transaction before doing it: nothing to do when the work is finished or gone;
  HELD while another holder's lease runs; a holder that vanished past its lease is replaced (an
  attempt more), unless the work's attempts are used up: then it is ABANDONED (it ends failed);
- `finish`es it (writes the outcome) only if it still holds the claim: a late holder changes
  nothing;
- `settle`s work whose holder vanished and that nobody will come back to (read by a caller).
Transactions are store.transactional's: contention is retried for a while, then 503.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from enum import StrEnum
from typing import Any, NamedTuple

from common.storage import store

Record = dict[str, Any]


class Status(StrEnum):
    """The statuses of a piece of work, as stored and answered: PENDING -> RUNNING -> DONE | FAILED
    (a kind of work may name its RUNNING status otherwise, or have more)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


FINISHED = (Status.DONE, Status.FAILED)


@dataclasses.dataclass(frozen=True)
class Kind:
    """How one kind of work keeps its claim in its record."""

    lease_ends: Callable[[Record], datetime.datetime | None]  # when the holder's claim runs out
    running: str = Status.RUNNING  # the status of claimed work
    holder: str = "attempts"  # the field (a dotted path) each claim changes: who holds the work
    attempts: str | None = "attempts"  # the count of claims; None: single use (never claimed again)
    finished: tuple[str, ...] = FINISHED

    def holder_of(self, record: Record) -> Any:
        value: Any = record
        for name in self.holder.split("."):
            value = (value or {}).get(name)
        return value

    def holds(self, record: Record, holder: Any) -> bool:
        """Whether `holder` holds the work (`record` as stored now)."""
        return record["status"] == self.running and self.holder_of(record) == holder

    def expired(self, record: Record, now: datetime.datetime, grace: float = 0) -> bool:
        """Whether the record is claimed and its lease ran out `grace` seconds ago or more."""
        if record["status"] != self.running:
            return False
        ends = self.lease_ends(record)
        return ends is None or now >= ends + datetime.timedelta(seconds=grace)


class Outcome(StrEnum):
    CLAIMED = "claimed"  # this holder has the work now
    HELD = "held"  # another holder's lease runs: try again later
    ABANDONED = "abandoned"  # its holder vanished with its last attempt: ended now, as `abandon` says
    FINISHED = "finished"  # over already, or not this claim's work (ended now, if `start` said so)
    GONE = "gone"  # no such record


class Claim(NamedTuple):
    outcome: Outcome
    record: Record | None  # as stored after the claim
    attempt: int = 0  # this holder's attempt (1 for the first)


def claim(
    ref,
    kind: Kind,
    *,
    start: Callable[[Any, Record, datetime.datetime], Record],
    abandon: Callable[[Record, datetime.datetime], Record],
    max_attempts: int = 1,
    claimable: Callable[[Record], bool] = lambda record: True,
) -> Claim:
    """Claim the work at `ref` for one attempt, in a transaction. `start(transaction, record, now)`
    returns the fields written with the claim besides the status and attempt count (the lease);
    if it sets a finished status, the work ends instead (e.g. refused). `abandon(record, now)`:
    what the work becomes when its holder vanished with its last attempt. Work that is not
    `claimable` (someone else's) counts as finished."""

    return store.transactional(
        lambda transaction: _claim_read(
            transaction, ref, ref.get(transaction=transaction), kind, start, abandon, max_attempts, claimable
        )
    )


def claim_all(
    refs: list[Any],
    kind: Kind,
    *,
    start: Callable[[Any, Record, datetime.datetime], Record],
    abandon: Callable[[Record, datetime.datetime], Record],
    max_attempts: int = 1,
    claimable: Callable[[Record], bool] = lambda record: True,
) -> list[Claim]:
    """`claim` each of `refs` (pieces of one job), in one transaction: one read of them all and
    one commit instead of a transaction each. Each keeps its own claim and attempt count."""

    def attempt(transaction) -> list[Claim]:
        snaps = {snap.reference.path: snap for snap in transaction.get_all(refs)}
        return [
            _claim_read(transaction, ref, snaps[ref.path], kind, start, abandon, max_attempts, claimable)
            for ref in refs
        ]

    return store.transactional(attempt)


def _claim_read(transaction, ref, snap, kind: Kind, start, abandon, max_attempts: int, claimable) -> Claim:
    """`claim`'s decision on the work as read (`snap`), written in `transaction`."""
    if not snap.exists:
        return Claim(Outcome.GONE, None)
    record = snap.to_dict()
    if record["status"] in kind.finished or not claimable(record):
        return Claim(Outcome.FINISHED, record)
    now = store.now()
    if record["status"] == kind.running:
        if not kind.expired(record, now):
            return Claim(Outcome.HELD, record)
        if kind.attempts is None or record[kind.attempts] >= max_attempts:
            change = abandon(record, now)
            transaction.update(ref, change)
            return Claim(Outcome.ABANDONED, {**record, **change})
    change = {"status": kind.running}
    count = 1
    if kind.attempts is not None:
        count = change[kind.attempts] = record[kind.attempts] + 1
    change.update(start(transaction, record, now))
    transaction.update(ref, change)
    outcome = Outcome.FINISHED if change["status"] in kind.finished else Outcome.CLAIMED
    return Claim(outcome, {**record, **change}, count)


class Finished(NamedTuple):
    held: bool  # whether this holder still held the work, so `change` was written
    record: Record | None  # as stored now (None: no such record)


def finish(ref, kind: Kind, holder: Any, change: Record) -> Finished:
    """Write `change` (the attempt's outcome) if `holder` still holds the work at `ref`."""

    def write(transaction) -> Finished:
        snap = ref.get(transaction=transaction)
        current = snap.to_dict() if snap.exists else None
        if current is None or not kind.holds(current, holder):
            return Finished(False, current)
        transaction.update(ref, change)
        return Finished(True, {**current, **change})

    return store.transactional(write)


def settle(
    ref,
    kind: Kind,
    record: Record,
    abandon: Callable[[Record, datetime.datetime], Record],
    *,
    grace: float = 0,
) -> Record:
    """The work as read (`record`), or, when its holder's lease ran out `grace` seconds ago or
    more, as ended by `abandon(record, now)` (in a transaction, if the same holder still holds it)."""
    if not kind.expired(record, store.now(), grace) or kind.lease_ends(record) is None:
        return record

    def write(transaction) -> Record:
        snap = ref.get(transaction=transaction)
        current = snap.to_dict() if snap.exists else None
        if current is None or not kind.holds(current, kind.holder_of(record)):
            return current or record  # settled or claimed again meanwhile, or gone
        change = abandon(current, store.now())
        transaction.update(ref, change)
        return {**current, **change}

    return store.transactional(write)
