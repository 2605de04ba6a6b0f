"""The alert kind rule (dexwatch.core.features.kinds): kinds from the sizes in a window's
features, whichever feature the model found most deviating."""

from __future__ import annotations

import math

import pytest

from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.features.kinds import classify
from dexwatch.core.schemas.alert import TopFeature


def _window(**features: float) -> dict[str, float]:
    return {**dict.fromkeys(FEATURE_NAMES, 0.0), **features}


def _top(*deviations: tuple[str, float, float]) -> list[TopFeature]:
    return [TopFeature(name=n, value=v, deviation=d) for n, v, d in deviations]


def test_a_providers_exit_during_wash_trading_does_not_make_it_a_drain():
    """The case that named the wrong kind: an ordinary provider's 4 % exit deviated most."""
    window = _window(
        liquidity_removed_share=0.04, net_liquidity_change=-0.04, pair_two_way_excess=14.0,
        top_trader_share=0.9, volume_ratio=math.log(20),
    )  # fmt: skip
    top = _top(("liquidity_removed_share", 0.04, 40.0), ("pair_two_way_excess", 14.0, 25.0))
    found = classify(window, top, score=-0.08)
    assert found.kind == "wash-trading"
    assert found.evidence[0].startswith("wash-trading: pair_two_way_excess = 14")
    # Half sure from the sizes, plus the model's share behind them (25 of 65).
    assert found.confidence == pytest.approx(0.5 + 0.5 * 25 / 65, abs=1e-3)


def test_most_of_a_pool_taken_is_a_rug_pull_and_high_whatever_the_score():
    window = _window(
        liquidity_removed_share=0.97, net_liquidity_change=-0.97, liquidity_lost_1h=0.97,
        price_range=math.log(1.2),
    )  # fmt: skip
    top = _top(("liquidity_removed_share", 0.97, 60.0), ("price_range", 0.18, 20.0))
    found = classify(window, top, score=-0.01)  # barely anomalous to the model
    assert (found.kind, found.severity) == ("rug-pull", "high")


def test_one_traders_large_price_moving_swap_is_a_price_dislocation_not_wash_trading():
    # A manipulator's 12 % swap: one address with most of a busy window's volume, but the
    # price moved with it, and no pair traded both ways.
    window = _window(top_trader_share=0.83, volume_ratio=1.44, price_range=0.123,
                     max_swap_price_impact=0.113, pair_two_way_excess=-1.4)  # fmt: skip
    top = _top(("max_swap_price_impact", 0.113, 21.5), ("price_range", 0.123, 12.4))
    assert classify(window, top, score=-0.2).kind == "price-dislocation"


def test_four_fifths_of_a_pool_is_a_rug_pull_two_thirds_a_drain():
    top = _top(("liquidity_removed_share", 0.0, 100.0))
    for removed, kind in ((0.88, "rug-pull"), (0.68, "liquidity-drain")):
        window = _window(liquidity_removed_share=removed, net_liquidity_change=-removed)
        assert classify(window, top, score=-0.3).kind == kind, removed


def test_a_slow_drain_is_named_by_the_hour_and_sized_by_it():
    window = _window(liquidity_removed_share=0.004, net_liquidity_change=-0.004,
                     liquidity_lost_1h=0.12)  # fmt: skip
    found = classify(window, _top(("liquidity_lost_1h", 0.12, 30.0)), score=-0.01)
    assert (found.kind, found.severity, found.confidence) == ("liquidity-drain", "medium", 1.0)


def test_a_pool_thinned_by_a_slow_drain_is_not_named_by_its_ordinary_price_moves():
    """The CI case: a slow drain's first flagged window, 9 % lost in the hour (below the
    drain's 10 %), while the thinner pool's ordinary swaps moved the price 3.5 %. The model
    flagged liquidity alone; the price is named only when the model finds it deviating."""
    window = _window(liquidity_removed_share=0.022, net_liquidity_change=-0.022,
                     liquidity_lost_1h=0.09, liquidity_lost_24h=0.104,
                     price_range=math.log(1.035))  # fmt: skip
    flagged_for_liquidity = _top(
        ("liquidity_lost_24h", 0.104, 103.8),
        ("liquidity_lost_1h", 0.09, 89.7),
        ("net_liquidity_change", -0.022, -22.4),
    )
    assert classify(window, flagged_for_liquidity, score=-0.05).kind == "liquidity-drain"
    flagged_for_price = _top(("price_range", 0.034, 30.0), ("liquidity_lost_1h", 0.09, 20.0))
    assert classify(window, flagged_for_price, score=-0.05).kind == "price-dislocation"


def test_liquidity_taken_out_and_put_back_in_one_window_is_not_a_drain():
    # Removed 80 %, added as much back: net nothing, so nothing drained.
    window = _window(liquidity_removed_share=0.8, net_liquidity_change=0.0,
                     price_change=math.log(1.04))  # fmt: skip
    top = _top(("liquidity_removed_share", 0.8, 50.0), ("price_change", 0.039, 10.0))
    found = classify(window, top, score=-0.03)
    assert (found.kind, found.severity) == ("price-dislocation", "low")


def test_a_price_move_is_sized_by_how_far_it_went():
    found = classify(
        _window(price_range=math.log(1.12), max_swap_price_impact=math.log(1.12)),
        _top(("price_range", 0.113, 80.0)),
        score=-0.02,
    )
    assert (found.kind, found.severity) == ("price-dislocation", "medium")
    assert classify(_window(price_change=math.log(1.25)), [], score=-0.01).severity == "high"


def test_without_a_size_test_the_top_feature_names_it_at_low_confidence():
    top = _top(("swap_count_ratio", 0.9, 12.0), ("volume_ratio", 0.5, 4.0))
    found = classify(_window(swap_count_ratio=0.9, volume_ratio=0.5), top, score=-0.12)
    assert found.kind == "activity-spike"
    assert found.confidence == pytest.approx(0.5 * 12 / 16, abs=1e-3)
    assert found.severity == "high"  # the score's
    assert found.evidence[0] == "activity-spike: no size test held"


def test_a_drain_hours_ago_does_not_name_the_pools_next_incident():
    # The day still holds a drain of 60 % from hours ago; this window is a 12 % manipulation.
    window = _window(liquidity_lost_24h=0.6, price_range=math.log(1.12),
                     max_swap_price_impact=math.log(1.12))  # fmt: skip
    top = _top(("liquidity_lost_24h", 0.6, 80.0), ("price_range", 0.11, 30.0))
    found = classify(window, top, score=-0.05)
    assert found.kind == "price-dislocation"
    # Flagged for the day's loss alone, the window is named by it.
    alone = classify(_window(liquidity_lost_24h=0.6), top[:1], score=-0.05)
    assert alone.kind == "liquidity-drain"
