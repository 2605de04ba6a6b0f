"""Hourly features: the 13-number vector of one pool and hour, written once for training and
serving.

The order and meaning are those of the earlier batch design's requests
(``{"instances": [[volume_usd, tvl_usd, ..., day_of_week]]}``), which the hourly model keeps
answering. Each vector is computed from one ``PoolHour`` and the pool's hours *before* it
(its history); the current hour never counts in its own baseline, so a spike does not
dampen itself.

History: the pool's hours that start 1 to 24 hours before the hour. A vector exists only
once at least ``MIN_PREVIOUS_HOURS`` of those 24 are known: a pool's first six hours are a
warm-up (as long as the short moving average), while a few lost messages do not stop the
scoring (the publisher fills quiet hours, so a
missing hour is a message lost or not yet arrived, never a quiet hour). Statistics run over
the known hours only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour

HOURLY_FEATURES_VERSION = 2
HISTORY_HOURS = 24
MIN_PREVIOUS_HOURS = 6
SHORT_MA_HOURS = 6
# A relative change against a zero (or near zero) earlier level is unbounded: changes are
# taken against at least one USD and capped, so one quiet hour does not produce infinity.
RATE_FLOOR_USD = 1.0
RATE_CAP = 1000.0
# The z-score's standard deviation is at least this share of the mean (and one USD): a
# pool with a very even history must not turn a 2 % move into 40 standard deviations.
ZSCORE_MIN_RELATIVE_STD = 0.05

# (name, definition), in the order the model sees them (the earlier design's order).
HOURLY_FEATURE_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("volume_usd", "the hour's swap volume in USD (PoolHour.volume_usd; 0 for a filled hour)"),
    ("tvl_usd", "total value locked in USD at the hour's end (PoolHour.tvl_usd)"),
    (
        "liquidity",
        "pool liquidity at the hour's end (PoolHour.liquidity: V3 in-range L, V2 LP supply)",
    ),
    ("tx_count", "transactions in the hour (PoolHour.tx_count)"),
    (
        "vol_rate_24h",
        "(volume_usd - V) / max(V, 1 USD), V the volume_usd of the hour exactly 24 h earlier; "
        "capped at 1000; 0 when that hour is not known",
    ),
    (
        "tvl_rate_24h",
        "(tvl_usd - T) / max(T, 1 USD), T the tvl_usd of the hour exactly 24 h earlier; "
        "capped at 1000; 0 when that hour is not known",
    ),
    (
        "vol_ma_6h",
        "mean volume_usd of the known hours among the 6 before this one (this hour excluded)",
    ),
    (
        "vol_ma_24h",
        "mean volume_usd of the known hours among the 24 before this one (this hour excluded)",
    ),
    (
        "vol_std_24h",
        "population standard deviation of volume_usd over the same hours as vol_ma_24h",
    ),
    ("vol_tvl_ratio", "volume_usd / max(tvl_usd, 1 USD)"),
    (
        "volume_zscore",
        "(volume_usd - vol_ma_24h) / max(vol_std_24h, 0.05 * vol_ma_24h, 1 USD)",
    ),
    ("hour_of_day", "UTC hour of the hour's start, 0 to 23"),
    ("day_of_week", "UTC weekday of the hour's start, Monday 0 to Sunday 6"),
)
HOURLY_FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in HOURLY_FEATURE_DEFINITIONS)
# Calendar features say when, not how abnormal: the detector uses them as context and never
# flags a row for its hour or weekday alone (see model/hourly.py).
CONTEXT_FEATURES: tuple[str, ...] = ("hour_of_day", "day_of_week")
# Levels say how big a pool is, not whether it behaves abnormally: real pools' sizes span
# orders of magnitude (and liquidity is in raw token units), so the detector judges an hour
# by its changes against the pool's own history and its turnover, never by these alone.
SIZE_FEATURES: tuple[str, ...] = (
    "volume_usd", "tvl_usd", "liquidity", "tx_count", "vol_ma_6h", "vol_ma_24h", "vol_std_24h",
)  # fmt: skip


def hourly_features(hour: PoolHour, previous: Iterable[PoolHour]) -> dict[str, float] | None:
    """The vector of ``hour`` from the pool's other hours (any order, any range: only the 24
    before it count; duplicates by hour_start count once). None while fewer than
    MIN_PREVIOUS_HOURS of those 24 are known."""
    first = hour.hour_start - HISTORY_HOURS * HOUR_S
    history = {
        h.hour_start: h
        for h in previous
        if (h.chain_id, h.pool) == (hour.chain_id, hour.pool)
        and first <= h.hour_start < hour.hour_start
    }
    if len(history) < MIN_PREVIOUS_HOURS:
        return None
    # In hour order: the same sums, to the last bit, whatever order the hours came in.
    ordered = [history[start] for start in sorted(history)]
    volumes = [h.volume_usd for h in ordered]
    recent_from = hour.hour_start - SHORT_MA_HOURS * HOUR_S
    recent = [h.volume_usd for h in ordered if h.hour_start >= recent_from]
    ma_24h = sum(volumes) / len(volumes)
    std_24h = math.sqrt(sum((v - ma_24h) ** 2 for v in volumes) / len(volumes))
    day_before = history.get(first)
    start = datetime.fromtimestamp(hour.hour_start, UTC)
    return {
        "volume_usd": hour.volume_usd,
        "tvl_usd": hour.tvl_usd,
        "liquidity": hour.liquidity,
        "tx_count": float(hour.tx_count),
        "vol_rate_24h": _rate(hour.volume_usd, day_before.volume_usd) if day_before else 0.0,
        "tvl_rate_24h": _rate(hour.tvl_usd, day_before.tvl_usd) if day_before else 0.0,
        # With lost hours none of the 6 recent ones may be known: the 24-hour mean stands in.
        "vol_ma_6h": sum(recent) / len(recent) if recent else ma_24h,
        "vol_ma_24h": ma_24h,
        "vol_std_24h": std_24h,
        "vol_tvl_ratio": hour.volume_usd / max(hour.tvl_usd, RATE_FLOOR_USD),
        "volume_zscore": (hour.volume_usd - ma_24h)
        / max(std_24h, ZSCORE_MIN_RELATIVE_STD * ma_24h, RATE_FLOOR_USD),
        "hour_of_day": float(start.hour),
        "day_of_week": float(start.weekday()),
    }


def _rate(now: float, before: float) -> float:
    return min((now - before) / max(before, RATE_FLOOR_USD), RATE_CAP)


def hourly_vector(features: dict[str, float]) -> list[float]:
    return [float(features[name]) for name in HOURLY_FEATURE_NAMES]


def supersedes(candidate: PoolHour, held: PoolHour | None) -> bool:
    """Whether ``candidate`` replaces the version of its hour already held: a redelivered or
    republished hour (same hour_id) is a duplicate unless the subgraph had indexed further
    when it was published (a filled hour followed by the real row, a corrected one)."""
    return held is None or candidate.indexed_block > held.indexed_block


def latest_versions(hours: Iterable[PoolHour]) -> dict[str, PoolHour]:
    """One PoolHour per hour_id: the version ``supersedes`` keeps."""
    latest: dict[str, PoolHour] = {}
    for hour in hours:
        if supersedes(hour, latest.get(hour.hour_id)):
            latest[hour.hour_id] = hour
    return latest


def series_features(
    hours: Sequence[PoolHour],
) -> Iterator[tuple[PoolHour, dict[str, float]]]:
    """Every hour of one pool's series that has enough history, with its features (batch:
    training data and replays), in hour order; duplicates resolved by ``latest_versions``."""
    ordered = sorted(latest_versions(hours).values(), key=lambda h: h.hour_start)
    low = 0
    for i, hour in enumerate(ordered):
        while ordered[low].hour_start < hour.hour_start - HISTORY_HOURS * HOUR_S:
            low += 1
        features = hourly_features(hour, ordered[low:i])
        if features is not None:
            yield hour, features
