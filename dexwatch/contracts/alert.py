"""The alert message on the ``alerts`` topic: a versioned JSON contract for subscribers.

Data is the JSON of ``Alert`` (``schema_version`` 1). Attributes, for subscription filters:
``schema_version``, ``chain_id``, ``dex``, ``pool``, ``severity``, ``deviation``.
One alert opens a *thread* per pool (``alert_id``); further anomalous windows of the same pool
within ``pipeline.alert_cooldown_s`` of event time, or overlapping the thread's span, join it
without a new message, whichever path (``source``: chain windows or subgraph hours) flags
them: an incident both paths see is one alert, from the path that saw it first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

ALERT_SCHEMA_VERSION = 1

Severity = Literal["low", "medium", "high"]
# What the most deviating feature suggests; a hint for the reader, not a classification.
DEVIATION_OF_FEATURE = {
    "liquidity_removed_share": "liquidity-drain",
    "price_change": "price-dislocation",
    "price_range": "price-dislocation",
    "max_swap_price_impact": "price-dislocation",
    "volume_ratio": "volume-spike",
    "swap_count_ratio": "activity-spike",
    "top_trader_share": "wash-trading",
    "pair_two_way_excess": "wash-trading",
}
# Hourly features: what a value above / below the pool's usual suggests.
DEVIATION_BY_DIRECTION = {
    **dict.fromkeys(
        ("volume_usd", "vol_rate_24h", "volume_zscore", "vol_tvl_ratio", "vol_ma_6h",
         "vol_ma_24h", "vol_std_24h"),
        ("volume-spike", "volume-drop"),
    ),
    "tx_count": ("activity-spike", "activity-drop"),
    **dict.fromkeys(
        ("tvl_usd", "liquidity", "tvl_rate_24h"), ("liquidity-inflow", "liquidity-drain")
    ),
}  # fmt: skip


class TopFeature(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    value: float
    # How far from the training data's typical value, in robust standard deviations.
    deviation: float


class Alert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = ALERT_SCHEMA_VERSION
    alert_id: str
    window_id: str
    chain_id: int
    dex: str
    pool: str
    source: Literal["chain", "subgraph"]
    severity: Severity
    deviation: str
    score: float
    window_start: datetime
    window_end: datetime
    top_features: list[TopFeature]
    model_version: str
    detected_at: datetime

    def attributes(self) -> dict[str, str]:
        return {
            "schema_version": str(self.schema_version),
            "chain_id": str(self.chain_id),
            "dex": self.dex,
            "pool": self.pool,
            "severity": self.severity,
            "deviation": self.deviation,
        }

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes) -> Alert:
        return cls.model_validate_json(data)


def severity_of(score: float) -> Severity:
    """Isolation Forest decision values below 0 are anomalies; the further, the surer."""
    if score < -0.1:
        return "high"
    if score < -0.05:
        return "medium"
    return "low"


def deviation_of(feature: str, value: float, deviation: float = 0.0) -> str:
    """The kind of deviation the most deviating feature (its value's sign, or for hourly
    features the sign of its deviation from the usual) suggests."""
    if feature == "net_liquidity_change":
        return "liquidity-drain" if value < 0 else "liquidity-inflow"
    if feature in DEVIATION_BY_DIRECTION:
        above, below = DEVIATION_BY_DIRECTION[feature]
        return above if deviation >= 0 else below
    return DEVIATION_OF_FEATURE.get(feature, "other")
