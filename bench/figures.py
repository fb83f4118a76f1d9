"""The one place for how a figure is measured and shown: interleaved A/B pairs, medians with
their range and n, the median of the per-pair ratios, the goals and PASS/MISS.

A figure is a side (B, what we ship) against its anchor (A, the floor or the competitor),
measured in one run in the order A B, B A, A B, ... so that drift on a shared machine falls on
both sides alike; the ratio is taken within each pair, then its median is reported.
"""

from __future__ import annotations

import json
import operator
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass

PAIRS = 15  # per figure, unless a pair is slow (the bench says so where it takes fewer)


def interleave(anchor: Callable[[], float], side: Callable[[], float], n: int = PAIRS, warmup: int = 1):
    """n (anchor, side) samples taken A B, B A, A B, ... after `warmup` unrecorded rounds."""
    for _ in range(warmup):
        anchor()
        side()
    pairs = []
    for i in range(n):
        if i % 2:
            b = side()
            a = anchor()
        else:
            a = anchor()
            b = side()
        pairs.append((a, b))
    return pairs


def burst(call: Callable[[], float], calls: int) -> Callable[[], float]:
    """One sample = the mean of `calls` consecutive calls (for calls of a few milliseconds)."""
    return lambda: sum(call() for _ in range(calls)) / calls


def figure(
    name: str,
    pairs: list[tuple[float, float]],
    anchor: str,
    side: str,
    unit: str,
    ratio: str,
    anchor_over_side: bool = False,
) -> dict[str, float]:
    """`{name}_{anchor|side}_{p50,min,max}_{unit}`, `{name}_n` and `{name}_{ratio}`: the median
    over the pairs of side/anchor (or anchor/side: a speed-up when the samples are times), with
    its `_min` and `_max`."""
    out: dict[str, float] = {f"{name}_n": len(pairs)}
    for label, values in ((anchor, [a for a, _ in pairs]), (side, [b for _, b in pairs])):
        out[f"{name}_{label}_p50_{unit}"] = statistics.median(values)
        out[f"{name}_{label}_min_{unit}"] = min(values)
        out[f"{name}_{label}_max_{unit}"] = max(values)
    ratios = [a / b if anchor_over_side else b / a for a, b in pairs]
    key = f"{name}_{ratio}"
    out[key] = statistics.median(ratios)
    out[f"{key}_min"] = min(ratios)
    out[f"{key}_max"] = max(ratios)
    print(f"  measured {key} = {out[key]:.3f} (n={len(pairs)})", flush=True)  # progress
    return out


@dataclass(frozen=True)
class Goal:
    key: str  # the figure in a bench's results
    op: str  # "<=", "<", ">=", ">"
    limit: float
    text: str  # the goal in the words

    def met(self, value: float) -> bool:
        ops = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
        return ops[self.op](value, self.limit)


# Issue 24's table, figure by figure; benches without a line there keep their own goal in words.
GOALS: dict[str, list[Goal]] = {
    "foundation": [
        Goal(
            "cold_authenticated_vs_bare_firestore",
            "<=",
            1.0,
            "cold start, first authenticated answer <= 1.0x a bare 'import Firestore + read one document'",
        ),
        Goal("warm_roles_vs_hello", ">=", 0.75, "warm GET /roles >= 0.75x a bare hello (requests/s)"),
        Goal("auth_authz_dev_token_us", "<", 500, "auth + authz per request < 500 us (dev token)"),
        Goal("auth_authz_api_key_us", "<", 500, "auth + authz per request < 500 us (API key)"),
    ],
    "annotations": [
        Goal(
            "get_1k_vs_wire_floor",
            "<=",
            1.2,
            "warm GET 1,000 annotations <= 1.2x the wire floor (plain RunQuery + decode)",
        ),
        Goal(
            "list_100k_speedup_vs_raw_stream",
            ">=",
            1.5,
            "list 100k annotations >= 1.5x the raw client's stream()",
        ),
        Goal("list_100k_x3_peak_rss_mb", "<", 150, "list 100k: peak RSS < 150 MB"),
        Goal("list_rss_x3_vs_first", "<=", 1.05, "list 100k: RSS flat across listings (3 vs 1, <= 5 %)"),
        Goal(
            "insert_10k_speedup_vs_raw_batches",
            ">=",
            3.0,
            "bulk insert 10k >= 3x naive sequential 500-write batches of the raw client",
        ),
        Goal(
            "post_1_vs_raw_commit",
            "<=",
            1.2,
            "POST one annotation <= 1.2x the raw commit floor (annotation + audit, one plain commit)",
        ),
    ],
    "clio": [
        Goal(
            "clio_store_get_1k_speedup_vs_clio_store",
            ">=",
            2.0,
            "warm GET 1,000 annotations >= 2x clio-store's throughput",
        ),
        Goal(
            "clio_store_datasets_speedup_vs_clio_store",
            ">=",
            2.0,
            "GET /datasets >= 2x clio-store's throughput",
        ),
        Goal("get_1k_clio_vs_own", "<", 1.05, "a /v2 GET of 1,000 costs < 5 % over Gatehouse's own route"),
        Goal("post_1_clio_vs_own", "<", 1.05, "a /v2 POST of one costs < 5 % over Gatehouse's own route"),
    ],
    "signatures": [
        Goal(
            "slow_storage_20ms_again_p50_ms",
            "<",
            15,
            "likelocation, 1M signatures, 20 ms injected per object read, a point asked before: p50 < 15 ms",
        ),
        Goal(
            "slow_storage_20ms_first_query_p50_ms",
            "<",
            15,
            "likelocation, 1M signatures, 20 ms injected per object read, a new point: p50 < 15 ms",
        ),
    ],
    "bodyannotations": [
        Goal(
            "all_function_vs_direct",
            ">=",
            0.9,
            "/all of 100,000 DVID records through the function >= 0.9x the same bytes from DVID directly",
        ),
        Goal(
            "all_rss_growth_mb",
            "<",
            16,
            "/all: peak RSS flat across listings (growth < 16 MB for 35 MB answers)",
        ),
    ],
    "transfer": [Goal("done_p50_s", "<=", 0.8, "transfer POST -> done, 8 parts of 0.5 s: <= 0.8 s")],
}

NOTES = {
    "soak": "SOAK_SECONDS at SOAK_RATE across 5 functions, mixed reads/writes: no errors; RSS flat",
    "twins": "warm mock call over HTTP < 5 ms p50 over the same function in-process; a request run (fresh jailed worker) < 100 ms p50 over in-process; request runs per second; cold start to the first call vs hello",
    "journey": "git clone -> make dev -> token -> the walkthrough's submit, review, approve, run -> the private result: under 2 minutes",
    "twinjobs": "an async trivial twin call: 202 -> done through the Pub/Sub emulator (p50), against the same call made synchronously",
    "transfer": "POST /transfer answers well under a second, whatever the parts take",
    "signatures": "exact: the same matches as brute force over all records",
}

BENCHES = [
    "foundation",
    "annotations",
    "signatures",
    "transfer",
    "soak",
    "twins",
    "journey",
    "twinjobs",
    "clio",
    "bodyannotations",
]


def report(name: str, results: dict[str, float], root: str) -> None:
    """Print every figure, then each goal with PASS/MISS; write .bench/<name>.json."""
    print(f"\n{name}\n{'figure':56} {'value':>12}")
    for key, value in results.items():
        print(f"{key:56} {value:12.3f}" if isinstance(value, int | float) else f"{key:56} {value}")
    for goal in GOALS.get(name, []):
        value = results.get(goal.key)
        verdict = "n/a " if not isinstance(value, int | float) else "PASS" if goal.met(value) else "MISS"
        shown = "not measured" if verdict == "n/a " else f"{goal.key} = {value:.3f}"
        print(f"  {verdict}  {goal.text} ({shown})")
    if name in NOTES:
        print(f"  goal: {NOTES[name]}")
    print(
        "  (ratios: the median of per-pair ratios of interleaved A/B pairs; ranges are min-max)", flush=True
    )
    os.makedirs(os.path.join(root, ".bench"), exist_ok=True)
    with open(os.path.join(root, ".bench", f"{name}.json"), "w") as f:
        json.dump(results, f, indent=2)
