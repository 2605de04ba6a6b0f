"""Fitting a Detector, whatever its features: the Isolation Forest, its threshold and the
per-feature limits, all learned from rows of normal traffic.

The threshold is set on the training data itself: a low quantile of the training scores,
lowered by a margin, so normal traffic like the training data is almost never flagged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sklearn.ensemble import IsolationForest

from dexwatch.core.detector import Detector, alarming

log = logging.getLogger("dexwatch.model")


@dataclass(frozen=True)
class TrainingParams:
    n_estimators: int = 200
    max_samples: int = 256
    # The threshold: this quantile of the training scores ...
    threshold_quantile: float = 0.001
    # ... minus this margin (score units), so the training data's tail is not flagged.
    # Measured with feature_limit_factor below on 2 normal simulated days of five pools
    # (28,750 windows each) and 18 models (bootstraps of 1 to 3 other hours, 2 forest seeds):
    # 0.1 and 2.5 left at most one false alert thread a day (on 4 of 36 model-days); 0.07
    # and 2.0 up to 7: LP removals with a price move (the forest), and V3 LP removals of 3%
    # of the liquidity where a 2-hour bootstrap's largest was 1.5% (the limits). Raised to
    # 0.2 on real traffic's tuning day (bench/real_traffic_tuning.py): models trained on a
    # quarter of it flagged ordinary windows 0.67 times a day at 0.1, never at 0.2.
    threshold_margin: float = 0.2
    # Per-feature limit: the largest deviation seen in training times this factor, and at
    # least min_feature_limit robust standard deviations.
    feature_limit_factor: float = 2.5
    min_feature_limit: float = 8.0
    # A feature with an incident floor (fit_detector's floors) gets a limit at least this
    # share of the way from training's median to the floor: a calm training day must not make
    # an ordinary market move an alarm. Chosen on real traffic's tuning day
    # (bench/real_traffic_tuning.py): models trained on a quarter of it learned a one-minute
    # price limit of 0.8 % and a net inflow limit of 1.3 %, and the rest of the day's market
    # moves of 1-1.4 % and inflows of 2-6 % were their only alerts (5.7-7 a day; 0-1 at 0.2).
    min_share_of_floor: float = 0.2
    seed: int = 7


DEFAULT_PARAMS = TrainingParams()


def fit_detector(
    x: np.ndarray,
    feature_names: Sequence[str],
    features_version: int,
    params: TrainingParams,
    min_rows: int = 50,
    context_features: Sequence[str] = (),
    floors: Mapping[str, float] | None = None,
    size_features: Sequence[str] = (),
    benign_rises: Sequence[str] = (),
    limits_at_floor: Sequence[str] = (),
) -> Detector:
    """A Detector trained on the rows of ``x`` (columns in ``feature_names`` order).

    Args:
        context_features: get no limit: they inform the forest but never flag a row alone.
        size_features: how big a pool is (volume, TVL, liquidity in raw units): no limit,
            and the forest does not see them either, so that pools larger or smaller than
            any in training are judged by how they behave, not by their size.
        floors: per feature, a value that is always anomalous: its learned limit is kept
            inside it, however far training's own rows went (a model trained on traffic
            with large normal removals must still see a drain), and at least
            ``params.min_share_of_floor`` of the way to it. For a feature of
            ``benign_rises`` the floor is below training's median.
        benign_rises: features whose rise above training's median never flags a row (a
            liquidity inflow): their limit is learned from, and applies to, their fall.
        limits_at_floor: features of ``floors`` whose limit is the floor itself, whatever
            training saw (training that cannot have seen them vary: see the feature). The
            forest does not see them either: what it would learn of them is what a training
            set that cannot show them says (a bootstrap's hours hold no earlier day and no
            sandwich), and extra columns that never vary still change how its trees draw.
    """
    if len(x) < min_rows:
        raise ValueError(f"{len(x)} feature rows are too few to train on (need {min_rows} or more)")
    # Sizes, and features judged by their floor alone, are not the forest's to learn.
    unlearned = (*size_features, *limits_at_floor)
    forest_columns = tuple(j for j, name in enumerate(feature_names) if name not in unlearned)
    forest = IsolationForest(
        n_estimators=params.n_estimators,
        max_samples=min(params.max_samples, len(x)),
        random_state=params.seed,
    ).fit(x[:, forest_columns])
    training_scores = forest.score_samples(x[:, forest_columns])
    threshold = (
        float(np.quantile(training_scores, params.threshold_quantile)) - params.threshold_margin
    )
    q1, median, q3 = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
    # Features that barely vary in normal traffic (a removed share is usually 0) get a small
    # floor, so any real movement stands out.
    scale = np.maximum((q3 - q1) / 1.349, np.maximum(np.abs(median) * 0.05, 1e-3))
    falls_only = np.array([name in benign_rises for name in feature_names])
    deviation = np.abs(alarming((x - median) / scale, falls_only))
    limits = np.maximum(
        deviation.max(axis=0) * params.feature_limit_factor, params.min_feature_limit
    )
    limits[[name in (*context_features, *size_features) for name in feature_names]] = np.inf
    for name, floor in (floors or {}).items():
        j = list(feature_names).index(name)
        to_floor = (median[j] - floor if falls_only[j] else floor - median[j]) / scale[j]
        if to_floor > 0:
            # Just inside the floor: a row at the floor itself scores below 0.
            least = to_floor if name in limits_at_floor else to_floor * params.min_share_of_floor
            limits[j] = min(max(limits[j], least), to_floor * (1 - 1e-9))
        else:
            log.warning("training's median %s %.4g is past its floor %.4g", name, median[j], floor)
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    detector = Detector(
        forest=forest,
        feature_names=tuple(feature_names),
        features_version=features_version,
        threshold=threshold,
        median=median,
        scale=scale,
        limits=limits,
        version=version,
        trained_at=datetime.now(UTC),
        training_rows=len(x),
        params=params.__dict__.copy(),
        forest_columns=None if len(forest_columns) == len(feature_names) else forest_columns,
        benign_rises=tuple(name for name in feature_names if name in benign_rises),
    )
    flagged = int((detector.anomaly_score(x) < 0).sum())
    log.info(
        "trained detector %s on %d rows; %d of them score below the threshold",
        version,
        len(x),
        flagged,
    )
    return detector
