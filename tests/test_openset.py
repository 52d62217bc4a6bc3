"""domain.openset: thresholds that follow the gallery, against the committed calibration."""

from __future__ import annotations

import json
import math

import pytest

from domain import openset
from domain.openset import TAIL_PATH, expected_fpir, load_tail, threshold_for

SIZES = (1, 2, 10, 100, 300, 1_000, 2_000, 10_000, 100_000, 1_000_000, 10_000_000)
TARGETS = (0.001, 0.005, 0.0075, 0.01, 0.02, 0.05)


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(TAIL_PATH.read_text())


def raw_fpir(threshold: float, gallery_size: int) -> float:
    """The closed form with no rounding, over the same interpolated tail."""
    return 1.0 - (1.0 - load_tail().p(threshold)) ** gallery_size


def test_committed_tail_is_aggregate_calibration_of_the_service_model(document: dict) -> None:
    assert document["model"] == "w600k_mbf"
    assert document["impostor_pairs"] > 1_000_000
    assert set(document) >= {"source", "generated_by", "thresholds", "p", "false_matches", "fit"}
    thresholds, p = document["thresholds"], document["p"]
    assert len(thresholds) == len(p) == len(document["false_matches"])
    assert thresholds[0] <= 0.10 and thresholds[-1] >= 0.95  # the request threshold's whole range
    assert all(b > a for a, b in zip(thresholds, thresholds[1:], strict=False))
    assert all(0 < b <= a <= 1 for a, b in zip(p, p[1:], strict=False))
    # Measured points are counts over the pairs (aggregate statistics, nothing per face).
    measured = [t <= document["measured_up_to"] for t in thresholds]
    for is_measured, count, value in zip(measured, document["false_matches"], p, strict=True):
        if is_measured:
            assert value == pytest.approx(count / document["impostor_pairs"], rel=1e-3)


def test_tail_agrees_with_the_lfw_calibration_of_match_threshold() -> None:
    # docs/RECOGNITION.md: FMR 4.2e-5 to 4.5e-5 at 0.30 over all LFW impostor pairs, 1e-3 at about 0.23.
    tail = load_tail()
    assert 3e-5 < tail.p(0.30) < 6e-5
    assert 5e-4 < tail.p(0.23) < 2e-3
    assert tail.p(0.60) < 1e-10  # the fitted tail keeps falling where label noise flattens the counts


def test_expected_fpir_is_the_closed_form(document: dict) -> None:
    for threshold, p in zip(document["thresholds"][::10], document["p"][::10], strict=True):
        for n in (1, 7, 100, 2_000, 1_000_000):
            exact = -math.expm1(n * math.log1p(-p))
            assert expected_fpir(threshold, n) == pytest.approx(exact, rel=6e-3, abs=1e-300)
    assert expected_fpir(0.30, 1) == pytest.approx(load_tail().p(0.30), rel=6e-3)
    # 2,000 faces at 0.30: about 1 - (1 - 4.6e-5)^2000 = 8.8 %, the 8.5 % the issue measured.
    assert 0.06 < expected_fpir(0.30, 2_000) < 0.11


def test_expected_fpir_of_an_empty_gallery_is_zero() -> None:
    assert expected_fpir(0.30, 0) == 0.0
    assert expected_fpir(0.10, -5) == 0.0


def test_expected_fpir_grows_with_the_gallery_and_falls_with_the_threshold() -> None:
    for threshold in (0.2, 0.3, 0.35, 0.4, 0.5, 0.7):
        values = [expected_fpir(threshold, n) for n in SIZES]
        assert values == sorted(values)
        assert values[-1] > values[0]
    for n in (10, 2_000, 1_000_000):
        values = [expected_fpir(t / 100, n) for t in range(10, 96)]
        assert values == sorted(values, reverse=True)
    assert expected_fpir(0.25, 10_000_000) == 1.0


@pytest.mark.parametrize("target", TARGETS)
def test_threshold_meets_the_target_and_is_the_lowest_that_does(target: float) -> None:
    for n in SIZES:
        threshold = threshold_for(n, target, 0.0)
        assert expected_fpir(threshold, n) <= target
        assert raw_fpir(threshold, n) <= target * (1 + 1e-9)
        lower = round(threshold - 0.001, 3)
        if lower >= float(load_tail().thresholds[0]):
            assert raw_fpir(lower, n) > target, (n, threshold)  # 0.001 less would miss the target


@pytest.mark.parametrize("target", TARGETS)
def test_threshold_grows_with_the_gallery(target: float) -> None:
    thresholds = [threshold_for(n, target, 0.0) for n in SIZES]
    assert thresholds == sorted(thresholds)
    assert thresholds[-1] > thresholds[0]
    stricter = [threshold_for(n, target / 2, 0.0) for n in SIZES]
    assert all(s >= t for s, t in zip(stricter, thresholds, strict=True))


def test_floor_is_respected() -> None:
    for floor in (0.0, 0.25, 0.30, 0.40):
        for n in (0, 1, 10, 100, 2_000, 1_000_000):
            assert threshold_for(n, 0.01, floor) >= floor
    assert threshold_for(10, 0.01, 0.30) == 0.30  # a small gallery keeps the floor
    assert threshold_for(100_000, 0.01, 0.30) > 0.40  # a large one rises above it
    assert threshold_for(100_000, 0.01, 0.30) == threshold_for(100_000, 0.01, 0.0)


def test_empty_and_single_face_galleries() -> None:
    assert threshold_for(0, 0.01, 0.30) == 0.30
    assert threshold_for(-3, 0.01, 0.30) == 0.30
    assert threshold_for(0, 0.01, 0.0) == pytest.approx(float(load_tail().thresholds[0]))  # never below the grid
    # One face is a 1:1 comparison: p(t) <= target, about 0.2 for 1 %.
    single = threshold_for(1, 0.01, 0.0)
    assert load_tail().p(single) <= 0.01 < load_tail().p(single - 0.002)
    assert 0.10 < single < 0.25


def test_values_are_rounded() -> None:
    for n in (1, 1_234, 98_765):
        threshold = threshold_for(n, 0.01, 0.0)
        assert threshold == round(threshold, 3)
        fpir = expected_fpir(threshold, n)
        assert fpir == float(f"{fpir:.3g}")


def test_dev_gallery_thresholds_match_the_measurements() -> None:
    # bench/results/openset.json: about 1,900 faces at 1 % -> 0.345 to 0.35; 1M faces -> about 0.49.
    assert 0.33 < threshold_for(1_900, 0.01, 0.30) < 0.36
    assert 0.36 < threshold_for(10_000, 0.01, 0.30) < 0.40
    assert 0.44 < threshold_for(1_000_000, 0.01, 0.30) < 0.53


def test_unreachable_target_gets_the_highest_calibrated_threshold() -> None:
    assert threshold_for(10**12, 1e-9, 0.30) == pytest.approx(float(load_tail().thresholds[-1]))


@pytest.mark.parametrize("target", (0.0, 1.0, -0.01, 1.5))
def test_target_must_be_a_rate(target: float) -> None:
    with pytest.raises(ValueError):
        threshold_for(100, target, 0.30)


def test_tail_and_thresholds_are_cached() -> None:
    assert load_tail() is load_tail()
    before = openset._threshold_for.cache_info().hits
    threshold_for(4_321, 0.01, 0.30)
    threshold_for(4_321, 0.01, 0.30)
    assert openset._threshold_for.cache_info().hits > before


def test_another_tail_can_be_passed(tmp_path) -> None:
    path = tmp_path / "tail.json"
    path.write_text(json.dumps({"model": "m", "impostor_pairs": 10, "thresholds": [0.1, 0.5], "p": [1e-2, 1e-6]}))
    tail = load_tail(path)
    assert tail.model == "m"
    assert tail.p(0.3) == pytest.approx(1e-4)  # linear in log10 p
    assert threshold_for(1, 1e-4, 0.0, tail) == 0.3
    assert expected_fpir(0.5, 1_000, tail) == pytest.approx(1 - (1 - 1e-6) ** 1000, rel=1e-3)


@pytest.mark.parametrize(
    "broken",
    (
        {"thresholds": [0.1, 0.5], "p": [1e-6, 1e-2]},  # p rises
        {"thresholds": [0.5, 0.1], "p": [1e-2, 1e-6]},  # thresholds fall
        {"thresholds": [0.1, 0.5], "p": [1e-2, 0.0]},  # a zero has no logarithm
        {"thresholds": [0.1], "p": [1e-2]},
        {"thresholds": [0.1, 0.2, 0.3], "p": [1e-2, 1e-3]},
    ),
)
def test_malformed_tail_is_refused(tmp_path, broken: dict) -> None:
    path = tmp_path / "tail.json"
    path.write_text(json.dumps({"model": "m", "impostor_pairs": 10, **broken}))
    with pytest.raises(ValueError):
        load_tail(path)
