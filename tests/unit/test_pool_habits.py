"""A pool's habits (dexwatch.core.features.rates): decayed rates that score a quiet pool's
windows whose baseline is a silence, the price anchor a slow drift is measured from, and the
usual hour a build-up of volume is measured against."""

from __future__ import annotations

import math

import numpy as np
import pytest

from beam_pipelines.transforms.pool_windows import pool_windows
from dexwatch.core.features.chain import FEATURE_NAMES, INCIDENT_FLOORS, window_features
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


def days_of_trading(days: int, from_day: int = 0, busy_hour: int = 8) -> list[SliceSummary]:
    """A swap a minute for ``days`` days from the day ``from_day`` after T0 (08:00 UTC): 100
    a swap, but 300 in the clock hour ``busy_hour``."""
    start = T0 + from_day * 86_400
    return [
        SliceSummary(pool=POOL, start=t, events=1, swaps=1, last_price=2000.0,
                     volume=300.0 if t // 3600 % 24 == busy_hour else 100.0)
        for t in range(start, start + days * 86_400, 60)
    ]  # fmt: skip


def test_the_usual_hour_is_the_same_clock_hour_of_previous_days_or_their_mean_hour():
    assert T0 % 86_400 == 8 * 3600
    rates = fold_rates(None, days_of_trading(3, busy_hour=8), SLICE_S)
    day4 = T0 + 3 * 86_400
    # The busy hour's usual is its own (18,000): its 300 a minute is ordinary. The last hour
    # is weighted exp(-age / 1 h), so the hour before it (6,000) still counts for e^-1.
    busy = fold_rates(rates, days_of_trading(1, from_day=3)[:59], SLICE_S)
    expected = (1 - math.exp(-1)) * 18_000 + math.exp(-1) * 6_000
    assert busy.hour_vs_usual(day4 + 3540, 300.0, 60) == pytest.approx(
        math.log((expected + 650) / (18_000 + 650)), abs=0.02
    )
    # Elsewhere the usual is the days' mean hour (6,500), more than the hour's own (6,000).
    later = fold_rates(rates, days_of_trading(1, from_day=3)[: 6 * 60], SLICE_S)  # to 14:00
    at = day4 + 6 * 3600
    steady = later.hour_vs_usual(at, 100.0, 60)
    assert steady == pytest.approx(math.log(6_000 + 650) - math.log(6_500 + 650), abs=0.01)
    spike = [SliceSummary(pool=POOL, start=t, events=1, swaps=1, volume=300.0, last_price=2000.0)
             for t in range(at, at + 3600, 60)]  # fmt: skip
    after_hour = fold_rates(later, spike[:-1], SLICE_S)
    # The last hour weighted exp(-age / 1 h): 300 a minute, mixed with a decayed tail of 100.
    ratio = after_hour.hour_vs_usual(at + 3540, 300.0, 60)
    assert math.log(10_000 / 7_150) < ratio < math.log(18_650 / 7_150)


def test_a_pool_without_an_earlier_day_has_no_usual_hour_yet():
    first_day = days_of_trading(1)
    rates = fold_rates(None, first_day[:-1], SLICE_S)
    assert rates.hour_vs_usual(first_day[-1].start, 1e9, 60) == 0.0
    # Its first hour, seen from its start, is its first usual 08:00.
    next_day = fold_rates(rates, [first_day[-1], *days_of_trading(1, from_day=1)[:5]], SLICE_S)
    assert next_day.hour_vs_usual(T0 + 86_400 + 300, 300.0, 60) != 0.0
    # A pool first seen mid-hour has not said what that hour held: it is left out.
    mid_hour = [s for s in first_day if s.start >= T0 + 1800]
    late = fold_rates(None, [*mid_hour, *days_of_trading(1, from_day=1)[:60]], SLICE_S)
    assert late.usual_days[8] == 0.0 and late.usual_days[9] > 0.0


def build_up(days: int, ramp_minutes: int, top: float) -> list[SliceSummary]:
    """``days`` ordinary days (busy hours included), then a swap a minute whose volume grows
    evenly (geometrically) from 100 to ``top`` times that over ``ramp_minutes``, then holds."""
    slices = days_of_trading(days)
    start = T0 + days * 86_400
    growth = top ** (1 / ramp_minutes)
    for i in range(ramp_minutes + 60):
        volume = 100.0 * growth ** min(i, ramp_minutes)
        slices.append(SliceSummary(pool=POOL, start=start + 60 * i, events=1, swaps=1,
                                   volume=volume, last_price=2000.0))  # fmt: skip
    return slices


def test_a_volume_build_up_that_no_window_shows_is_flagged_over_the_hour():
    """Volume growing 6 % a minute to 30 times the pool's usual over an hour: no window's
    ratio to its minutes before says so, the hour against the pool's usual hour does, against
    a limit no training can move (its floor: ten times the usual hour)."""
    settings = PipelineSettings(slice_s=SLICE_S)
    key = f"137:uniswap_v3:{POOL}"
    day = 86_400

    def rows(slices: list[SliceSummary], since: int) -> list[dict]:
        return [r for r in pool_windows((key, slices), settings)
                if r["window_end"].timestamp() >= since]  # fmt: skip

    # A model of ordinary days, the first of which had no earlier day: the feature's values
    # are those of a bootstrap (0) and of a pool with history (near 0).
    ordinary = rows(days_of_trading(3), T0 + 3600)
    detector = train_detector(ordinary, TrainingParams(n_estimators=50))
    start = T0 + 2 * day
    windows = rows(build_up(2, 60, 30.0), start)
    calm = [r for r in windows if r["window_end"].timestamp() < start + 60]
    ramp = [r for r in windows if r["window_end"].timestamp() >= start]
    assert max(r["volume_ratio"] for r in ramp) < math.log(1.5)
    scores = detector.score([[r[name] for name in FEATURE_NAMES] for r in [*calm, *ramp]])
    assert not scores.is_anomaly[: len(calm)].any()
    flagged = [i for i, hit in enumerate(scores.is_anomaly[len(calm) :]) if hit]
    assert flagged, "the build-up is flagged"
    first = ramp[flagged[0]]
    assert first["volume_1h_vs_usual"] >= INCIDENT_FLOORS["volume_1h_vs_usual"]
    # Within the hour after volume passed ten times the usual minute.
    assert first["window_end"].timestamp() < start + 120 * 60
    top = scores.top_features[len(calm) + flagged[0]]
    assert top[0].name == "volume_1h_vs_usual"
    assert classify(first, top, score=-0.1).kind == "volume-spike"
    # The same windows without the hour's view: nothing to see.
    blind = [[{**r, "volume_1h_vs_usual": 0.0}[name] for name in FEATURE_NAMES] for r in ramp]
    assert not detector.score(blind).is_anomaly.any()
