"""The trained detector as saved by ``model`` and loaded by the pipeline and the server.

A ``Detector`` is an Isolation Forest plus what serving needs to use it the way it was
trained: the feature names and their definitions' version, the threshold, and robust
statistics of the training features (to name the features that make a row unusual).

An Isolation Forest isolates a row that is extreme in one feature only in the trees that
split on that feature, so a drained pool (one or two features far out, the rest normal)
scores barely below normal traffic's tail. Each feature therefore also has a limit, learned
from the same normal traffic, in robust standard deviations. The score is the smaller of
``score_samples(x) - threshold`` and ``1 - max_j |z_j| / limit_j``: below 0 is an anomaly,
and the further below, the surer. One call scores a whole batch.

The forest's ``score_samples`` is computed here from its trees directly (``_ForestDepths``):
scikit-learn dispatches each of its trees through joblib even when it runs them in turn,
which costs about 80 microseconds a tree and call (17 ms a call for 200 trees, whatever the
batch). The result is the same to the last bit (tests/unit/test_contracts.py checks it);
bench/scoring.py measures both.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from dexwatch.core.files import write_atomically
from dexwatch.core.schemas.alert import TopFeature

TOP_FEATURES = 3


@dataclasses.dataclass
class Scores:
    score: np.ndarray  # below 0: anomaly
    is_anomaly: np.ndarray
    top_features: list[list[TopFeature]]


@dataclasses.dataclass
class Detector:
    forest: Any  # sklearn.ensemble.IsolationForest
    feature_names: tuple[str, ...]
    features_version: int
    threshold: float
    median: np.ndarray
    scale: np.ndarray  # robust standard deviation (IQR / 1.349), never 0
    limits: np.ndarray  # per feature, in units of scale; np.inf for context features
    version: str
    trained_at: datetime
    training_rows: int
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The columns the forest was fitted on; None: all. Features that say how big a pool is
    # (its volume, TVL, liquidity) are left out of the forest and get no limit, so that a
    # model trained on a few pools scores pools of any size by how they behave.
    forest_columns: tuple[int, ...] | None = None
    # Features whose rise never flags a row, only their fall (model.training.fit_detector).
    benign_rises: tuple[str, ...] = ()

    def score(self, rows: np.ndarray | Sequence[Sequence[float]]) -> Scores:
        x = self._checked(rows)
        deviation = (x - self.median) / self.scale
        score = self._margin(x, deviation)
        # A feature without a limit (np.inf) is context, like the hour of day: it informs the
        # forest but is never named as what makes a row unusual. One the forest does not see
        # is judged by its limit alone, and named only past it: a count whose median is 0
        # (crossed swaps) is "1,000 robust sd" off at 1, and would name every flagged window.
        deviating = np.abs(alarming(deviation, self._falls_only))
        unseen_below = self._limit_only & (deviating < self.limits)
        ranked = np.where(np.isinf(self.limits) | unseen_below, -1.0, np.abs(deviation))
        order = np.argsort(-ranked, axis=1)[:, :TOP_FEATURES]
        top = [
            [
                TopFeature(
                    name=self.feature_names[j],
                    value=float(x[i, j]),
                    deviation=round(float(deviation[i, j]), 3),
                )
                for j in order[i]
            ]
            for i in range(len(x))
        ]
        return Scores(score=score, is_anomaly=score < 0, top_features=top)

    def anomaly_score(self, rows: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """``score(rows).score`` alone (below 0: anomaly), without naming top features."""
        x = self._checked(rows)
        return self._margin(x, (x - self.median) / self.scale)

    def _margin(self, x: np.ndarray, deviation: np.ndarray) -> np.ndarray:
        forest_x = x if self.forest_columns is None else x[:, list(self.forest_columns)]
        forest_margin = self._depths.score_samples(forest_x) - self.threshold
        alarming_deviation = alarming(deviation, self._falls_only)
        feature_margin = 1.0 - np.max(np.abs(alarming_deviation) / self.limits, axis=1)
        return np.minimum(forest_margin, feature_margin)

    @functools.cached_property
    def _depths(self) -> _ForestDepths:
        return _ForestDepths(self.forest)

    @functools.cached_property
    def _falls_only(self) -> np.ndarray:
        return np.array([name in self.benign_rises for name in self.feature_names])

    @functools.cached_property
    def _limit_only(self) -> np.ndarray:
        """The features the forest does not see (judged by their limit alone)."""
        columns = np.arange(len(self.feature_names))
        return ~np.isin(columns, columns if self.forest_columns is None else self.forest_columns)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for derived in ("_depths", "_falls_only", "_limit_only"):  # not part of the artifact
            state.pop(derived, None)
        return state

    def _checked(self, rows: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected rows of {len(self.feature_names)} features "
                f"({', '.join(self.feature_names)}), got shape {x.shape}"
            )
        if not np.isfinite(x).all():
            # NaN compares false with everything: it would score NaN and pass as normal.
            rows, columns = np.nonzero(~np.isfinite(x))
            raise ValueError(
                f"row {int(rows[0])}: {self.feature_names[int(columns[0])]} is not a finite number"
            )
        return x

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        joblib.dump(self, buffer)
        write_atomically(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Detector:
        if not path.is_file():
            raise FileNotFoundError(
                f"no model at {path}: train one with `dexwatch model bootstrap`"
            )
        detector = joblib.load(path)
        if not isinstance(detector, cls):
            raise TypeError(f"{path} holds a {type(detector).__name__}, not a Detector")
        return detector


def alarming(deviation: np.ndarray, falls_only: np.ndarray) -> np.ndarray:
    """``deviation`` (rows by features) with the rises of the ``falls_only`` columns at 0."""
    return (
        np.where(falls_only, np.minimum(deviation, 0.0), deviation)
        if falls_only.any()
        else deviation
    )


class _ForestDepths:
    """A fitted scikit-learn IsolationForest's ``score_samples``, tree by tree without joblib.

    Mirrors ``IsolationForest._compute_score_samples`` (scikit-learn 1.9, pinned in
    requirements.lock), whose private per-tree arrays it reads: each tree's leaf depth plus
    the average path length of the leaf's samples, averaged over the trees and normalised by
    the average path length of ``max_samples``.
    """

    def __init__(self, forest: Any) -> None:
        from sklearn.ensemble._iforest import _average_path_length

        self._trees = [estimator.tree_ for estimator in forest.estimators_]
        # Each tree's rows take its own subset of features only when max_features < 1.
        self._features = [
            features if forest._max_features != forest.n_features_in_ else None
            for features in forest.estimators_features_
        ]
        self._leaf_depths = [
            lengths + averages - 1.0
            for lengths, averages in zip(
                forest._decision_path_lengths, forest._average_path_length_per_tree, strict=True
            )
        ]
        self._denominator = len(self._trees) * float(_average_path_length([forest._max_samples])[0])

    def score_samples(self, x: np.ndarray) -> np.ndarray:
        if self._denominator == 0:  # one training sample: scikit-learn's score is -1
            return -np.ones(len(x))
        # The trees compare float32 values, as scikit-learn's do.
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        depths = np.zeros(len(x32))
        for tree, features, leaf_depths in zip(
            self._trees, self._features, self._leaf_depths, strict=True
        ):
            rows = x32 if features is None else np.ascontiguousarray(x32[:, features])
            depths += leaf_depths[tree.apply(rows)]
        return -(2.0 ** (-depths / self._denominator))
