"""A match threshold that follows the gallery: open-set (1:N) false-positive identification.

A recognition compares a stranger's face with every face of the gallery, so the chance that
*some* enrolled face scores above a fixed threshold grows with the gallery. If one comparison
of two different people reaches the threshold `t` with probability p(t) (the per-comparison
false-match rate), a stranger searched against a gallery of N independent faces is falsely
identified with probability

    FPIR(N, t) = 1 - (1 - p(t))^N                                            (closed form)

p(t) is calibrated once per recognizer: `openset_tail.json` beside this module holds it on a
fine threshold grid (0.100 to 0.950), measured on every pair of different people among up to 5
LFW development photos per person and, beyond the thresholds those pairs can resolve (about
5e-6), a fitted exponential tail that falls more slowly than the measured one bends
(`python -m bench.openset` writes the file). The closed form treats the N comparisons as
independent. On LFW galleries of 100 to 1,875 persons it predicts the measured FPIR within
sampling error, but between 0.34 and 0.38 it runs 10 to 30 % low. That is why the
recommended target is MATCH_FPIR = 0.0075 for a goal of 1 % (docs/RECOGNITION.md,
"Open-set identification").

`gallery_size` means comparisons: with the service's best-face rule (a person scores its
best-matching enrolled face) every enrolled face is one chance of a false match, so pass the
number of faces in the gallery; the number of persons underestimates the FPIR of persons
with several faces.

Pure logic: no database, web or model import; numpy only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

TAIL_PATH = Path(__file__).resolve().parent / "openset_tail.json"
THRESHOLD_DECIMALS = 3  # thresholds are rounded up to 0.001, so rounding never raises the FPIR
FPIR_SIGNIFICANT = 3  # expected FPIRs are reported to 3 significant digits


@dataclass(frozen=True, eq=False)  # hashed by identity: lru_cache keys on it
class Tail:
    """The per-comparison false-match rate p(t) of one recognizer on a threshold grid."""

    model: str
    thresholds: np.ndarray  # increasing
    log10_p: np.ndarray  # non-increasing; finite (the fitted tail has no zeros)
    impostor_pairs: int

    def p(self, threshold: float) -> float:
        """p(threshold), interpolated linearly in log10 p between grid points.

        Outside the grid the end value is returned: below the first grid threshold that
        underestimates p, which is why threshold_for never goes below the grid; above the
        last one p is already far below anything a gallery of a billion faces could show.
        """
        return float(10.0 ** np.interp(threshold, self.thresholds, self.log10_p))


@lru_cache(maxsize=4)
def load_tail(path: str | Path = TAIL_PATH) -> Tail:
    """The calibrated tail (read once per process and path)."""
    document = json.loads(Path(path).read_text())
    thresholds = np.asarray(document["thresholds"], dtype=np.float64)
    p = np.asarray(document["p"], dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.shape != p.shape or len(thresholds) < 2:
        raise ValueError(f"{path}: thresholds and p must be equal-length lists")
    if np.any(np.diff(thresholds) <= 0):
        raise ValueError(f"{path}: thresholds must increase")
    if np.any(p <= 0) or np.any(p > 1) or np.any(np.diff(p) > 0):
        raise ValueError(f"{path}: p must lie in (0, 1] and must not increase with the threshold")
    return Tail(
        model=str(document["model"]),
        thresholds=thresholds,
        log10_p=np.log10(p),
        impostor_pairs=int(document["impostor_pairs"]),
    )


def _round_significant(value: float, digits: int = FPIR_SIGNIFICANT) -> float:
    return float(f"{value:.{digits}g}")


def _fpir(p: float, gallery_size: int) -> float:
    # 1 - (1 - p)^N without the cancellation of small p (p is 1e-9 and less at 1M faces).
    if gallery_size <= 0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return -math.expm1(gallery_size * math.log1p(-p))


def expected_fpir(threshold: float, gallery_size: int, tail: Tail | None = None) -> float:
    """The expected false-positive identification rate of a stranger at `threshold`.

    The closed form 1 - (1 - p(threshold))^gallery_size over the calibrated tail, rounded to
    3 significant digits (an estimate: more digits would be false precision). A gallery of
    0 faces cannot falsely identify anyone: 0.0.
    """
    tail = tail or load_tail()
    return _round_significant(_fpir(tail.p(threshold), int(gallery_size)))


@lru_cache(maxsize=4096)
def _threshold_for(gallery_size: int, target_fpir: float, floor: float, tail: Tail) -> float:
    lowest = max(floor, float(tail.thresholds[0]))
    if gallery_size <= 0:
        return round(lowest, THRESHOLD_DECIMALS)
    # The per-comparison rate that gives exactly the target over gallery_size comparisons.
    p_target = -math.expm1(math.log1p(-target_fpir) / gallery_size)
    log_target = math.log10(p_target)
    log_p = tail.log10_p
    if log_target >= log_p[0]:
        exact = float(tail.thresholds[0])
    elif log_target < log_p[-1]:
        exact = float(tail.thresholds[-1])  # beyond the calibration: the highest threshold it knows
    else:
        # The first grid point at or below the target, and linear interpolation in log10 p
        # back towards the previous one (log10 p is non-increasing, possibly flat).
        i = int(np.argmax(log_p <= log_target))
        t0, t1, y0, y1 = tail.thresholds[i - 1], tail.thresholds[i], log_p[i - 1], log_p[i]
        exact = float(t1 if y0 == y1 else t0 + (t1 - t0) * (y0 - log_target) / (y0 - y1))
    scale = 10**THRESHOLD_DECIMALS
    rounded_up = math.ceil(exact * scale - 1e-6) / scale
    return round(max(lowest, min(rounded_up, float(tail.thresholds[-1]))), THRESHOLD_DECIMALS)


def threshold_for(gallery_size: int, target_fpir: float, floor: float, tail: Tail | None = None) -> float:
    """The lowest threshold whose expected FPIR over `gallery_size` faces is at most `target_fpir`.

    - Never below `floor` (nor below the calibration grid): small galleries would otherwise get
      thresholds at which two different people's faces often match (p is 1e-3 at 0.23), and a
      gallery of one face is a 1:1 question whose answer should not be looser than verify's.
    - Rounded up to 0.001, so expected_fpir(threshold_for(N, x, f), N) <= x always holds.
    - Grows with the gallery: monotonic non-decreasing in gallery_size.
    - A gallery of 0 (or 1) faces gets the floor (or the 1:1 threshold for the target).
    - A target the calibration cannot reach gets the highest calibrated threshold.
    Cached: one computation per (gallery size, target, floor).
    """
    if not 0.0 < target_fpir < 1.0:
        raise ValueError(f"target_fpir must lie in (0, 1), not {target_fpir}")
    return _threshold_for(int(gallery_size), float(target_fpir), float(floor), tail or load_tail())
