"""The hourly vector on hand-made series with known answers, the rules for duplicates and
thin history, and the hourly model trained on it."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import numpy as np
import pytest

from dexwatch.core.features.hourly import (
    CONTEXT_FEATURES,
    HOURLY_FEATURE_DEFINITIONS,
    HOURLY_FEATURE_NAMES,
    MIN_PREVIOUS_HOURS,
    SIZE_FEATURES,
    hourly_features,
    hourly_vector,
    latest_versions,
    series_features,
)
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour
from dexwatch.core.schemas.tables import ANOMALIES, POOL_SCORES

POOL = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
# Thursday 2027-01-07 14:00 UTC: the hour under test in the known-answer series.
HOUR = int(datetime(2027, 1, 7, 14, tzinfo=UTC).timestamp())


def pool_hour(
    start: int, volume: float = 1000.0, tvl: float = 1e6, pool: str = POOL, **fields
) -> PoolHour:
    values = dict(
        chain_id=1, dex="uniswap_v3", pool=pool, hour_start=start, volume_usd=volume,
        tvl_usd=tvl, liquidity=5e6, fees_usd=volume * 0.003, tx_count=100, token0_price=2.0,
        token1_price=0.5, indexed_block=1000,
    )  # fmt: skip
    values.update(fields)
    return PoolHour(**values)


def test_the_vector_has_the_earlier_designs_order_and_every_feature_a_definition():
    assert HOURLY_FEATURE_NAMES == (
        "volume_usd", "tvl_usd", "liquidity", "tx_count", "vol_rate_24h", "tvl_rate_24h",
        "vol_ma_6h", "vol_ma_24h", "vol_std_24h", "vol_tvl_ratio", "volume_zscore",
        "hour_of_day", "day_of_week",
    )  # fmt: skip
    assert all(len(definition) > 20 for _, definition in HOURLY_FEATURE_DEFINITIONS)
    # Both paths share the scored tables: each feature is a nullable column of both.
    for table in (POOL_SCORES, ANOMALIES):
        columns = {c.name: c for c in table.columns}
        for name in HOURLY_FEATURE_NAMES:
            assert columns[name].type == "FLOAT64" and not columns[name].required


def test_known_answers_on_a_hand_made_day():
    # k hours before the hour under test: volume 1000 k USD, TVL 1M USD.
    history = [pool_hour(HOUR - k * HOUR_S, volume=1000.0 * k) for k in range(1, 25)]
    hour = pool_hour(HOUR, volume=30_000.0, tvl=900_000.0, tx_count=321)
    features = hourly_features(hour, history)
    assert features is not None and list(features) == list(HOURLY_FEATURE_NAMES)
    std = 1000.0 * math.sqrt((24**2 - 1) / 12)  # population std of 1000 * (1..24)
    expected = {
        "volume_usd": 30_000.0,
        "tvl_usd": 900_000.0,
        "liquidity": 5e6,
        "tx_count": 321.0,
        "vol_rate_24h": (30_000 - 24_000) / 24_000,  # against the hour 24 h earlier
        "tvl_rate_24h": -0.1,
        "vol_ma_6h": 3500.0,  # 1000 .. 6000: the current hour is not in its own baseline
        "vol_ma_24h": 12_500.0,
        "vol_std_24h": std,
        "vol_tvl_ratio": 30_000 / 900_000,
        "volume_zscore": (30_000 - 12_500) / std,
        "hour_of_day": 14.0,
        "day_of_week": 3.0,  # Thursday (Monday 0)
    }
    assert features == pytest.approx(expected)
    assert hourly_vector(features)[4] == pytest.approx(0.25)


def test_only_the_pools_own_24_hours_before_count_each_once():
    history = [pool_hour(HOUR - k * HOUR_S, volume=100.0) for k in range(1, 25)]
    noise = [
        pool_hour(HOUR - 25 * HOUR_S, volume=1e9),  # more than a day before
        pool_hour(HOUR + HOUR_S, volume=1e9),  # after
        pool_hour(HOUR - HOUR_S, volume=1e9, pool=OTHER),  # another pool
    ]
    features = hourly_features(pool_hour(HOUR, volume=100.0), history + history[:5] + noise)
    assert features["vol_ma_24h"] == 100.0 and features["vol_std_24h"] == 0.0


def test_thin_history_waits_and_a_missing_day_before_means_no_change_known():
    history = [pool_hour(HOUR - k * HOUR_S, volume=100.0) for k in range(1, 25)]
    warming = history[: MIN_PREVIOUS_HOURS - 1]
    assert hourly_features(pool_hour(HOUR), warming) is None  # one hour short: warming up
    without_day_before = [h for h in history if h.hour_start != HOUR - 24 * HOUR_S]
    features = hourly_features(pool_hour(HOUR, volume=500.0),
                               without_day_before[:MIN_PREVIOUS_HOURS])  # fmt: skip
    assert features is not None
    assert features["vol_rate_24h"] == 0.0 and features["tvl_rate_24h"] == 0.0


def test_zero_denominators_give_bounded_numbers():
    # A filled (quiet) day before and a flat history.
    history = [pool_hour(HOUR - k * HOUR_S, volume=0.0, tx_count=0) for k in range(1, 25)]
    small = hourly_features(pool_hour(HOUR, volume=5.0), history)
    assert small["vol_rate_24h"] == 5.0  # against 1 USD, not 0
    assert small["volume_zscore"] == 5.0  # std floored at 1 USD
    big = hourly_features(pool_hour(HOUR, volume=1e7, tvl=0.0), history)
    assert big["vol_rate_24h"] == 1000.0  # capped
    assert big["vol_tvl_ratio"] == 1e7  # TVL floored at 1 USD
    flat = [pool_hour(HOUR - k * HOUR_S, volume=1000.0) for k in range(1, 25)]
    moved = hourly_features(pool_hour(HOUR, volume=1020.0), flat)
    assert moved["volume_zscore"] == pytest.approx(20 / 50)  # std floored at 5 % of the mean
    assert all(math.isfinite(v) for v in (*small.values(), *big.values(), *moved.values()))


def test_a_further_indexed_version_replaces_an_hour_and_a_redelivery_does_not():
    filled = pool_hour(HOUR, volume=0.0, tx_count=0, filled=True, indexed_block=10)
    real = pool_hour(HOUR, volume=700.0, indexed_block=12)
    again = pool_hour(HOUR, volume=999.0, indexed_block=12)
    assert latest_versions([filled, real, again, filled])[real.hour_id] == real


def test_a_series_in_any_order_with_duplicates_gives_the_in_order_vectors():
    series = [pool_hour(HOUR + i * HOUR_S, volume=1000.0 + 37 * (i % 7)) for i in range(40)]
    in_order = list(series_features(series))
    assert [h.hour_start for h, _ in in_order] == [
        h.hour_start for h in series[MIN_PREVIOUS_HOURS:]
    ]
    shuffled = series + series[::3]
    random.Random(3).shuffle(shuffled)
    assert list(series_features(shuffled)) == in_order
    for i, (hour, features) in enumerate(in_order, start=MIN_PREVIOUS_HOURS):
        assert features == hourly_features(hour, series[:i])


def _normal_series(pool: str, hours: int, level: float, seed: int) -> list[PoolHour]:
    rng = np.random.default_rng(seed)
    return [
        pool_hour(
            HOUR + i * HOUR_S,
            volume=level * rng.lognormal(0, 0.1),
            tvl=20 * level * (1 + 0.01 * rng.standard_normal()),
            pool=pool,
            tx_count=int(rng.poisson(100)),
        )
        for i in range(hours)
    ]


def test_the_hourly_model_flags_a_spike_and_never_blames_the_calendar():
    from model.hourly import train_hourly_detector

    normal = _normal_series(POOL, 80, 1e5, 1) + _normal_series(OTHER, 80, 3e5, 2)
    detector = train_hourly_detector(normal)
    assert detector.feature_names == HOURLY_FEATURE_NAMES
    context = [HOURLY_FEATURE_NAMES.index(name) for name in CONTEXT_FEATURES]
    assert np.isinf(detector.limits[context]).all()
    assert detector.training_rows == 2 * (80 - 24)  # the hours whose day before is known

    later = _normal_series(POOL, 60, 1e5, 3)
    rows = [features for _, features in series_features(later)]
    spiked = later[-1].model_copy(update={"volume_usd": 2e6, "tx_count": 2000})
    spike = hourly_features(spiked, later[:-1])
    scores = detector.score([hourly_vector(row) for row in [*rows[:-1], spike]])
    assert scores.is_anomaly[-1] and scores.score[-1] < 0
    assert scores.is_anomaly[:-1].sum() <= 1
    volume_features = {"volume_zscore", "vol_rate_24h", "volume_usd", "vol_tvl_ratio"}
    assert {t.name for t in scores.top_features[-1]} <= volume_features | {"tx_count"}
    named = {t.name for top in scores.top_features for t in top}
    assert not named & set(CONTEXT_FEATURES)
    # The earlier design's request is a valid input, in the same order.
    earlier = [[1000000.0, 5000000.0, 5000000.0, 100, 0.1, -0.05, 900000.0, 950000.0, 50000.0,
                0.2, 0.5, 14, 3]]  # fmt: skip
    assert detector.score(earlier).score.shape == (1,)


def test_the_hourly_model_judges_a_pool_by_its_behaviour_not_its_size():
    from model.hourly import train_hourly_detector

    detector = train_hourly_detector(
        _normal_series(POOL, 80, 1e5, 1) + _normal_series(OTHER, 80, 3e5, 2)
    )
    size = [HOURLY_FEATURE_NAMES.index(name) for name in SIZE_FEATURES]
    assert np.isinf(detector.limits[size]).all()
    # A pool a hundred times larger than any in training, behaving as they do: normal; the
    # same pool's volume tenfold in an hour: an anomaly, named by its changes.
    big = _normal_series("0x" + "ef" * 20, 40, 3e7, 4)
    rows = [features for _, features in series_features(big)]
    spiked = big[-1].model_copy(update={"volume_usd": 3e8})
    rows[-1] = hourly_features(spiked, big[:-1])
    scores = detector.score([hourly_vector(row) for row in rows])
    assert not scores.is_anomaly[:-1].any()
    assert scores.is_anomaly[-1]
    assert {t.name for t in scores.top_features[-1]} & {"vol_rate_24h", "volume_zscore"}


def test_the_readme_table_is_the_declaration():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, definition in HOURLY_FEATURE_DEFINITIONS:
        assert f"| `{name}` | {definition} |" in readme, name
