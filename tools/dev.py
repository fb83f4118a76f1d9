"""`make dev`: the whole stack on this machine, on real emulators.

Starts the Firestore, Cloud Storage and Pub/Sub emulators, mounts every function at /<name> on
one port, serves the background workers behind their push subscriptions (tools/workers.py), seeds a small demo through the API itself, prints a token and a few curl lines, and
stops everything on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import devkeys, gateway  # noqa: E402
from tools.emulators import Emulators, MissingComponent, S3Server  # noqa: E402

ATTACHMENTS_BUCKET = "gatehouse-attachments"
SIG_BUCKET = "gatehouse-signatures"
TRANSFER_BUCKET = "gatehouse-transfer"
TWIN_RESULTS_BUCKET = "gatehouse-twin-results"
DEMO_POINT = (17000, 20000, 18000)
RESEARCHER = "researcher@example.com"
# What the emulators hold, kept across runs: Firestore's export and fake-gcs-server's files.
DATA_DIR = os.path.join(devkeys.DEV_DIR, "data")


def demo(owner: str) -> list[tuple[str, str, object]]:
    """The seed: (method, path, body) calls made as the owner."""
    return [
        (
            "POST",
            "/datasets",
            {
                "hemibrain": {
                    "description": "Hemibrain 8nm FIB-SEM (public demo)",
                    "location": "gs://gatehouse-demo/hemibrain",
                    "public": True,
                    "tags": ["fly", "fib-sem"],
                    "transfer": ["denoise"],
                },
                "manc": {
                    "description": "Male adult nerve cord (private demo)",
                    "location": "gs://gatehouse-demo/manc",
                    "tags": ["fly"],
                },
            },
        ),
        (
            "POST",
            "/users",
            {
                owner: {"name": "Owner", "global_roles": ["admin"]},
                RESEARCHER: {
                    "name": "A Researcher",
                    "global_roles": ["clio_general"],
                    "datasets": {"manc": ["clio_read"]},
                },
            },
        ),
        (
            "POST",
            "/annotations/v2/hemibrain",
            [
                {"kind": "point", "pos": [17000, 20000, 18000], "tags": ["demo"], "title": "a synapse"},
                {"kind": "sphere", "pos": [16000, 19000, 17000, 16400, 19400, 17400], "title": "a soma"},
            ],
        ),
        (
            "POST",
            "/atlas/hemibrain?x=17000&y=20000&z=18000",
            {"title": "demo atlas entry", "description": "verify it with POST /atlas/verify/<id>"},
        ),
    ]


def demo_signatures(path: str, count: int = 500, copies: int = 60) -> str:
    """A demo signatures file (.npy) for hemibrain: random points around DEMO_POINT, and
    near-copies (Hamming 1-5) of the signature at DEMO_POINT, so likelocation finds matches."""
    import numpy as np

    from common.catalog import sigindex

    rng = np.random.default_rng(2026)
    records = np.empty(count + copies + 1, dtype=sigindex.record_dtype())
    for axis, centre in zip("xyz", DEMO_POINT):
        records[axis] = rng.integers(centre - 2000, centre + 2000, size=len(records))
    records["signature"] = rng.integers(-(2**63), 2**63 - 1, size=len(records), dtype=np.int64)
    records[0] = (*DEMO_POINT, 0x2545F4914F6CDD1D)
    for i in range(1, copies + 1):
        bits = rng.choice(64, size=int(rng.integers(1, 6)), replace=False)
        records["signature"][i] = records["signature"][0] ^ np.int64(sum(1 << int(b) for b in bits if b < 63))
    np.save(path, records)
    return path


def demo_twins(s3: dict[str, str]) -> list[tuple[str, str, object]]:
    """The twins example (examples/warehouse): warehouse.schema (public) and warehouse.query on
    manc, whose private side reads the table from the S3 server `s3`."""
    from examples import warehouse

    warehouse.upload_table(s3)
    return [("POST", "/twins", body) for body in warehouse.definitions(s3, dataset="manc")]


def refresh_twins(s3: dict[str, str]) -> list[tuple[str, str, object]]:
    """For kept data: the twins example's table uploaded to this run's S3 server, and the
    private side of warehouse.query (whose settings name the server) replaced."""
    from examples import warehouse

    warehouse.upload_table(s3)
    query = next(d for d in warehouse.definitions(s3, dataset="manc") if d["path"] == "warehouse.query")
    return [("PATCH", "/twins/warehouse.query", {"private": query["private"]})]


DEMO_NODE = "d3m0a1"  # manc's body annotations: a node of the DVID stand-in
DEMO_BODIES = [
    {"bodyid": 10005, "type": "DNa01", "instance": "DNa01_L", "status": "Traced"},
    {"bodyid": 10006, "type": "DNa01", "instance": "DNa01_R", "status": "Traced"},
    {"bodyid": 23456789012345678, "type": "IN08B", "status": "Roughly traced"},  # above 2^53
]


def demo_bodies(dvid) -> list[tuple[str, str, object]]:
    """manc's body annotations, kept by this run's DVID stand-in `dvid` (seeded here; it starts
    empty on a new port each run): its node, and manc's metadata pointed at it."""
    dvid.add_node(DEMO_NODE, DEMO_BODIES)
    neurons = {
        "tag_to_uuid": {"v1.0": DEMO_NODE},
        "uuid_to_tag": {DEMO_NODE: "v1.0"},
        "head_tag": "v1.0",
        "head_uuid": DEMO_NODE,
    }
    return [
        ("PUT", "/datasets/manc", {"dvid": dvid.url, "uuid": DEMO_NODE, "tag": "v1.0", "neurons": neurons})
    ]


def demo_neuprint(server: str) -> list[tuple[str, str, object]]:
    """hemibrain's neuPrint is the stand-in (a new port each run, so set on every start)."""
    return [("PUT", "/datasets/hemibrain", {"neuprintHTTP": {"server": server, "dataset": "hemibrain"}})]


def seed(app, owner: str, token: str, calls: list[tuple[str, str, object]] | None = None) -> None:
    from werkzeug.test import Client

    client = Client(app)
    for method, path, body in calls if calls is not None else demo(owner):
        response = client.open(
            path,
            method=method,
            data=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        if response.status_code not in (200, 201):
            raise SystemExit(
                f"seeding {method} {path} failed: {response.status_code} {response.get_data(as_text=True)}"
            )


def _hold_signals() -> None:
    """From here on Ctrl-C and `kill` are ignored: stopping has begun and must finish. (`kill
    %1` or `kill -- -PGID` signals make and tools.dev both, and make then sends tools.dev a
    SIGTERM of its own; Ctrl-C pressed twice does the same.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _stop(signum, frame):
    _hold_signals()
    raise KeyboardInterrupt  # `kill` stops everything as Ctrl-C does


def main() -> None:
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--owner", default=os.environ.get("OWNER") or "owner@example.com")
    parser.add_argument("--fresh", action="store_true", help=f"forget what {DATA_DIR} holds; start empty")
    args = parser.parse_args()
    owner = args.owner.strip().lower()

    dev_key, signer = devkeys.ensure()
    if args.fresh:
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    emulators = Emulators(
        project="gatehouse-dev", log_dir=os.path.join(devkeys.DEV_DIR, "logs"), data_dir=DATA_DIR
    )
    try:
        emulators.start()  # on failure it stops what it started
    except MissingComponent as exc:
        raise SystemExit(f"make dev: {exc}") from None
    s3 = S3Server(os.path.join(devkeys.DEV_DIR, "logs"))
    try:
        s3.start()
        os.environ.update(emulators.env)
        os.environ.update(
            {
                "OWNER": owner,
                "GATEHOUSE_DEV_MODE": "1",
                "GATEHOUSE_DEV_KEY_FILE": dev_key,
                "SIGNER_KEY_FILE": signer,
                "ATTACHMENTS_BUCKET": ATTACHMENTS_BUCKET,
                "SIG_BUCKET": SIG_BUCKET,
                "TRANSFER_DEST": f"gs://{TRANSFER_BUCKET}/volumes",
                "LOG_FORMAT": os.environ.get("LOG_FORMAT", "text"),  # each request's line, readably
                "TWIN_RESULTS_BUCKET": TWIN_RESULTS_BUCKET,
            }
        )
        from tools.dvid_standin import DvidService
        from tools.transfer_standin import TransferService

        os.environ.setdefault("TRANSFER_FUNC", TransferService().start().url)
        dvid = DvidService().start()
        from tools.neuprint_standin import NeuprintService

        neuprint = NeuprintService(token=secrets.token_urlsafe()).start()
        os.environ["NEUPRINT_TOKEN"] = neuprint.token  # the demo's neuPrint is the stand-in
        os.environ.setdefault("ALLOWED_ORIGINS", f"http://localhost:{args.port},http://127.0.0.1:{args.port}")
        emulators.create_buckets(ATTACHMENTS_BUCKET, SIG_BUCKET, TRANSFER_BUCKET, TWIN_RESULTS_BUCKET)
        from tools import workers

        running = workers.serve_all(
            emulators, min_backoff="1s", max_backoff="10s", max_delivery_attempts=10, ack_deadline_seconds=600
        )
        app = gateway.build()
        from common.identity.auth import mint_dev_token

        with open(dev_key, "rb") as f:
            token = mint_dev_token(owner, f.read())
        from common.storage import datasets, store

        kept = store.collection(datasets.COLLECTION).document("hemibrain").get().exists
        if kept:
            # The S3 stand-in starts empty on a new port: its table again, and the twin's
            # private side pointed at it.
            seed(
                app,
                owner,
                token,
                refresh_twins(s3.credentials) + demo_bodies(dvid) + demo_neuprint(neuprint.server),
            )
        else:
            from tools import build_signatures

            seed(app, owner, token)
            seed(
                app,
                owner,
                token,
                demo_twins(s3.credentials) + demo_bodies(dvid) + demo_neuprint(neuprint.server),
            )
            # After the seed: signatures built before their dataset was created are taken for
            # an older dataset's of the same name, and never served.
            demo_file = demo_signatures(os.path.join(devkeys.DEV_DIR, "hemibrain-signatures.npy"))
            build_signatures.build(SIG_BUCKET, "hemibrain", build_signatures.read_records(demo_file))
        data = (
            f"Kept from the last run in {DATA_DIR} (`make dev FRESH=1` starts empty)."
            if kept
            else f"Seeded now; kept in {DATA_DIR} when you stop (`make dev FRESH=1` starts empty)."
        )
        base = f"http://127.0.0.1:{args.port}"
        print(
            f"""
Gatehouse is serving every function at {base}/<function> ({", ".join(gateway.function_names())})
Docs: {base}/ (every function; Authorize with the token below, then Try it out) and {base}/<function>/_docs
Firestore emulator {emulators.firestore_host}, Cloud Storage emulator {emulators.storage_host}, Pub/Sub emulator {emulators.pubsub_host}, S3 (moto) {s3.url}
{data}
The demo: datasets hemibrain (public, with two v2 annotations, an atlas entry and signatures built
from .dev/hemibrain-signatures.npy) and manc (private; its body annotations at a local DVID
stand-in, {dvid.url}, node {DEMO_NODE}); users {owner} (owner, admin) and {RESEARCHER}.
POST /transfer queues its parts on Pub/Sub topic {workers.WORKERS[0].topic}; the worker at {running[0].url}
sends them to a local stand-in for the transfer network ({os.environ["TRANSFER_FUNC"]}).
hemibrain's neuPrint (`neuprintHTTP`, for POST /v2/neuprint/hemibrain) is a stand-in at {neuprint.server}
that answers the clio website's queries (neuron types, partners).
Twin endpoints warehouse.schema (public) and warehouse.query (on manc; its private side reads
cells.csv from the S3 server) from examples/warehouse; `?async=1` calls and request runs go to
Pub/Sub topic {workers.WORKERS[2].topic}, carried out by the twins worker at {running[2].url}.

  export BASE={base}
  export TOKEN={token}
  curl -H "Authorization: Bearer $TOKEN" $BASE/roles
  curl -H "Authorization: Bearer $TOKEN" $BASE/datasets
  curl -H "Authorization: Bearer $TOKEN" -X POST $BASE/datasets -d '{{"mb20": {{"description": "4nm MB", "location": "gs://em-data/mb20"}}}}'
  curl -H "Authorization: Bearer $(make -s token EMAIL={RESEARCHER})" $BASE/datasets
  curl -H "Authorization: Bearer $TOKEN" "$BASE/v2/json-annotations/manc/neurons/id-number/10005,23456789012345678?show=user"
  curl -H "Authorization: Bearer $TOKEN" -X POST $BASE/v2/neuprint/hemibrain -d '{{"cypher": "MATCH (n: Neuron) WHERE n.bodyId in [1,2] RETURN n.bodyId AS id, n.type AS type", "dataset": "hemibrain"}}'

In Python (the client in client/, installed in .venv; see README "Python"):
  GATEHOUSE_TOKEN=$TOKEN .venv/bin/python -c 'from gatehouse import Gatehouse; print(Gatehouse("{base}").datasets.list())'

Ctrl-C stops everything.
""",
            flush=True,
        )
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # our request lines say it all
        gateway.serve(app, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        _hold_signals()
        print("Stopping: saving the data, then stopping the emulators...", flush=True)
        try:
            emulators.save()  # the data first
            s3.stop()
        finally:
            emulators.stop(save=False)  # the last started first


if __name__ == "__main__":
    main()
