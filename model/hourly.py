"""Training the hourly detector: an Isolation Forest on the 13-number vectors of normal
pool hours (``dexwatch/core/features/hourly.py``); the fitting is ``model.training``'s,
shared with the chain-window detector.

The hour of day and the weekday are context features: a first model trained on a day or
two has seen few of their values, and an unseen weekday is not an anomaly. The pool's levels
(volume, TVL, liquidity, their averages) are size features: a first model trained on the
simulator's few pools must score a real pool a hundred times larger by its changes, not its
size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from dexwatch.core.detector import Detector
from dexwatch.core.features.hourly import (
    CONTEXT_FEATURES,
    HOURLY_FEATURE_NAMES,
    HOURLY_FEATURES_VERSION,
    SIZE_FEATURES,
    hourly_vector,
    series_features,
)
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour
from model.training import DEFAULT_PARAMS, TrainingParams, fit_detector

# Hours are scarce (one row per pool and hour): four pools give 50 rows in 13 hours after
# their first day.
MIN_TRAINING_ROWS = 50
DAY_S = 24 * HOUR_S


def training_rows(hours: Iterable[PoolHour]) -> list[dict[str, float]]:
    """The feature rows of every pool's hours whose day before is known: a pool's first day
    has no day-over-day rates (they read 0), and a model trained on such hours alone takes
    any change on the day for an anomaly."""
    by_pool: dict[tuple[int, str], list[PoolHour]] = defaultdict(list)
    for hour in hours:
        by_pool[(hour.chain_id, hour.pool)].append(hour)
    rows = []
    for series in by_pool.values():
        starts = {hour.hour_start for hour in series}
        rows += [
            features
            for hour, features in series_features(series)
            if hour.hour_start - DAY_S in starts
        ]
    return rows


def training_matrix(hours: Iterable[PoolHour]) -> np.ndarray:
    """The hourly rows of ``hours`` as the matrix the detector is fitted on
    (HOURLY_FEATURE_NAMES' columns)."""
    return np.array([hourly_vector(row) for row in training_rows(hours)], dtype=np.float64)


def train_hourly_detector(
    hours: Iterable[PoolHour], params: TrainingParams = DEFAULT_PARAMS
) -> Detector:
    """A Detector for the hourly vector, trained on the hours of normal traffic."""
    return fit_detector(
        training_matrix(hours),
        HOURLY_FEATURE_NAMES,
        HOURLY_FEATURES_VERSION,
        params,
        min_rows=MIN_TRAINING_ROWS,
        context_features=CONTEXT_FEATURES,
        size_features=SIZE_FEATURES,
    )
