"""The simulator's fair prices (infra/local/fair_price.py): the volatility they are set to, in
calm and hectic regimes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infra.local.fair_price import FairPrices
from infra.local.settings import SimulatorSettings

DAY_S = 86_400


def daily_log_changes(settings: SimulatorSettings, days: int, seed: int = 1) -> np.ndarray:
    prices = FairPrices(settings, {"USDC": 1.0, "WETH": 2000.0}, np.random.default_rng(seed))
    closes = [math.log(prices.usd["WETH"])]
    for _ in range(days):
        for _ in range(DAY_S // 60):
            prices.wander(60.0)
        closes.append(math.log(prices.usd["WETH"]))
        assert prices.usd["USDC"] == 1.0  # the unit
    return np.diff(closes)


def test_a_calm_market_moves_by_its_daily_volatility():
    calm = SimulatorSettings(
        day_length_s=DAY_S, daily_volatility=0.03, regime_sigma=0.0, burst_sigma=0.0
    )
    changes = daily_log_changes(calm, 400)
    assert changes.std() == pytest.approx(0.03, rel=0.1)


def test_regimes_fatten_the_tails_more_than_the_middle():
    settings = dict(day_length_s=DAY_S, daily_volatility=0.03, burst_sigma=0.5,
                    burst_halflife_s=120, regime_halflife_s=10_800)  # fmt: skip
    calm = daily_log_changes(SimulatorSettings(**settings, regime_sigma=0.0), 400)
    hectic = daily_log_changes(SimulatorSettings(**settings, regime_sigma=0.6), 400)
    # The intensity is 1 on average: a typical day stays about as calm; the rare hectic
    # ones make the tails.
    assert np.median(np.abs(hectic)) < 1.3 * np.median(np.abs(calm))
    assert np.quantile(np.abs(hectic), 0.99) > 1.3 * np.quantile(np.abs(calm), 0.99)

    def kurtosis(x: np.ndarray) -> float:
        return float(((x - x.mean()) ** 4).mean() / x.var() ** 2)

    assert kurtosis(hectic) > kurtosis(calm) + 0.3
