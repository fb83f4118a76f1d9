"""`make bench`'s arithmetic (bench/figures.py) and its listing in the README."""

import os
import re

from bench import figures

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pairs_alternate_their_order():
    order = []

    def side(label):
        return lambda: order.append(label) or 1.0

    pairs = figures.interleave(side("A"), side("B"), n=4, warmup=1)
    assert "".join(order) == "AB" + "AB" + "BA" + "AB" + "BA"
    assert len(pairs) == 4


def test_a_figure_is_medians_ranges_and_the_median_of_per_pair_ratios():
    pairs = [(10.0, 20.0), (10.0, 10.0), (40.0, 20.0)]  # ratios side/anchor 2, 1, 0.5
    out = figures.figure("x", pairs, "floor", "ours", "ms", "vs_floor")
    assert out["x_n"] == 3
    assert (out["x_floor_p50_ms"], out["x_floor_min_ms"], out["x_floor_max_ms"]) == (10, 10, 40)
    assert (out["x_ours_p50_ms"], out["x_ours_min_ms"], out["x_ours_max_ms"]) == (20, 10, 20)
    assert (out["x_vs_floor"], out["x_vs_floor_min"], out["x_vs_floor_max"]) == (1, 0.5, 2)
    speedup = figures.figure("x", pairs, "raw", "ours", "s", "speedup", anchor_over_side=True)
    assert speedup["x_speedup"] == 1 and speedup["x_speedup_max"] == 2


def test_goals_say_pass_or_miss(tmp_path, capsys):
    figures.report("transfer", {"done_p50_s": 0.7}, str(tmp_path))
    figures.report("signatures", {"slow_storage_20ms_first_query_p50_ms": 20.0}, str(tmp_path))
    printed = capsys.readouterr().out
    assert "PASS  transfer POST -> done" in printed
    assert "MISS  likelocation" in printed
    assert (tmp_path / ".bench" / "transfer.json").exists()


def test_the_readme_lists_every_bench():
    with open(os.path.join(ROOT, "README.md")) as f:
        listed = set(re.findall(r"^\| `(\w+)` \|", f.read(), re.M))
    assert listed >= set(figures.BENCHES)
