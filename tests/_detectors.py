"""Detectors for serving and registry tests: the real chain-window training on plausible
feature rows, and a 13-feature detector standing in for the hourly model until it lands."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np
from sklearn.ensemble import IsolationForest

from dexwatch.core.detector import Detector
from model.chain_window import TrainingParams, train_detector

# The earlier design's instance order (the hourly model's features).
HOURLY_NAMES = (
    "volume_usd", "tvl_usd", "liquidity", "tx_count", "vol_rate_24h", "tvl_rate_24h",
    "vol_ma_6h", "vol_ma_24h", "vol_std_24h", "vol_tvl_ratio", "volume_zscore",
    "hour_of_day", "day_of_week",
)  # fmt: skip
EARLIER_DESIGN_REQUEST = {
    "instances": [
        [1000000.0, 5000000.0, 5000000.0, 100, 0.1, -0.05, 900000.0, 950000.0, 50000.0, 0.2,
         0.5, 14, 3]
    ]
}  # fmt: skip


def chain_rows(n: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    # Their own generators, so that the other features' values are those of before they came.
    hourly = np.random.default_rng(seed + 1000)
    drift = np.random.default_rng(seed + 2000)
    hours = np.random.default_rng(seed + 3000)
    return [
        {
            "volume_ratio": rng.normal(0, 0.3), "swap_count_ratio": rng.normal(0, 0.3),
            "liquidity_removed_share": abs(rng.normal(0, 0.002)),
            "net_liquidity_change": rng.normal(0, 0.002), "price_change": abs(rng.normal(0, 0.005)),
            "price_range": abs(rng.normal(0.01, 0.004)),
            "max_swap_price_impact": abs(rng.normal(0, 0.002)),
            "top_trader_share": rng.uniform(0.3, 0.6),
            "pair_two_way_excess": rng.normal(-1.0, 0.8),
            "liquidity_lost_1h": abs(hourly.normal(0, 0.004)),
            "price_drift_1h": abs(drift.normal(0, 1.0)),
            "liquidity_lost_24h": abs(drift.normal(0, 0.01)),
            "volume_1h_vs_usual": hours.normal(0, 0.3),
            "sandwiches": 0.0,
            "crossed_swaps": 0.0,
        }
        for _ in range(n)
    ]  # fmt: skip


def chain_detector(seed: int = 1) -> Detector:
    """A chain-window detector trained the real way (model/chain_window.py), small forest."""
    return train_detector(chain_rows(400, seed), TrainingParams(n_estimators=30, seed=seed))


def hourly_rows(n: int, seed: int = 3) -> np.ndarray:
    """Plausible pool hours around the earlier design's example: ~1M USD volume an hour on
    ~5M USD TVL, ~100 transactions."""
    rng = np.random.default_rng(seed)
    volume = rng.lognormal(np.log(1e6), 0.3, n)
    tvl = rng.lognormal(np.log(5e6), 0.1, n)
    return np.column_stack([
        volume, tvl, tvl * rng.lognormal(0, 0.05, n), rng.poisson(100, n),
        rng.normal(0, 0.2, n), rng.normal(0, 0.05, n),
        rng.lognormal(np.log(0.95e6), 0.15, n), rng.lognormal(np.log(1e6), 0.1, n),
        rng.lognormal(np.log(6e4), 0.3, n), volume / tvl, rng.normal(0, 1, n),
        rng.integers(0, 24, n), rng.integers(0, 7, n),
    ]).astype(np.float64)  # fmt: skip


def hourly_detector(seed: int = 3) -> Detector:
    """A 13-feature Detector fitted like train_detector, named as the hourly features."""
    x = hourly_rows(600, seed)
    forest = IsolationForest(n_estimators=50, max_samples=256, random_state=seed).fit(x)
    q1, median, q3 = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
    scale = np.maximum((q3 - q1) / 1.349, np.maximum(np.abs(median) * 0.05, 1e-3))
    limits = np.maximum(np.abs((x - median) / scale).max(axis=0) * 2.5, 8.0)
    return Detector(
        forest=forest,
        feature_names=HOURLY_NAMES,
        features_version=1,
        threshold=float(np.quantile(forest.score_samples(x), 0.001)) - 0.1,
        median=median,
        scale=scale,
        limits=limits,
        version=datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
        trained_at=datetime.now(UTC),
        training_rows=len(x),
    )
