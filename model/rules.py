"""The fixed-threshold rule a person would write without a model, as a baseline for the
detector on the same chain windows (``dexwatch evaluate --incidents``).

The thresholds are set once, from what each incident means to a trader, and never tuned on
the evaluation: a window is flagged when any rule holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

# (feature, threshold, meaning): flagged when the window's feature exceeds the threshold.
RULES: tuple[tuple[str, float, str], ...] = (
    ("liquidity_removed_share", 0.2, "more than 20% of the pool's liquidity removed"),
    ("price_change", math.log(1.05), "the price moved more than 5% against the baseline"),
    ("max_swap_price_impact", math.log(1.05), "one swap moved the price more than 5%"),
    ("volume_ratio", math.log(10.0), "volume more than about 10 times the baseline's"),
)


def rule_flags(features: Mapping[str, np.ndarray]) -> np.ndarray:
    """Which windows (columns of chain features, NaN for missing) any rule flags."""
    flagged: np.ndarray | None = None
    for name, threshold, _ in RULES:
        column = np.nan_to_num(np.asarray(features[name], dtype=float), nan=0.0)
        hit = column > threshold
        flagged = hit if flagged is None else flagged | hit
    assert flagged is not None
    return flagged


def describe_rules() -> str:
    return "; ".join(meaning for _, _, meaning in RULES)
