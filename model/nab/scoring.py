"""NAB's scoring rules, written from their description (shared/notes/nab.md).

Each row after the probation period is worth something if the threshold makes it a
detection: inside a window, the window's first detection earns ``A_TP · S(-(r-i+1)/w) /
S(-1)`` (the earlier, the more); outside, a detection costs ``A_FP · S(|r'-i| / (w'-1))``
relative to the preceding window (little right after it), or ``-A_FP`` with none before it.
A window with no detection costs ``-A_FN``. One threshold per detector and profile is chosen
over the whole corpus, trying every distinct score value; the result is normalised so that
the null detector (never detects) scores 0 and the perfect one (each window's first row) 100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

PROBATION_SHARE = 0.15
PROBATION_MAX_ROWS = 750
OUTSIDE = -1  # window id of a row outside every window


@dataclass(frozen=True)
class Profile:
    name: str
    tp_weight: float
    fn_weight: float
    fp_weight: float


@dataclass(frozen=True)
class SeriesLabels:
    n_rows: int
    windows: tuple[tuple[int, int], ...]  # (first row, last row), inclusive, in time order

    @property
    def probation(self) -> int:
        return probation_length(self.n_rows)


@dataclass(frozen=True)
class SweepResult:
    threshold: float  # detections are scores >= threshold (inf: none)
    raw: float
    null: float
    perfect: float

    @property
    def normalised(self) -> float:
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def probation_length(n_rows: int) -> int:
    return min(math.floor(PROBATION_SHARE * n_rows), PROBATION_MAX_ROWS)


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """S(p) = 2·σ(-5p) - 1, and -1 beyond p = 3."""
    p = np.asarray(position, dtype=np.float64)
    return np.where(p > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * np.minimum(p, 3.0))) - 1.0)


_MAX_TP = float(scaled_sigmoid(-1.0))


@dataclass(frozen=True)
class RowValues:
    """What a detection at each scored row (probation left out) would be worth, per unit weight."""

    rows: np.ndarray  # row numbers after the probation period
    window: np.ndarray  # window number within the series, or OUTSIDE
    unit: np.ndarray  # inside: S(-(r-i+1)/w)/S(-1) in (0, 1]; outside: S(...) in [-1, 0)


def row_values(labels: SeriesLabels) -> RowValues:
    n = labels.n_rows
    window = np.full(n, OUTSIDE, dtype=np.int64)
    unit = np.full(n, -1.0)  # outside, with no window before: -1
    for number, (first, last) in enumerate(labels.windows):
        width = last - first + 1
        inside = np.arange(first, last + 1)
        window[inside] = number
        unit[inside] = scaled_sigmoid(-(last - inside + 1) / width) / _MAX_TP
        # Rows after this window, up to the next one, are scored relative to it.
        following_end = labels.windows[number + 1][0] if number + 1 < len(labels.windows) else n
        after = np.arange(last + 1, following_end)
        # A one-row window would divide by zero: treat its FPs as far from it.
        unit[after] = scaled_sigmoid(np.abs(last - after) / max(width - 1, 1e-12))
    rows = np.arange(labels.probation, n)
    return RowValues(rows=rows, window=window[rows], unit=unit[rows])


def raw_score(labels: SeriesLabels, detections: np.ndarray, profile: Profile) -> float:
    """The raw score of one series' detections (a boolean per row), rule by rule."""
    values = row_values(labels)
    detected = np.asarray(detections, dtype=bool)[values.rows]
    total = 0.0
    for number in range(len(labels.windows)):
        hits = np.flatnonzero(detected & (values.window == number))
        if len(hits):  # only the first detection counts; it is also the best paid
            total += profile.tp_weight * values.unit[hits[0]]
        else:
            total -= profile.fn_weight
    false_alarms = detected & (values.window == OUTSIDE)
    total += profile.fp_weight * float(values.unit[false_alarms].sum())
    return total


def null_and_perfect(labels: Sequence[SeriesLabels], profile: Profile) -> tuple[float, float]:
    windows = sum(len(series.windows) for series in labels)
    return -profile.fn_weight * windows, profile.tp_weight * windows


def sweep(
    labels: Sequence[SeriesLabels], scores: Sequence[np.ndarray], profile: Profile
) -> SweepResult:
    """The best corpus-wide threshold: every distinct score value is tried.

    All scored rows are sorted once by score, highest first; lowering the threshold past a
    row adds its worth. An FP adds its cost; a window row adds how much it raises its
    window's best earning so far (from -A_FN), found with one grouped running maximum."""
    null, perfect = null_and_perfect(labels, profile)
    all_scores, all_windows, all_worth = [], [], []
    first_window = 0
    for series, series_scores in zip(labels, scores, strict=True):
        if len(series_scores) != series.n_rows:
            raise ValueError(f"{len(series_scores)} scores for {series.n_rows} rows")
        values = row_values(series)
        inside = values.window != OUTSIDE
        all_scores.append(np.asarray(series_scores, dtype=np.float64)[values.rows])
        all_windows.append(np.where(inside, values.window + first_window, OUTSIDE))
        all_worth.append(np.where(inside, profile.tp_weight, profile.fp_weight) * values.unit)
        first_window += len(series.windows)
    score = np.concatenate(all_scores)
    if np.isnan(score).any():
        raise ValueError("scores hold NaN")
    window = np.concatenate(all_windows)
    worth = np.concatenate(all_worth)

    order = np.argsort(-score, kind="stable")
    score, window, worth = score[order], window[order], worth[order]
    gain = worth.copy()  # FPs: their cost as they come
    inside = window != OUTSIDE
    in_window = pd.DataFrame({"window": window[inside], "worth": worth[inside]})
    best = in_window.groupby("window")["worth"].cummax()
    best_before = best.groupby(in_window["window"]).shift(1).fillna(-profile.fn_weight)
    gain[inside] = (best - best_before).to_numpy()
    total = null + np.cumsum(gain)

    # Only the last row of a run of equal scores is a threshold's total.
    ends = np.flatnonzero(np.append(score[1:] != score[:-1], True))
    if len(ends) == 0 or total[ends].max() <= null:
        return SweepResult(threshold=math.inf, raw=null, null=null, perfect=perfect)
    best_end = ends[int(np.argmax(total[ends]))]
    return SweepResult(
        threshold=float(score[best_end]), raw=float(total[best_end]), null=null, perfect=perfect
    )
