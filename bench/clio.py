"""clio's /v2 API, interleaved A/B pairs in one run (bench/figures.py), on one emulator:

1. what clio's shapes cost on Gatehouse: `GET /v2/annotations/{ds}` (1,000 annotations) and
   `POST /v2/annotations/{ds}` (one) against the same calls on Gatehouse's own routes
   (`/annotations/v2/{ds}`), one annotations function; goal: the adapter costs < 5 %;
2. the same 1,000 stored annotations shaped in-process as each GET shapes them: the adapter's
   own work without the emulator's and the network's noise, best of SHAPE_RUNS;
3. with CLIO_STORE=<a clio-store checkout>: clio-store itself side by side with Gatehouse on the
   same Firestore emulator, the same documents in each one's own collections: warm
   `GET /v2/annotations/{ds}` of 1,000 and `GET /v2/datasets` (DATASETS datasets), each
   against Gatehouse's /v2 route. clio-store runs as it is deployed (uvicorn, `main:app`) from a
   copy of the checkout, in its own virtualenv that the bench makes under .bench/ from the
   checkout's requirements (requirements.txt, or pixi.toml's PyPI dependencies), never the
   project's. Its auth is DatasetGateway's `/api/v1/user/cache` (DSG_URL); a stand-in on
   loopback answers it with the owner as admin, so clio-store runs unpatched. Goal: Gatehouse
   >= 2x clio-store's throughput on both.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib

from bench import figures
from bench.annotations import USER, Function, _dataset, _records, function_call, raw_insert
from bench.run import ROOT
from tools.emulators import free_port

LIST_COUNT = 1_000
GET_BURST = 3
POST_BURST = 10
DATASETS_BURST = 10
SHAPE_RUNS = 100
DATASETS = 50


def run(env: dict[str, str], headers: dict[str, str]) -> dict[str, float | str]:
    listed, written = _dataset("clio1k"), _dataset("cliopost")
    raw_insert(listed, _records(LIST_COUNT))
    results: dict[str, float | str] = {}
    fn = Function(env, headers)
    try:
        assert len(json.loads(_get(fn.port, f"/v2/annotations/{listed}", headers))) == LIST_COUNT

        def get(path: str):
            return figures.burst(lambda: 1000 * function_call(fn.port, "GET", path, headers), GET_BURST)

        results |= figures.figure(
            "get_1k",
            figures.interleave(get(f"/annotations/v2/{listed}"), get(f"/v2/annotations/{listed}"), warmup=3),
            "own",
            "clio",
            "ms",
            "clio_vs_own",
        )
        body = json.dumps({"kind": "point", "pos": [1, 2, 3], "tags": ["bench"], "prop": {"n": "1"}}).encode()
        posting = {**headers, "Content-Type": "application/json"}

        def post(path: str):
            return figures.burst(
                lambda: 1000 * function_call(fn.port, "POST", path, posting, body), POST_BURST
            )

        results |= figures.figure(
            "post_1",
            figures.interleave(
                post(f"/annotations/v2/{written}"), post(f"/v2/annotations/{written}"), warmup=3
            ),
            "own",
            "clio",
            "ms",
            "clio_vs_own",
        )
    finally:
        fn.close()
    results |= _shaping(listed)
    checkout = os.environ.get("CLIO_STORE")
    if not checkout:
        print(
            "clio: the side-by-side with clio-store was skipped: give a clio-store checkout, "
            "`CLIO_STORE=/path/to/clio-store make bench BENCH=clio`",
            flush=True,
        )
        results["clio_store"] = "skipped (CLIO_STORE unset)"
        return results
    return results | side_by_side(env, headers, os.path.abspath(checkout), listed)


def _get(port: int, path: str, headers: dict[str, str]) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers=headers)
    return conn.getresponse().read()


def _shaping(dataset: str) -> dict[str, float]:
    """Milliseconds to shape the dataset's stored annotations as each GET route does."""
    from common import jsonio
    from common.storage.datasets import Dataset
    from functions.annotations import main

    records = [s.to_dict() for s in main._queries(Dataset(dataset, {}), [USER])[0].stream()]
    routes = {(r.method, r.path): r for r in main.app.routes}
    own, clio = routes["GET", "/annotations/v2/<name>"], routes["GET", "/v2/annotations/<name>"]
    sides = {
        "own": lambda: [own.public(r, own.item_adapter) for r in records],
        "clio": lambda: [clio.public(main.clio_item(r), clio.item_adapter) for r in records],
    }
    best = dict.fromkeys(sides, float("inf"))
    for _ in range(SHAPE_RUNS):  # interleaved, as the pairs above
        for side, shape in sides.items():
            started = time.perf_counter()
            b"".join(jsonio.stream_array(shape()))
            best[side] = min(best[side], time.perf_counter() - started)
    out = {f"shape_1k_{side}_ms": seconds * 1000 for side, seconds in best.items()}
    out["shape_1k_clio_vs_own"] = out["shape_1k_clio_ms"] / out["shape_1k_own_ms"]
    return out


# -- clio-store side by side -------------------------------------------------------------------


def _requirements(checkout: str) -> list[str]:
    """clio-store's production requirements: requirements.txt, or pixi.toml's PyPI ones."""
    path = os.path.join(checkout, "requirements.txt")
    if os.path.exists(path):
        return ["-r", path]
    with open(os.path.join(checkout, "pixi.toml"), "rb") as f:
        pixi = tomllib.load(f)
    deps = pixi.get("feature", {}).get("prod", {}).get("pypi-dependencies") or pixi["pypi-dependencies"]
    return [name if spec == "*" else f"{name}{spec}" for name, spec in deps.items()]


def clio_store_venv(checkout: str) -> str:
    """A virtualenv with clio-store's requirements under .bench/ (made once per requirements)."""
    requirements = _requirements(checkout)
    spec = json.dumps(requirements if requirements[0] != "-r" else open(requirements[1]).read())
    venv = os.path.join(ROOT, ".bench", "clio-store-venv")
    stamp = os.path.join(venv, "requirements.sha256")
    digest = hashlib.sha256(spec.encode()).hexdigest()
    if os.path.exists(stamp) and open(stamp).read() == digest:
        return venv
    print(f"clio: installing clio-store's requirements into {venv} (once; about a minute)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    pip = [
        os.path.join(venv, "bin", "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, *requirements], check=True)
    with open(stamp, "w") as f:
        f.write(digest)
    return venv


class DatasetGatewayStandIn:
    """DatasetGateway's `GET /api/v1/user/cache` on loopback: every bearer is the owner, admin,
    with view and edit on every dataset (clio-store's admin alone may not read a dataset)."""

    def __init__(self, email: str, datasets: list[str]):
        permissions = {name: ["view", "edit"] for name in datasets}
        user = {"email": email, "name": "bench", "admin": True, "permissions_v2": permissions}
        body = json.dumps(user).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802  (http.server's name)
                ok = self.path.startswith("/api/v1/user/cache") and self.headers.get("Authorization")
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body if ok else b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def _dataset_record(i: int) -> dict:
    """A dataset as clio's website keeps them: description, tag and uuid, templated layers."""
    return {
        "description": f"bench dataset {i}",
        "public": i % 5 == 0,
        "tag": "v1.0",
        "uuid": f"{i:04x}abcd",
        "dvid": "https://dvid.example.org",
        "mainLayer": "grayscale",
        "neuroglancer": {
            "layers": [
                {"name": "grayscale", "type": "image", "source": "precomputed://gs://bench/{tag}/jpeg"},
                {"name": "segmentation", "type": "segmentation", "source": "dvid://{uuid}/segmentation"},
            ]
        },
    }


def _seed_clio_store(dataset: str) -> list[str]:
    """The same documents in clio-store's own collections: every dataset Gatehouse holds now
    (their names returned), and the 1,000 annotations of `dataset`."""
    from common.storage import store

    for i in range(DATASETS):
        store.collection("datasets").document(f"cliods{i}").set(_dataset_record(i))
    clio_datasets = store.collection("clio_datasets")
    names = []
    for snap in store.collection("datasets").stream():
        names.append(snap.id)
        kept = {k: v for k, v in snap.to_dict().items() if k in _dataset_record(0)}
        clio_datasets.document(snap.id).set({"description": "", **kept})  # clio's model needs one
    annotations = store.collection("clio_annotations_v2").document(dataset).collection(USER)
    for chunk in store.chunks(_records(LIST_COUNT), store.MAX_WRITES_PER_COMMIT):
        batch = store.db().batch()
        for _, record in chunk:
            doc = {k: record[k] for k in ("kind", "pos", "tags", "user")}
            batch.set(annotations.document(record["key"]), doc)
        batch.commit()
    return names


def side_by_side(
    env: dict[str, str], headers: dict[str, str], checkout: str, dataset: str
) -> dict[str, float]:
    venv = clio_store_venv(checkout)
    names = _seed_clio_store(dataset)  # before clio-store starts: it caches the datasets at start-up
    copy = os.path.join(tempfile.mkdtemp(prefix="clio-store-"), "clio-store")
    shutil.copytree(checkout, copy, ignore=shutil.ignore_patterns(".git", ".pixi", "__pycache__"))
    gateway = DatasetGatewayStandIn(USER, names)
    port = free_port()
    clio_env = {
        "PATH": os.environ["PATH"],
        "FIRESTORE_EMULATOR_HOST": env["FIRESTORE_EMULATOR_HOST"],
        "GOOGLE_CLOUD_PROJECT": env["GOOGLE_CLOUD_PROJECT"],
        "DSG_URL": gateway.url,
        "OWNER": USER,
    }
    log = open(os.path.join(os.path.dirname(copy), "clio-store.log"), "w")
    uvicorn = [os.path.join(venv, "bin", "uvicorn"), "main:app", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(uvicorn, cwd=copy, env=clio_env, stdout=log, stderr=subprocess.STDOUT)
    gatehouse = {
        "annotations": Function(env, headers),
        "datasets": Function(env, headers, os.path.join(ROOT, "functions", "datasets", "main.py")),
    }
    try:
        _wait_for(port, process, log.name)
        clio_answer = json.loads(_get(port, f"/v2/annotations/{dataset}", headers))
        ours = json.loads(_get(gatehouse["annotations"].port, f"/v2/annotations/{dataset}", headers))
        assert len(clio_answer) == len(ours) == LIST_COUNT, (len(clio_answer), len(ours))
        clio_sets = json.loads(_get(port, "/v2/datasets", headers))
        our_sets = json.loads(_get(gatehouse["datasets"].port, "/v2/datasets", headers))
        assert set(clio_sets) == set(our_sets), set(clio_sets) ^ set(our_sets)

        def timed(port: int, path: str, calls: int):
            return figures.burst(lambda: 1000 * function_call(port, "GET", path, headers), calls)

        path = f"/v2/annotations/{dataset}"
        results = figures.figure(
            "clio_store_get_1k",
            figures.interleave(
                timed(port, path, GET_BURST), timed(gatehouse["annotations"].port, path, GET_BURST), warmup=3
            ),
            "clio_store",
            "gatehouse",
            "ms",
            "speedup_vs_clio_store",
            anchor_over_side=True,
        )
        results |= figures.figure(
            "clio_store_datasets",
            figures.interleave(
                timed(port, "/v2/datasets", DATASETS_BURST),
                timed(gatehouse["datasets"].port, "/v2/datasets", DATASETS_BURST),
                warmup=3,
            ),
            "clio_store",
            "gatehouse",
            "ms",
            "speedup_vs_clio_store",
            anchor_over_side=True,
        )
        results["clio_store_datasets_count"] = len(our_sets)
        return results
    finally:
        for fn in gatehouse.values():
            fn.close()
        process.terminate()
        process.wait(timeout=10)
        log.close()
        gateway.stop()
        shutil.rmtree(copy, ignore_errors=True)  # its log stays beside it


def _wait_for(port: int, process: subprocess.Popen, log: str, timeout: float = 60) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"clio-store exited ({process.returncode}); its log: {log}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"clio-store did not answer within {timeout}s; its log: {log}")
