"""One call of a twin endpoint (SPEC §3 twins), the one path every run takes.

resolve (the endpoint, the side this caller may run) -> invoke: check the arguments, count the
call against the rate limit, run the side's code in a sandbox worker, record the call, and
answer with what this caller may see (errors masked for non-owners). A request from the HTTP
route and a queued job both go through `resolve` and `invoke`; a job stores the `Answer`. The
HTTP routes hold one of the caller's slots on the instance (`running`) while they answer.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import queue
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from common import errors
from common.cache import TTLCache
from common.config import settings
from common.logs import log
from common.storage import collections, datasets, deadlines, store
from functions.twins import ratelimit, sandbox, source
from functions.twins.state import FirestoreState

PATH = r"^[a-z][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$"
RESERVED_PATHS = frozenset({"requests", "jobs"})  # the function's own routes
OUTPUT_LIMIT = 64 << 10  # per captured stream in a call record

# The error codes of SPEC §1 by status, for a PublicError's status.
_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


def valid_path(path: str) -> bool:
    return bool(re.fullmatch(PATH, path)) and path not in RESERVED_PATHS


@dataclass
class Endpoint:
    """A stored endpoint definition (`twins/{path}`)."""

    path: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def dataset(self) -> str | None:
        return self.doc.get("dataset")

    @property
    def generation(self) -> str | None:
        """The endpoint's own id, new each time an endpoint is made at its path (None for one made
        before): its call records and jobs are bound to it, so a path reused shows none of them."""
        return self.doc.get("generation")

    def side(self, name: str) -> dict[str, Any]:
        return self.doc["sides"][name]

    def live(self) -> bool:
        """An endpoint lives as long as the dataset it was made on: once that dataset is deleted
        it is gone (also when a dataset of the same name is made again), before the purge
        (functions/datasets/purge.py) has reclaimed it."""
        if self.dataset is None:
            return True
        return dataset_lives(self.dataset, self.doc.get("dataset_generation"), self.doc.get("created_at"))

    def owned_by(self, caller) -> bool:
        """Owners (admins, `manage` on the endpoint's dataset) run the private side and see errors."""
        return caller.is_admin or bool(self.dataset and caller.can_manage(self.dataset))

    def visible_to(self, caller) -> bool:
        if not datasets.exposed("twin", self.path) or not self.live():
            return False
        return self.dataset is None or caller.can_read(self.dataset)


def dataset_lives(name: str, generation: str | None, made_at: Any) -> bool:
    """Whether dataset `name` is still the dataset a twin thing was made on: the one of
    `generation` (for a thing made before generations were recorded, one created no later than
    `made_at`). A dataset this deployment does not serve (EXPOSE) is not judged here: what it
    holds is hidden where it is read."""
    if not datasets.exposed("dataset", name):
        return True
    record = datasets.record(name)
    if record is None:
        return False
    if generation is not None:
        return datasets.generation(record) == generation
    created = record.get("created_at")
    return made_at is None or created is None or created <= made_at


# Definitions are kept per instance for a few seconds, which saves a Firestore read on every
# call; the instance that changes one forgets it at once, the others within this time.
DEFINITION_CACHE_SECONDS = 5.0
_definitions: TTLCache[str, Endpoint | None] = TTLCache(DEFINITION_CACHE_SECONDS, 1000)


def _read(path: str) -> Endpoint | None:
    snap = store.collection(collections.TWINS).document(path).get()
    return Endpoint(path, snap.to_dict()) if snap.exists else None


def load(path: str) -> Endpoint | None:
    """The endpoint at `path`; None when there is none, or its dataset was deleted."""
    if not valid_path(path):
        return None
    endpoint = _definitions.load(path, _read)
    return endpoint if endpoint is not None and endpoint.live() else None


def forget(path: str) -> None:
    """Drop the cached definition of `path`: it was just changed."""
    _definitions.pop(path)


def resolve(caller, path: str, side: str | None = None) -> tuple[Endpoint, str]:
    """The endpoint and the side `caller` runs: `side` None is the default side (private for
    owners, mock for everyone else; a public endpoint's one side). 404 when the caller may not
    see the endpoint; 403 for the private side of a non-owner."""
    endpoint = load(path)
    if endpoint is None or not endpoint.visible_to(caller):
        raise errors.NotFound(f"twin endpoint {path!r} not found")
    if endpoint.kind == "public":
        if side is not None:
            raise errors.NotFound(f"{path!r} is a public endpoint with one side: call POST /twins/{path}")
        return endpoint, "public"
    if side is None:
        side = "private" if endpoint.owned_by(caller) else "mock"
    if side == "private" and not endpoint.owned_by(caller):
        raise errors.Forbidden("the private side needs admin or manage on the endpoint's dataset")
    return endpoint, side


@dataclass
class Answer:
    """What the caller gets: an HTTP status and body (`{"result"}` or the error envelope's fields)."""

    status: int
    body: dict[str, Any]
    reference: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200


def user_of(caller, endpoint: Endpoint) -> dict[str, Any]:
    """`context.user`: the caller's email and roles (global ones, and those on the endpoint's dataset)."""
    roles = set(caller.global_roles) | ({"admin"} if caller.is_admin else set())
    if endpoint.dataset:
        roles |= set(caller.roles_on(endpoint.dataset))
    return {"email": caller.email, "roles": sorted(roles)}


def check_arguments(endpoint: Endpoint, args: dict[str, Any]) -> None:
    definition = source.Definition(
        name=endpoint.side(_any_side(endpoint))["name"], parameters=endpoint.doc["parameters"]
    )
    problems = source.check_arguments(definition, args)
    if problems:
        raise errors.ValidationFailed(
            "the arguments do not match the endpoint's parameters", details=problems
        )


def _any_side(endpoint: Endpoint) -> str:
    return "public" if endpoint.kind == "public" else "mock"


def admit(endpoint: Endpoint, caller, args: dict[str, Any]) -> None:
    """What a call must pass before it runs (or is queued): 422 for arguments that do not match
    the parameters, 429 past the caller's rate limit: the endpoint's, or TWIN_DEFAULT_RATE_LIMIT
    when it sets none (admins are exempt)."""
    check_arguments(endpoint, args)
    if caller.is_admin:
        return
    limit = endpoint.doc.get("rate_limit")
    calls, per_seconds = (
        (limit["calls"], limit["per_seconds"]) if limit else (settings().twin_default_rate_limit or (0, 0))
    )
    if calls:
        ratelimit.take(f"twin:{endpoint.path}", caller.email, calls, per_seconds)


class _Running:
    """The twin calls and request runs in progress on this instance, per caller: one caller
    cannot take every worker of an instance while others wait (TWIN_CALLS_PER_CALLER). Per
    instance on purpose: it guards this instance's workers, costs no backend call, and the rate
    limits are what count across instances."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    @contextlib.contextmanager
    def slot(self, email: str) -> Iterator[None]:
        limit = settings().twin_calls_per_caller
        with self._lock:
            if self._counts.get(email, 0) >= limit:
                raise errors.RateLimited(
                    f"at most {limit} twin calls of one caller run at once on an instance; "
                    "try again when one of yours has finished",
                    retry_after=1,
                    details={"reason": "concurrency", "limit": limit},
                )
            self._counts[email] = self._counts.get(email, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._counts[email] -= 1
                if not self._counts[email]:
                    del self._counts[email]


_running = _Running()


def running(caller) -> contextlib.AbstractContextManager[None]:
    """Hold one of the caller's TWIN_CALLS_PER_CALLER slots on this instance while a call or a
    request run is answered (429 with Retry-After when all are taken; admins too: the slots
    guard the instance, not data). The endpoint calls a request's code makes are part of its run."""
    return _running.slot(caller.email)


def invoke(
    endpoint: Endpoint,
    side: str,
    caller,
    args: dict[str, Any],
    request_id: str,
    *,
    origin: str | None = None,
    rate_limited: bool = True,
) -> Answer:
    """Run `side` of `endpoint` for `caller` (already resolved and authorized) with `args`.
    Raises 422 (arguments) and 429 (rate limit, unless `rate_limited` is off: the call was
    admitted when it was queued, or its owners approved it) before anything runs; otherwise
    answers. `origin` (`job:<id>`, `request:<id>`) goes into the call record."""

    if rate_limited:
        admit(endpoint, caller, args)
    else:
        check_arguments(endpoint, args)
    spec = endpoint.side(side)
    # Owners' private calls and approved runs' calls have workers of their own: callers' mock
    # traffic never queues them.
    lane = "owners" if side == "private" or (origin or "").startswith("request:") else "callers"
    outcome = run_code(
        sandbox.Program(
            code=spec["code"],
            helpers=list(spec.get("helpers") or []),
            settings=dict(spec.get("settings") or {}),
            side=f"{endpoint.path}:{side}:{spec['generation']}",
        ),
        args,
        user=user_of(caller, endpoint),
        state=FirestoreState(spec["generation"]),
        timeout_s=float(endpoint.doc["timeout_s"]),
        lane=lane,
    )
    reference = uuid.uuid4().hex
    answer = _answer(outcome, endpoint, owner=endpoint.owned_by(caller), reference=reference)
    _record(reference, endpoint, side, caller, request_id, outcome, answer, origin)
    return answer


def run_code(program: sandbox.Program, args: dict[str, Any], **options: Any) -> sandbox.Outcome:
    """Run twin code in a sandbox worker (`sandbox.run`'s options), with the instance's memory and
    result caps: the one place endpoint and request code runs. Its run does not count against
    the request's backend budget (its own `timeout_s` bounds it), so a run longer than
    BACKEND_DEADLINE_SECONDS still has the budget left to record and store what it did."""
    with deadlines.paused():
        return sandbox.run(
            program,
            args,
            memory_mb=settings().twin_memory_mb,
            max_result_bytes=settings().twin_max_result_mb << 20,
            **options,
        )


def _answer(outcome, endpoint: Endpoint, *, owner: bool, reference: str) -> Answer:
    """The caller's view of an outcome: nothing from settings, source, output or tracebacks
    reaches a non-owner; a PublicError passes as written; owners get the exception text."""
    if outcome.status == "ok":
        return Answer(200, {"result": outcome.result}, reference)
    details: dict[str, Any] = {"reference": reference, "reason": outcome.status}
    if outcome.status == "public_error":
        status = (
            outcome.public_status
            if isinstance(outcome.public_status, int) and 400 <= outcome.public_status <= 599
            else 400
        )
        return _error(
            status,
            _CODES.get(status, "endpoint_error"),
            outcome.message or "the endpoint refused the call",
            details,
        )
    if outcome.status == "timeout":
        return _error(
            504,
            "timeout",
            f"the endpoint did not finish within {endpoint.doc['timeout_s']} s; "
            f"its work was stopped (reference {reference})",
            details,
        )
    fixed = {
        "memory": f"the endpoint used more than {settings().twin_memory_mb} MiB of memory and was stopped",
        "result_too_large": "the endpoint's result is too large to return",
        "not_serializable": "the endpoint's result is not JSON-serializable",
    }
    if outcome.status in fixed:
        message = fixed[outcome.status]
        if owner and outcome.message:
            message += f": {outcome.message}"
        return _error(500, "endpoint_error", f"{message} (reference {reference})", details)
    if owner:
        text = (
            f"{outcome.error_type}: {outcome.message}" if outcome.error_type else (outcome.message or "error")
        )
        return _error(
            500,
            "endpoint_error",
            f"{text} (reference {reference})",
            {**details, "error_type": outcome.error_type},
        )
    return _error(
        500,
        "endpoint_error",
        f"the endpoint failed; its owners can look it up by the reference {reference}",
        details,
    )


def _error(status: int, code: str, message: str, details: dict[str, Any]) -> Answer:
    headers = {"Retry-After": "1"} if status in (429, 503) else {}
    return Answer(
        status, {"error": code, "message": message, "details": details}, details["reference"], headers
    )


class _RecordWriter:
    """Writes call records in a thread of their own, so a call does not wait for that write
    (a Firestore round trip is most of a warm call's overhead). `flush` waits until every record
    queued so far is written; it runs before records are read here and when the instance exits."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, reference: str, record: dict[str, Any]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="twin-call-records")
                self._thread.start()
        self._queue.put((reference, record))

    def _run(self) -> None:
        while True:
            reference, record = self._queue.get()
            try:
                store.collection(collections.TWIN_CALLS).document(reference).set(record)
            except Exception as exc:  # a lost record is logged, never a failed call
                log("ERROR", f"twin call record {reference} not written: {exc!r}")
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        self._queue.join()


_records = _RecordWriter()
flush_records = _records.flush
atexit.register(flush_records)


def _record(
    reference: str,
    endpoint: Endpoint,
    side: str,
    caller,
    request_id: str,
    outcome,
    answer: Answer,
    origin: str | None,
) -> None:
    """The call record (owners read it at GET /twins/{path}/calls); it holds the captured output."""
    at = store.now()
    _records.put(
        reference,
        {
            "id": reference,
            "endpoint": endpoint.path,
            "side": side,
            "generation": endpoint.side(side)["generation"],
            "endpoint_generation": endpoint.generation,
            "dataset": endpoint.dataset,
            "dataset_generation": endpoint.doc.get("dataset_generation"),
            "caller": caller.email,
            "status": outcome.status,
            "http_status": answer.status,
            "duration_ms": round(float(outcome.duration_ms or 0.0), 3),
            "request_id": request_id,
            "origin": origin,
            "at": at,
            "expire_at": at + datetime.timedelta(days=settings().twin_call_retention_days),
            "message": clip(outcome.message),
            "error_type": outcome.error_type,
            "traceback": clip(outcome.traceback),
            "stdout": clip(outcome.stdout),
            "stderr": clip(outcome.stderr),
        },
    )
    if not answer.ok:  # the reference ties the caller's answer to the record; no private text here
        log(
            "WARNING",
            "twin endpoint call failed",
            endpoint=endpoint.path,
            side=side,
            status=outcome.status,
            reference=reference,
            request_id=request_id,
        )


def clip(text: str | None) -> str | None:
    if text is None or len(text) <= OUTPUT_LIMIT:
        return text
    return text[:OUTPUT_LIMIT] + f"\n[... {len(text) - OUTPUT_LIMIT} more characters]"
