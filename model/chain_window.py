"""Training the chain-window detector: an Isolation Forest on normal traffic's window
features (``dexwatch/core/features/chain.py``); the fitting itself is ``model.training``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import (
    BENIGN_RISES,
    CHAIN_CONTEXT_FEATURES,
    FEATURE_NAMES,
    FEATURES_VERSION,
    INCIDENT_FLOORS,
    LIMITS_AT_FLOOR,
    feature_vector,
)
from model.training import DEFAULT_PARAMS, TrainingParams, fit_detector

__all__ = ["TrainingParams", "train_detector", "training_matrix"]


def training_matrix(rows: Sequence[dict]) -> np.ndarray:
    """The feature rows as the matrix the detector is fitted on (FEATURE_NAMES' columns)."""
    return np.array([feature_vector(row) for row in rows], dtype=np.float64)


def train_detector(rows: Sequence[dict], params: TrainingParams = DEFAULT_PARAMS) -> Detector:
    """A Detector trained on feature rows (dicts with every name in FEATURE_NAMES)."""
    return fit_detector(
        training_matrix(rows), FEATURE_NAMES, FEATURES_VERSION, params, floors=INCIDENT_FLOORS,
        benign_rises=BENIGN_RISES, context_features=CHAIN_CONTEXT_FEATURES,
        limits_at_floor=LIMITS_AT_FLOOR,
    )  # fmt: skip
