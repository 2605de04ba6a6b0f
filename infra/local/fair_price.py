"""The market's fair prices: each token's USD price wandering as a geometric Brownian motion
of ``daily_volatility`` per simulated day, in calm and hectic regimes.

The volatility is multiplied by an *intensity*, the product of a slow (regime) and a fast
(burst) log-normal factor, each an Ornstein-Uhlenbeck process: markets have quiet hours and
hectic ones, and their activity moves with their volatility (the market simulator scales its
trading by the same intensity). The USD stablecoins are the unit and do not move (an injected
depeg moves one: ``infra.local.market_events``).
"""

from __future__ import annotations

import math

import numpy as np

from infra.local.settings import SimulatorSettings

__all__ = ["FairPrices"]


class FairPrices:
    """Fair USD prices of the market's tokens, drawing from the market's random generator.

    Args:
        settings: the simulator's settings (volatility, regimes, bursts, day length).
        initial_usd: each token's price at the start.
        rng: the market's generator, so that one seed fixes the whole market.
        pegged: the tokens that hold their price (the USD stablecoins).
    """

    def __init__(
        self,
        settings: SimulatorSettings,
        initial_usd: dict[str, float],
        rng: np.random.Generator,
        pegged: frozenset[str] = frozenset({"USDC"}),
    ) -> None:
        self.settings = settings
        self.usd = dict(initial_usd)
        self.rng = rng
        self.pegged = pegged
        # Moves under way (``shift``): [per-second log move by token, seconds left].
        self._shifts: list[list] = []
        # Logs of the volatility and activity multipliers, slow (regime) and fast (burst).
        self._regime = self._burst = 0.0

    def continue_from(self, observed_usd: dict[str, float]) -> None:
        """Go on from the prices the market shows (the pools'), the pegged tokens kept.

        Args:
            observed_usd: USD prices by token; tokens not in it keep theirs.
        """
        for symbol, price in observed_usd.items():
            if symbol in self.usd and symbol not in self.pegged and price > 0:
                self.usd[symbol] = price

    def wander(self, dt: float) -> None:
        """Move the regime, the burst and every price on by ``dt`` seconds."""
        s = self.settings
        self._regime = self._mean_reverting(self._regime, dt, s.regime_sigma, s.regime_halflife_s)
        self._burst = self._mean_reverting(self._burst, dt, s.burst_sigma, s.burst_halflife_s)
        sigma = s.daily_volatility * self.intensity() * math.sqrt(dt / s.day_length_s)
        for symbol in self.usd:
            if symbol not in self.pegged:
                self.usd[symbol] *= math.exp(sigma * self.rng.standard_normal())
        for shift in self._shifts:
            step = min(dt, shift[1])
            for symbol, rate in shift[0].items():
                self.usd[symbol] *= math.exp(rate * step)
            shift[1] -= step
        self._shifts = [shift for shift in self._shifts if shift[1] > 0]

    def shift(self, factors: dict[str, float], over_s: float) -> None:
        """Move these tokens' prices by these factors, evenly (in logs) over the next
        ``over_s`` seconds, on top of their wandering: a market move, one asset's move, a
        depeg (``infra.local.market_events``). Draws nothing: the market's path stays."""
        rates = {symbol: math.log(factor) / over_s for symbol, factor in factors.items()}
        self._shifts.append([rates, float(over_s)])

    def intensity(self) -> float:
        """The multiplier of volatility and activity, the regime's times the burst's: 1 on
        average, so that daily_volatility and swaps_per_minute stay the means."""
        s = self.settings
        return math.exp(self._regime + self._burst - (s.regime_sigma**2 + s.burst_sigma**2) / 2)

    def _mean_reverting(self, x: float, dt: float, sigma: float, halflife_s: float) -> float:
        """One step of an Ornstein-Uhlenbeck process of standard deviation ``sigma``."""
        if sigma <= 0:
            return x
        decay = math.exp(-dt * math.log(2) / halflife_s)
        return x * decay + sigma * math.sqrt(1 - decay**2) * self.rng.standard_normal()
