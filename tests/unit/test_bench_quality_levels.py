"""bench/quality_levels.py's choice of a `low` range from its per-bin miss rates (pure logic)."""

from __future__ import annotations

from bench.quality_levels import bin_table, low_cutoff


def _bins(*rows: tuple[float, float, int, float]) -> list[dict]:
    return [{"from": a, "below": b, "faces": n, "fnmr": rate} for a, b, n, rate in rows]


def test_the_run_of_bad_bins_from_the_worse_end_sets_the_cutoff():
    table = _bins((0, 10, 40, 0.5), (10, 20, 40, 0.2), (20, 30, 40, 0.05), (30, 40, 40, 0.3))
    assert low_cutoff(table, "min") == 20  # the bad bin at 30-40 is past a good one: not low
    assert low_cutoff(list(table), "max") == 30


def test_bins_of_few_faces_neither_extend_nor_end_the_run():
    table = _bins((0, 10, 3, 1.0), (10, 20, 40, 0.2), (20, 30, 5, 0.0), (30, 40, 40, 0.15), (40, 50, 40, 0.01))
    assert low_cutoff(table, "min") == 40
    assert low_cutoff(_bins((0, 10, 40, 0.01), (10, 20, 40, 0.5)), "min") is None


def test_each_measure_is_judged_on_its_own_degradations():
    rows = [
        {"degradation": "shrunk_0.25", "similarity": 0.1, "face_size": 15.0},
        {"degradation": "blur_4", "similarity": 0.1, "face_size": 90.0},
        {"degradation": "original", "similarity": 0.6, "face_size": 90.0},
    ]
    table = {(row["from"], row["below"]): row for row in bin_table(rows, "face_size", 0.3)}
    assert table[(0, 15)]["faces"] == 0 and table[(15, 18)]["missed"] == 1
    assert table[(60, 1e9)]["faces"] == 1 and table[(60, 1e9)]["missed"] == 0  # the blurred probe is not counted
