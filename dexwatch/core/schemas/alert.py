"""The alert message on the ``alerts`` topic: a versioned JSON contract for subscribers.

Data is the JSON of ``Alert`` (``schema_version`` 2). Attributes, for subscription filters:
``schema_version``, ``chain_id``, ``dex``, ``pool`` (one-pool alerts), ``scope``,
``severity``, ``kind``, ``revision``.

One alert opens a *thread* (``alert_id``) per scope: a pool, or several pools for alerts about
the market or an asset (``pools``; then ``alert_id`` is ``chain_id:scope:first window end``).
Further anomalous windows of the same scope within ``pipeline.alert_cooldown_s`` of event
time, or overlapping the thread's span, join it; whichever path (``source``: chain windows
or subgraph hours) flags them, an incident both paths see is one thread. A window that
escalates its thread (a kind the thread has not shown, or a higher severity) publishes the
thread's next ``revision``: revision 0 opens the thread, each update adds one. Consumers
deduplicate on ``(alert_id, revision)``: a redelivered or re-published message repeats both.

Version 1 (no revision, kind or scope; ``deviation`` for the kind) is still read
(``parse_alert``), and during a migration the pipeline can publish a v1 copy of each opening
alert (``pipeline.alert_v1_until``; README, "Alert contract migration").
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

ALERT_SCHEMA_VERSION = 2
# A v1 copy of a v2 alert carries this attribute, so a reader of both versions can skip it.
V1_COPY_ATTRIBUTE = "v1_copy"

Severity = Literal["low", "medium", "high"]
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}

# What the most deviating feature suggests: the kind of an hourly row, and of a chain window
# that no size test of dexwatch.core.features.kinds names.
KIND_OF_FEATURE = {
    "liquidity_removed_share": "liquidity-drain",
    "liquidity_lost_1h": "liquidity-drain",
    "liquidity_lost_24h": "liquidity-drain",
    "price_change": "price-dislocation",
    "price_range": "price-dislocation",
    "max_swap_price_impact": "price-dislocation",
    "price_drift_1h": "price-dislocation",
    "volume_ratio": "volume-spike",
    "volume_1h_vs_usual": "volume-spike",
    "swap_count_ratio": "activity-spike",
    "top_trader_share": "wash-trading",
    "pair_two_way_excess": "wash-trading",
    "sandwiches": "sandwich",
    "crossed_swaps": "wash-trading",
}
# Hourly features: what a value above / below the pool's usual suggests.
KIND_BY_DIRECTION = {
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


class PoolRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dex: str
    pool: str


class Alert(BaseModel):
    """Version 2: one revision of an alert thread."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[2] = ALERT_SCHEMA_VERSION
    alert_id: str
    revision: int = Field(0, ge=0)
    window_id: str
    chain_id: int
    # "pool" for one pool's alert; e.g. "market" or "asset:<address>" for several pools.
    scope: str = "pool"
    pools: list[PoolRef] = Field(min_length=1)
    # chain windows, subgraph hours, or the market's view of every pool (multi-pool scopes).
    source: Literal["chain", "subgraph", "market"]
    kind: str
    # How sure the kind is, 0 to 1 (chain windows: dexwatch.core.features.kinds; hourly rows:
    # the top feature's share of the deviation).
    confidence: float = Field(ge=0, le=1)
    severity: Severity
    score: float
    window_start: datetime
    window_end: datetime
    top_features: list[TopFeature]
    # Why the kind was chosen, in words, strongest first.
    evidence: list[str] = Field(default_factory=list)
    model_version: str
    detected_at: datetime

    @property
    def dex(self) -> str:
        return self.pools[0].dex

    @property
    def pool(self) -> str:
        """The pool of a one-pool alert (the first of several otherwise)."""
        return self.pools[0].pool

    def attributes(self) -> dict[str, str]:
        attributes = {
            "schema_version": str(self.schema_version),
            "chain_id": str(self.chain_id),
            "scope": self.scope,
            "severity": self.severity,
            "kind": self.kind,
            "revision": str(self.revision),
            "dex": self.dex,
        }
        if self.scope == "pool":
            attributes["pool"] = self.pool
        return attributes

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def to_v1(self) -> AlertV1:
        """The v1 message of an opening one-pool alert (the migration's copies)."""
        if self.scope != "pool":
            raise ValueError("version 1 has no multi-pool alerts")
        return AlertV1(
            alert_id=self.alert_id, window_id=self.window_id, chain_id=self.chain_id,
            dex=self.dex, pool=self.pool, source=self.source, severity=self.severity,
            deviation=self.kind, score=self.score, window_start=self.window_start,
            window_end=self.window_end, top_features=self.top_features,
            model_version=self.model_version, detected_at=self.detected_at,
        )  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes) -> Alert:
        return cls.model_validate_json(data)


class AlertV1(BaseModel):
    """Version 1, as published before revisions and multi-pool scopes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
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
            "schema_version": "1",
            "chain_id": str(self.chain_id),
            "dex": self.dex,
            "pool": self.pool,
            "severity": self.severity,
            "deviation": self.deviation,
        }

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def upgraded(self) -> Alert:
        """The same alert as version 2: revision 0 of a one-pool thread."""
        return Alert(
            alert_id=self.alert_id, revision=0, window_id=self.window_id,
            chain_id=self.chain_id, pools=[PoolRef(dex=self.dex, pool=self.pool)],
            source=self.source, kind=self.deviation, confidence=0.5, severity=self.severity,
            score=self.score, window_start=self.window_start, window_end=self.window_end,
            top_features=self.top_features, model_version=self.model_version,
            detected_at=self.detected_at,
        )  # fmt: skip


def parse_alert(data: bytes) -> Alert:
    """Either version's JSON → an Alert (v1 upgraded); raises ValueError (pydantic's
    ValidationError is one) for anything else."""
    try:
        version = orjson.loads(data).get("schema_version")
    except (orjson.JSONDecodeError, AttributeError):
        raise ValueError("an alert is a JSON object") from None
    if version == 1:
        return AlertV1.model_validate_json(data).upgraded()
    if version == ALERT_SCHEMA_VERSION:
        return Alert.model_validate_json(data)
    raise ValueError(f"unknown alert schema_version {version!r}")


def severity_of(score: float) -> Severity:
    """Isolation Forest decision values below 0 are anomalies; the further, the surer."""
    if score < -0.1:
        return "high"
    if score < -0.05:
        return "medium"
    return "low"


def kind_of(feature: str, value: float, deviation: float = 0.0) -> str:
    """The kind of deviation the most deviating feature (its value's sign, or for hourly
    features the sign of its deviation from the usual) suggests."""
    if feature == "net_liquidity_change":
        return "liquidity-drain" if value < 0 else "liquidity-inflow"
    if feature in KIND_BY_DIRECTION:
        above, below = KIND_BY_DIRECTION[feature]
        return above if deviation >= 0 else below
    return KIND_OF_FEATURE.get(feature, "other")


def kind_and_confidence(top: list[TopFeature]) -> tuple[str, float, list[str]]:
    """The kind the top feature suggests, how much of the top features' deviation it
    carries (its confidence), and the evidence in words."""
    if not top:
        return "other", 0.0, []
    first = top[0]
    total = sum(abs(t.deviation) for t in top) or 1.0
    confidence = round(min(1.0, abs(first.deviation) / total), 3)
    evidence = [f"{t.name} = {t.value:.4g} ({t.deviation:+.1f} robust sd)" for t in top]
    return kind_of(first.name, first.value, first.deviation), confidence, evidence
