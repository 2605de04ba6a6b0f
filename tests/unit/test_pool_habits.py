"""A pool's habits (dexwatch.core.features.rates): decayed rates that score a quiet pool's
windows whose baseline is a silence, and the price anchor a slow drift is measured from."""

from __future__ import annotations

import math

import numpy as np
import pytest

from beam_pipelines.transforms.pool_windows import pool_windows
from dexwatch.core.features.chain import FEATURE_NAMES, window_features
from dexwatch.core.features.kinds import classify
from dexwatch.core.features.rates import MIN_EXPOSURE_S, RATES_TIMESCALE_S, fold_rates
from dexwatch.core.features.slices import SliceSummary
from dexwatch.core.settings import PipelineSettings
from model.chain_window import TrainingParams, train_detector

POOL = "0x" + "cd" * 20
T0 = 1_800_000_000
SLICE_S = 12


def trading(start: int, seconds: int, every_s: int, volume: float = 100.0) -> list[SliceSummary]:
    """One swap of ``volume`` every ``every_s`` seconds from ``start``, in 12 s slices."""
    return [
        SliceSummary(pool=POOL, start=t, events=1, swaps=1, volume=volume, last_price=2000.0)
        for t in range(start, start + seconds, every_s)
    ]


def test_a_steady_pools_rates_are_its_rates_and_fade_through_a_silence():
    day = trading(T0, 12 * 3600, 60)
    rates = fold_rates(None, day, SLICE_S)
    end = T0 + 12 * 3600
    volume, swaps = rates.per_second(end)
    assert volume == pytest.approx(100 / 60, rel=0.02)
    assert swaps == pytest.approx(1 / 60, rel=0.02)
    # A silence as long as the timescale: the pool's minute is now partly silent minutes.
    _, after = rates.per_second(end + RATES_TIMESCALE_S)
    assert 0.3 / 60 < after < 0.6 / 60
    # The same sums however the slices were folded in: streaming folds them in batches.
    halves = fold_rates(fold_rates(None, day[:300], SLICE_S), day[300:], SLICE_S)
    assert halves == rates


def test_a_pool_seen_for_less_than_half_an_hour_has_no_habits_yet():
    seen = trading(T0, MIN_EXPOSURE_S - 120, 60)
    rates = fold_rates(None, seen, SLICE_S)
    assert rates.per_second(T0 + MIN_EXPOSURE_S - 100) is None
    assert rates.per_second(T0 + MIN_EXPOSURE_S + 60) is not None  # its silence counts too


def quiet_pool_then(window: list[SliceSummary]) -> dict[str, float]:
    """The features of the minute ``window`` (4 slices from ``end - 48``) of a pool that swapped
    every two minutes for three hours, then fell silent for ten minutes."""
    history = trading(T0, 3 * 3600, 120)
    end = T0 + 3 * 3600 + 600 + 48
    carry = history[-1]
    rates = fold_rates(None, history, SLICE_S)
    features = window_features(window, end, SLICE_S, 4, carry, (), rates)
    alone = window_features(window, end, SLICE_S, 4, carry)
    assert alone["volume_ratio"] == alone["swap_count_ratio"] == 0.0  # no habits: neutral
    return features


def test_a_burst_after_a_silence_stands_out_against_the_pools_habits():
    start = T0 + 3 * 3600 + 600
    burst = [
        SliceSummary(pool=POOL, start=start + SLICE_S * i, events=5, swaps=5, volume=500.0,
                     last_price=2000.0)
        for i in range(4)
    ]  # fmt: skip
    features = quiet_pool_then(burst)
    # 25 swaps a minute against its usual half: log(26 / 1.5).
    assert features["swap_count_ratio"] == pytest.approx(math.log(26 / 1.5), rel=0.05)
    # 25 times its usual volume a second: log((1.96 + 1) / (0.04 + 1)) in the pool's
    # typical seconds (volume_ratio's own damping).
    assert features["volume_ratio"] > 1.0
    ordinary = quiet_pool_then(trading(start, 12, 12))
    assert ordinary["swap_count_ratio"] < 0.5
    assert abs(ordinary["volume_ratio"]) < 0.5


def wandering_then_sliding(calm_hours: int, slide_minutes: int, seed: int) -> list[SliceSummary]:
    """A swap a minute whose price wanders 5 basis points a minute for ``calm_hours``, then
    slides 0.25 % a minute for ``slide_minutes``."""
    rng = np.random.default_rng(seed)
    price, slices = 2000.0, []
    for i in range(calm_hours * 60 + slide_minutes):
        price *= math.exp(rng.normal(0, 0.0005) if i < calm_hours * 60 else -0.0025)
        slices.append(SliceSummary(pool=POOL, start=T0 + 60 * i, events=1, swaps=1,
                                   volume=100.0, last_price=price))  # fmt: skip
    return slices


def test_a_model_of_calm_hours_flags_a_slow_slide_that_no_window_shows():
    settings = PipelineSettings(slice_s=SLICE_S)
    key = f"137:uniswap_v3:{POOL}"

    def rows(slices: list[SliceSummary]) -> list[dict]:
        return list(pool_windows((key, slices), settings))

    calm = [r for r in rows(wandering_then_sliding(6, 0, seed=1))
            if r["window_end"].timestamp() >= T0 + 3600]  # fmt: skip
    detector = train_detector(calm, TrainingParams(n_estimators=50))
    other_day = [r for r in rows(wandering_then_sliding(6, 40, seed=2))
                 if r["window_end"].timestamp() >= T0 + 3600]  # fmt: skip
    slide = T0 + 6 * 3600
    before = [r for r in other_day if r["window_end"].timestamp() < slide]
    during = [r for r in other_day if slide + 1800 <= r["window_end"].timestamp() < slide + 2400]
    # 7 % down in half an hour, 0.25 % a minute: no window's own move says so.
    assert max(r["price_change"] for r in during) < 0.006
    vectors = [[r[name] for name in FEATURE_NAMES] for r in [*before, *during]]
    scores = detector.score(vectors)
    flagged = scores.is_anomaly
    assert not flagged[: len(before)].any()  # another calm day: nothing
    assert flagged[len(before) :].all()
    for row, top in zip(during, scores.top_features[len(before) :], strict=True):
        assert top[0].name == "price_drift_1h"
        assert classify(row, top, score=-0.1).kind == "price-dislocation"
