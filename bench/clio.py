"""What clio's shapes cost: a `/v2` call against the same call on Gatehouse's own route, on one
annotations function (its own functions-framework process, the same emulator, the same run):

1. GET 1,000 annotations: `GET /v2/annotations/{ds}` vs `GET /annotations/v2/{ds}`;
2. POST one annotation: `POST /v2/annotations/{ds}` vs `POST /annotations/v2/{ds}`.

Interleaved A/B pairs (the order alternates from pair to pair, so drift on a shared machine
falls on both sides alike); for each side the median with its range and n, and the median of
the per-pair ratios clio / own. The goal: the adapter costs < 5 % at p50.

3. The same 1,000 stored annotations shaped in-process as each GET shapes them (its view, its
   response model, JSON): the adapter's own work without the emulator's and the network's
   noise, best of SHAPE_RUNS interleaved runs.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time

from bench.annotations import USER, Function, _dataset, _records, raw_insert

LIST_COUNT = 1_000
PAIRS = 60
WARMUP = 5
SHAPE_RUNS = 100


def _call(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> float:
    """Seconds from the request to the last byte of a 200 answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
    return elapsed


def _pairs(port: int, method: str, own: str, clio: str, headers: dict[str, str], body: bytes | None = None):
    """PAIRS interleaved (own, clio) timings, after WARMUP of each."""
    for _ in range(WARMUP):
        _call(port, method, own, headers, body)
        _call(port, method, clio, headers, body)
    pairs = []
    for i in range(PAIRS):
        if i % 2:
            c = _call(port, method, clio, headers, body)
            o = _call(port, method, own, headers, body)
        else:
            o = _call(port, method, own, headers, body)
            c = _call(port, method, clio, headers, body)
        pairs.append((o, c))
    return pairs


def _figures(name: str, pairs: list[tuple[float, float]]) -> dict[str, float]:
    own, clio = [o * 1000 for o, _ in pairs], [c * 1000 for _, c in pairs]
    out: dict[str, float] = {f"{name}_n": len(pairs)}
    for side, values in (("own", own), ("clio", clio)):
        out[f"{name}_{side}_p50_ms"] = statistics.median(values)
        out[f"{name}_{side}_min_ms"] = min(values)
        out[f"{name}_{side}_max_ms"] = max(values)
    out[f"{name}_clio_vs_own_p50"] = out[f"{name}_clio_p50_ms"] / out[f"{name}_own_p50_ms"]
    out[f"{name}_paired_ratio_p50"] = statistics.median(c / o for o, c in pairs)
    return out


def run(env: dict[str, str], headers: dict[str, str]) -> dict[str, float]:
    listed, written = _dataset("clio1k"), _dataset("cliopost")
    raw_insert(listed, _records(LIST_COUNT))
    fn = Function(env, headers)
    try:
        assert len(json.loads(_get(fn.port, f"/v2/annotations/{listed}", headers))) == LIST_COUNT
        results = _figures(
            "get_1k",
            _pairs(fn.port, "GET", f"/annotations/v2/{listed}", f"/v2/annotations/{listed}", headers),
        )
        body = json.dumps({"kind": "point", "pos": [1, 2, 3], "tags": ["bench"], "prop": {"n": "1"}}).encode()
        posting = {**headers, "Content-Type": "application/json"}
        results |= _figures(
            "post_1",
            _pairs(
                fn.port, "POST", f"/annotations/v2/{written}", f"/v2/annotations/{written}", posting, body
            ),
        )
    finally:
        fn.close()
    return results | _shaping(listed)


def _get(port: int, path: str, headers: dict[str, str]) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers=headers)
    return conn.getresponse().read()


def _shaping(dataset: str) -> dict[str, float]:
    """Milliseconds to shape the dataset's stored annotations as each GET route does."""
    from common import jsonio
    from functions.annotations import main

    records = [s.to_dict() for s in main._queries(dataset, [USER])[0].stream()]
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
