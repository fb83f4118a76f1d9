"""transfer: the 256³ cube around a point, sent through a model by the transfer network in eight
128³ parts and written as a neuroglancer precomputed volume (SPEC §3).

Two entry points share this source (one archive, deployed twice; terraform/pubsub.tf):
- `handle`, the HTTP function: `POST /transfer` writes the volume's `info`, records the job
  (`transfer_jobs/{job}`) and its parts (`transfer_jobs/{job}/transfer_parts/{key}`), publishes
  one message for the job to TRANSFER_TOPIC and answers at once; `GET /transfer[/{job}]` reads
  them.
- `work`, the worker (a CloudEvent function behind a push subscription on that topic; its code
  is functions/transfer/worker.py): one delivery is one attempt at each unfinished part, sent
  at once.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import uuid
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import ConfigDict, Field, StringConstraints

from common import errors, jsonio
from common.identity import auth, authz
from common.models import COORDINATE_RANGE, DatasetName, Paging, Public, Strict, Truncated
from common.storage import blobs, collections, datasets, pubsub, store
from common.web.http import App, paged
from functions.transfer.worker import work as work  # the worker's entry point (terraform/pubsub.tf)

app = App(
    "transfer",
    "Transfer: a 256-voxel cube through a model, as a neuroglancer volume.",
    authenticate=auth.authenticate,
)

CUBE, PART, CHUNK = 256, 128, 64
RESOLUTION = [8, 8, 8]
SCALE_KEY = "8.0x8.0x8.0"
JOB_DAYS = 30  # the TTL policy on expire_at (terraform/firestore.tf) deletes jobs after this
# What the transfer network reads: gs://bucket/path, optionally with neuroglancer's precomputed://
# prefix. A dataset's location may name any source (it is metadata); only this is ever sent.
GS_LOCATION = re.compile(r"(precomputed://)?gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\s/][^\s]*)+")


def readable_location(value: object) -> bool:
    """Whether the transfer network can read `value` (a dataset's location)."""
    return isinstance(value, str) and len(value) <= 1024 and bool(GS_LOCATION.fullmatch(value))


class TransferStartedPublic(Public):
    addr: str
    source: str
    job: str


class TransferPartPublic(Public):
    start: list[int]
    status: str
    attempts: int
    error: str | None = None


class TransferJobPublic(Public):
    """A transfer job as listed (its parts only in GET /transfer/{job})."""

    id: str
    user: str
    dataset: str
    status: str
    created_at: datetime.datetime
    # Always written by POST /transfer; optional so an old or partial record still answers.
    model_name: str | None = None
    center: list[int] | None = None
    addr: str | None = None
    source: str | None = None
    expire_at: datetime.datetime | None = None
    request_id: str | None = None
    finished_at: datetime.datetime | None = None
    error: str | None = None
    failed_parts: list[str] | None = None


class TransferJobDetailPublic(TransferJobPublic):
    parts: dict[str, TransferPartPublic]


# The cube reaches CUBE/2 voxels below its centre and CUBE/2 - 1 above: all of it, and so every
# part the transfer network is sent, stays within the coordinate range (int32).
CubeCentre = Annotated[int, Field(ge=COORDINATE_RANGE[0] + CUBE // 2, le=COORDINATE_RANGE[1] - CUBE // 2)]


class TransferCreate(Strict):
    dataset: DatasetName
    model_name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    center: Annotated[list[CubeCentre], Field(min_length=3, max_length=3)]


def precomputed_info() -> dict[str, Any]:
    """neuroglancer's precomputed `info`: uint8, one channel, 8 nm, 256³, 64³ raw chunks."""
    return {
        "@type": "neuroglancer_multiscale_volume",
        "type": "image",
        "data_type": "uint8",
        "num_channels": 1,
        "scales": [
            {
                "key": SCALE_KEY,
                "resolution": RESOLUTION,
                "size": [CUBE] * 3,
                "voxel_offset": [0, 0, 0],
                "chunk_sizes": [[CHUNK] * 3],
                "encoding": "raw",
            }
        ],
    }


def part_requests(
    location: str, model_name: str, center: list[int], volume: str
) -> dict[str, dict[str, Any]]:
    """The transfer network's eight requests, by part key ("x_y_z" offset in the cube), in its
    wire format (SPEC §3): `glbstart` the cube's first voxel (the same in all), `start` the
    part's first voxel in dataset coordinates, `dest` the volume's scale directory."""
    glbstart = [c - CUBE // 2 for c in center]
    return {
        "_".join(map(str, offset)): {
            "location": location,
            "glbstart": glbstart,
            "start": [g + o for g, o in zip(glbstart, offset)],
            "size": [PART] * 3,
            "model_name": model_name,
            "dest": f"{volume}/{SCALE_KEY}",
        }
        for offset in itertools.product((0, PART), repeat=3)
    }


def neuroglancer_link(source: str, layer: str) -> str:
    """A neuroglancer URL whose state shows `source` as one image layer, centred on the cube's
    middle voxel (the requested point)."""
    metres = [r * 1e-9 for r in RESOLUTION]
    state = {
        "dimensions": {axis: [m, "m"] for axis, m in zip("xyz", metres)},
        "position": [CUBE // 2] * 3,
        "crossSectionScale": 1,
        "projectionScale": CUBE * 2,
        "layers": [{"type": "image", "source": source, "name": layer}],
        "selectedLayer": {"layer": layer, "visible": True},
        "layout": "4panel",
    }
    return f"{app.settings.neuroglancer_url}/#!{quote(json.dumps(state, separators=(',', ':')), safe='')}"


def _split_gs(url: str) -> tuple[str, str]:
    """gs://bucket/prefix -> (bucket, prefix)."""
    if not url.startswith("gs://"):
        raise errors.Unavailable("TRANSFER_DEST must be gs://bucket[/prefix]", retry_after=3600)
    bucket, _, prefix = url[len("gs://") :].partition("/")
    return bucket, prefix.strip("/")


class ClioTransferCreate(TransferCreate):
    """The same body as clio's clients send it: read leniently, unknown fields dropped, a
    fractional centre truncated (as clio's pydantic v1 read it)."""

    model_config = ConfigDict(extra="ignore", strict=False)
    center: Annotated[list[Annotated[Truncated, CubeCentre]], Field(min_length=3, max_length=3)]


@app.post(
    "/transfer",
    check=authz.AUTHENTICATED,
    body=TransferCreate,
    answers=(404,),
    response=TransferStartedPublic,
)
@app.post(  # clio's path (the clio website's image search posts it as text/plain)
    "/v2/transfer",
    check=authz.AUTHENTICATED,
    body=ClioTransferCreate,
    answers=(404,),
    response=TransferStartedPublic,
    operation_id="clio_start_transfer",
)
def start_transfer(req):
    """Start sending the cube around `center` through `model_name`; answers at once with the
    neuroglancer link (the volume fills in as parts finish; poll GET /transfer/{job})."""
    body: TransferCreate = req.body
    dataset = authz.require_dataset(req.caller, body.dataset, authz.READ).record
    if not dataset.get("location"):
        raise errors.BadRequest(f"dataset {body.dataset!r} has no location")
    if not readable_location(dataset["location"]):
        shown = str(dataset["location"])
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        raise errors.ValidationFailed(
            f"dataset {body.dataset!r} has the location {shown!r}, which the transfer network cannot "
            "read; it needs gs://bucket/path or precomputed://gs://bucket/path",
            details=[
                {"loc": ["dataset", "location"], "message": "not a readable gs:// path", "type": "location"}
            ],
        )
    if body.model_name not in (dataset.get("transfer") or []):
        raise errors.BadRequest(
            f"dataset {body.dataset!r} offers no transfer model {body.model_name!r}",
            details={"models": list(dataset.get("transfer") or [])},
        )
    if not app.settings.transfer_func or not app.settings.transfer_dest:
        raise errors.Unavailable(
            "transfer is not configured here (TRANSFER_FUNC, TRANSFER_DEST)", retry_after=3600
        )

    bucket, prefix = _split_gs(app.settings.transfer_dest)
    directory = "/".join(p for p in (prefix, uuid.uuid4().hex) if p)
    volume = f"gs://{bucket}/{directory}"
    blobs.bucket(bucket).blob(f"{directory}/info").upload_from_string(
        jsonio.dumps(precomputed_info()), content_type="application/json"
    )

    source = f"precomputed://{volume}"
    addr = neuroglancer_link(source, f"{body.dataset} {body.model_name}")
    created = store.now()
    expire_at = created + datetime.timedelta(days=JOB_DAYS)
    job = store.collection(collections.TRANSFER_JOBS).document()
    batch = store.db().batch()
    batch.set(
        job,
        {
            "user": req.caller.email,
            "dataset": body.dataset,
            "model_name": body.model_name,
            "center": body.center,
            "addr": addr,
            "source": source,
            "status": "running",
            "created_at": created,
            "expire_at": expire_at,
            "request_id": req.id,
        },
    )
    parts = part_requests(dataset["location"], body.model_name, body.center, volume)
    for key, request in parts.items():
        batch.set(
            job.collection(collections.TRANSFER_PARTS).document(key),
            {"request": request, "status": "pending", "attempts": 0, "error": None, "expire_at": expire_at},
        )
    batch.commit()
    try:
        # One message for the job: one delivery sends its parts at once (functions/transfer/worker.py).
        pubsub.publish(app.settings.transfer_topic, {"job": job.id})
    except errors.ApiError as exc:
        job.update(
            {
                "status": "failed",
                "error": f"the parts could not be queued: {exc.message}",
                "finished_at": store.now(),
            }
        )
        raise
    return {"addr": addr, "source": source, "job": job.id}


def _job_view(snap) -> dict[str, Any]:
    return {"id": snap.id, **snap.to_dict()}


def _served(snap) -> bool:
    """A job is seen only with its dataset as it is now: not for a dataset this deployment does
    not serve (EXPOSE), nor once the dataset is deleted (also when one of its name is made again).
    An older dataset record without `created_at` has no other of its name before it: its jobs
    are its own. A job without `created_at` cannot be told apart, and is not shown."""
    job = snap.to_dict()
    record = datasets.record(job.get("dataset"))  # None when not exposed or deleted
    if record is None or job.get("created_at") is None:
        return False
    return record.get("created_at") is None or job["created_at"] >= record["created_at"]


@app.get(
    "/transfer",
    check=authz.AUTHENTICATED,
    query=Paging,
    response=list[TransferJobPublic],
)
def list_jobs(req):
    """The caller's transfer jobs (an admin's: everyone's), newest first, without their parts."""
    from google.cloud.firestore import Query
    from google.cloud.firestore_v1.base_query import FieldFilter

    limit = req.query.limit
    jobs = store.collection(collections.TRANSFER_JOBS)
    query = jobs if req.caller.is_admin else jobs.where(filter=FieldFilter("user", "==", req.caller.email))
    query = query.order_by("created_at", direction=Query.DESCENDING)
    page = store.page(query, jobs, limit=limit, cursor=req.query.cursor)
    return paged(req, page, _job_view, limit, keep=_served)


@app.get("/transfer/<job_id>", check=authz.AUTHENTICATED, response=TransferJobDetailPublic)
def get_job(req, job_id):
    """A transfer job and each part's status, attempts and last error (its requester's and
    admins' only)."""
    job = store.document(store.collection(collections.TRANSFER_JOBS), job_id, f"no transfer job {job_id!r}")
    snap = job.get()
    if (
        not snap.exists
        or not _served(snap)
        or (snap.get("user") != req.caller.email and not req.caller.is_admin)
    ):
        raise errors.NotFound(f"no transfer job {job_id!r}")
    parts = {
        part.id: _part_view(part.to_dict())
        for part in store.stream(job.collection(collections.TRANSFER_PARTS))
    }
    return {**_job_view(snap), "parts": parts}


def _part_view(part: dict[str, Any]) -> dict[str, Any]:
    return {
        "start": part["request"]["start"],
        "status": part["status"],
        "attempts": part["attempts"],
        "error": part.get("error"),
    }


def handle(request):
    return app(request)
