"""Warehouse rows for training and drift tests: pool_scores rows of plausible normal chain
windows (the real table schema), incident windows with their incident_labels rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import orjson

from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.schemas.labels import IncidentLabel
from dexwatch.core.schemas.tables import INCIDENT_LABELS, POOL_SCORES
from tests._detectors import chain_rows

CHAIN_ID = 31337
POOLS = ("0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20)
STEP = timedelta(minutes=5)


def score_row(pool: str, window_end: datetime, features: dict[str, float]) -> dict:
    return {
        "window_id": f"{CHAIN_ID}:{pool}:{int(window_end.timestamp())}",
        "chain_id": CHAIN_ID,
        "dex": "sushiswap",
        "pool": pool,
        "source": "chain",
        "window_start": window_end - timedelta(minutes=1),
        "window_end": window_end,
        **{name: float(features[name]) for name in FEATURE_NAMES},
        "events": 12,
        "score": 0.1,
        "is_anomaly": False,
        "top_features": orjson.dumps([]).decode(),
        "model_version": "bootstrap",
        "scored_at": window_end,
    }


def normal_rows(start: datetime, end: datetime, seed: int = 11, shift: float = 0.0) -> list[dict]:
    """Every pool's windows from start to end, STEP apart; ``shift`` moves volume_ratio and
    swap_count_ratio (in their own units) to make drift."""
    times = []
    t = start
    while t < end:
        times.append(t)
        t += STEP
    features = chain_rows(len(times) * len(POOLS), seed)
    rows = []
    for i, (window_end, pool) in enumerate((t, p) for t in times for p in POOLS):
        f = dict(features[i])
        f["volume_ratio"] += shift
        f["swap_count_ratio"] += shift
        rows.append(score_row(pool, window_end, f))
    return rows


def drain_features(rng: np.random.Generator) -> dict[str, float]:
    f = chain_rows(1, int(rng.integers(1_000_000)))[0]
    f["liquidity_removed_share"] = float(rng.uniform(0.5, 0.9))
    f["net_liquidity_change"] = -f["liquidity_removed_share"]
    return f


def incident(
    pool: str, kind: str, first: datetime, minutes: int, rng: np.random.Generator
) -> tuple[dict, list[dict]]:
    """An incident_labels row and its pool's anomalous windows (replacing normal ones)."""
    label = IncidentLabel(
        label_id=IncidentLabel.make_id(CHAIN_ID, pool, kind, int(first.timestamp())),
        chain_id=CHAIN_ID,
        dex="sushiswap",
        pool=pool,
        kind=kind,
        first_block=int(first.timestamp()),
        last_block=int(first.timestamp()) + 3,
        first_timestamp=first,
        last_timestamp=first + timedelta(minutes=minutes),
        injected_at=first,
        details="test",
    )
    rows = []
    t = first + STEP  # a window ending after the first block: a positive delay
    while t <= first + timedelta(minutes=minutes):
        rows.append(score_row(pool, t, drain_features(rng)))
        t += STEP
    return label.model_dump(), rows


def fill(warehouse, scores: list[dict], labels: list[dict]) -> None:  # type: ignore[no-untyped-def]
    warehouse.upsert(POOL_SCORES, scores)
    if labels:
        warehouse.upsert(INCIDENT_LABELS, labels)


def aligned(moment: datetime) -> datetime:
    """``moment`` rounded down to STEP, so incident windows replace normal ones by key."""
    seconds = int(STEP.total_seconds())
    return datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, moment.tzinfo)
