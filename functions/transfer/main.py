"""transfer: the 256³ cube around a point, sent through a model by the transfer network in eight
128³ parts and written as a neuroglancer precomputed volume (SPEC §3).

Every part is tried up to ATTEMPTS times with growing pauses; the job record in Firestore
(`transfer_jobs/{job}`) says what happened to each part, so nothing is lost silently.
"""
from __future__ import annotations

import datetime
import itertools
import time
import uuid
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from common import authz, errors, store
from common.http import App
from common.models import Coordinate, DatasetName, Strict

app = App("transfer", "Transfer: a 256-voxel cube through a model, as a neuroglancer volume.")

CUBE, PART, CHUNK = 256, 128, 64
RESOLUTION = [8, 8, 8]
SCALE_KEY = "8.0x8.0x8.0"
ATTEMPTS = 4
JOBS = "transfer_jobs"
JOB_DAYS = 30  # the TTL policy on expire_at (terraform/firestore.tf) deletes jobs after this


class TransferIn(Strict):
    dataset: DatasetName
    model_name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    center: Annotated[list[Coordinate], Field(min_length=3, max_length=3)]


def precomputed_info() -> dict[str, Any]:
    """neuroglancer's precomputed `info`: uint8, one channel, 8 nm, 256³, 64³ raw chunks."""
    return {"@type": "neuroglancer_multiscale_volume", "type": "image", "data_type": "uint8",
            "num_channels": 1,
            "scales": [{"key": SCALE_KEY, "resolution": RESOLUTION, "size": [CUBE] * 3,
                        "voxel_offset": [0, 0, 0], "chunk_sizes": [[CHUNK] * 3], "encoding": "raw"}]}


def _split_gs(url: str) -> tuple[str, str]:
    """gs://bucket/prefix -> (bucket, prefix)."""
    if not url.startswith("gs://"):
        raise errors.Unavailable("TRANSFER_DEST must be gs://bucket[/prefix]", retry_after=3600)
    bucket, _, prefix = url[len("gs://"):].partition("/")
    return bucket, prefix.strip("/")


def _id_token() -> str | None:
    """An ID token for TRANSFER_FUNC in the cloud; none against the emulators (local service)."""
    if app.settings.on_emulators:
        return None
    import google.auth.transport.requests
    from google.oauth2 import id_token
    return id_token.fetch_id_token(google.auth.transport.requests.Request(), app.settings.transfer_func)


def _send(payload: dict[str, Any], token: str | None, record) -> dict[str, Any]:
    """POST one part, retried on timeouts, connection errors, 429 and 5xx with pauses of
    backoff, 2x, 4x...; `record(state)` is told after every attempt."""
    import requests
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    state: dict[str, Any] = {"start": payload["start"], "status": "running", "attempts": 0}
    for attempt in range(1, ATTEMPTS + 1):
        state["attempts"] = attempt
        try:
            response = requests.post(app.settings.transfer_func, json=payload, headers=headers,
                                     timeout=app.settings.transfer_timeout_seconds)
            if response.ok:
                state.update(status="done", error=None)
                record(state)
                return state
            state["error"] = f"HTTP {response.status_code}"
            retry = response.status_code == 429 or response.status_code >= 500
        except requests.Timeout:
            state["error"], retry = f"no answer within {app.settings.transfer_timeout_seconds:g} s", True
        except requests.RequestException as exc:
            state["error"], retry = f"{type(exc).__name__}", True
        if not retry or attempt == ATTEMPTS:
            break
        record(state)
        time.sleep(app.settings.transfer_backoff_seconds * 2 ** (attempt - 1))
    state["status"] = "failed"
    record(state)
    return state


@app.post("/transfer", role=authz.AUTHENTICATED, body=TransferIn)
def start_transfer(req):
    """Send the cube around `center` through `model_name`; answer the neuroglancer link."""
    from concurrent.futures import ThreadPoolExecutor

    from common import blobs, jsonio
    body: TransferIn = req.body
    dataset = authz.require_dataset(req.caller, body.dataset, "read")
    if not dataset.get("location"):
        raise errors.BadRequest(f"dataset {body.dataset!r} has no location")
    if body.model_name not in (dataset.get("transfer") or []):
        raise errors.BadRequest(f"dataset {body.dataset!r} offers no transfer model {body.model_name!r}",
                                details={"models": list(dataset.get("transfer") or [])})
    if not app.settings.transfer_func or not app.settings.transfer_dest:
        raise errors.Unavailable("transfer is not configured here (TRANSFER_FUNC, TRANSFER_DEST)", retry_after=3600)

    bucket, prefix = _split_gs(app.settings.transfer_dest)
    directory = "/".join(p for p in (prefix, uuid.uuid4().hex) if p)
    volume = f"gs://{bucket}/{directory}"
    blobs.bucket(bucket).blob(f"{directory}/info").upload_from_string(
        jsonio.dumps(precomputed_info()), content_type="application/json")

    corner = [c - CUBE // 2 for c in body.center]
    payloads = {}
    for offset in itertools.product((0, PART), repeat=3):
        payloads["_".join(map(str, offset))] = {
            "location": dataset["location"], "glbstart": [c + o for c, o in zip(corner, offset)],
            "start": list(offset), "size": [PART] * 3, "model_name": body.model_name, "dest": volume}
    job = store.collection(JOBS).document()
    created = store.now()
    job.set({"user": req.caller.email, "dataset": body.dataset, "model_name": body.model_name,
             "center": body.center, "volume": volume, "addr": f"precomputed://{volume}", "status": "running",
             "parts": {key: {"start": p["start"], "status": "pending", "attempts": 0} for key, p in payloads.items()},
             "created_at": created, "expire_at": created + datetime.timedelta(days=JOB_DAYS),
             "request_id": req.id})

    def record(key):
        return lambda state: job.update({f"parts.{key}": dict(state)})

    token = _id_token()
    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        states = dict(zip(payloads, pool.map(lambda key: _send(payloads[key], token, record(key)), payloads)))
    failed = sorted(key for key, state in states.items() if state["status"] != "done")
    job.update({"status": "failed" if failed else "done", "finished_at": store.now()})
    if failed:
        raise errors.BadGateway(f"the transfer network failed {len(failed)} of 8 parts; see GET /transfer/{job.id}",
                                details={"job": job.id, "failed": {k: states[k] for k in failed}})
    return {"addr": f"precomputed://{volume}", "job": job.id}


@app.get("/transfer/<job_id>", role=authz.AUTHENTICATED)
def get_job(req, job_id):
    """A transfer job and its parts (its requester's and admins' only)."""
    snap = store.collection(JOBS).document(job_id).get() if "/" not in job_id else None
    if snap is None or not snap.exists or (snap.get("user") != req.caller.email and not req.caller.is_admin):
        raise errors.NotFound(f"no transfer job {job_id!r}")
    return {"id": snap.id, **snap.to_dict()}


def handle(request):
    return app(request)
