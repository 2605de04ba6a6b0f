"""The market simulator: keeps the local pools busy the way real markets are.

Each token has a fair USD price that wanders (geometric Brownian motion, ``daily_volatility``
per simulated day). Traders, a few of them much busier than the rest, swap with log-normal
(heavy-tailed) sizes; most trades lean toward the fair price, like arbitrage, the rest are
noise. Activity follows a daily rhythm compressed into ``day_length_s`` of chain time.
Liquidity providers now and then add a position or take part of one out.

Live runs mine a block every ``block_interval_s`` stamped with the wall clock (the local
streaming runner's watermark follows the wall clock). History runs mine as fast as the node
allows with timestamps ``history_block_interval_s`` apart, ahead of the wall clock, for
batch replay and training data.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from infra.local import evm
from infra.local.deployment import LocalDeployment
from infra.local.evm import PoolState, Rpc, Transactor, Tx
from infra.local.settings import LocalSettings

log = logging.getLogger("dexwatch.local.market")

# Daily rhythm: activity swings between 1 - A and 1 + A times the mean over a simulated day.
_RHYTHM_AMPLITUDE = 0.6
# Share of trades that lean toward the fair price; the rest pick a side at random.
_ARBITRAGE_SHARE = 0.7
# No single trade takes more than this share of the token's (virtual) reserve in the pool:
# keeps the heavy tail from emptying a small pool, and a drained pool from being hammered.
_MAX_TRADE_SHARE = 0.01
# A liquidity provider's add or removal, as a share of the pool's value.
_LP_ADD_SHARE = (0.001, 0.004)
_LP_REMOVE_FRACTION = (0.3, 1.0)
_LP_RANGES = (1.2, 1.5, 2.0, 3.0)
# Seconds between the live simulator's progress lines.
_REPORT_EVERY_S = 60.0


def with_live_blocks(settings: LocalSettings) -> LocalSettings:
    """``settings`` whose history is mined with blocks as far apart as in live runs: history
    that the live pipeline or its model sees must look like live traffic."""
    interval = max(1, round(settings.simulator.block_interval_s))
    return settings.with_sections(simulator={"history_block_interval_s": interval})


@dataclass
class MarketStats:
    blocks: int = 0
    swaps: int = 0
    liquidity_changes: int = 0
    reverted: int = 0
    first_block: int | None = None
    last_block: int | None = None


class MarketSimulator:
    def __init__(self, settings: LocalSettings, deployment: LocalDeployment) -> None:
        self.settings = settings.simulator
        self.deployment = deployment
        self.rng = np.random.default_rng(self.settings.seed)
        self.fair_usd = {s: t.initial_usd_price for s, t in deployment.tokens.items()}
        traders = deployment.accounts.traders
        # Zipf-like activity: the busiest trader trades about len(traders) times the quietest.
        weights = 1.0 / np.arange(1, len(traders) + 1)
        self._traders = traders
        self._trader_weights = weights / weights.sum()
        self.stats = MarketStats()
        self._rpc_url = settings.local.rpc_url

    # --- running ---------------------------------------------------------------------------

    def run_live(self, stop: threading.Event, duration_s: float | None = None) -> MarketStats:
        """Mine a busy block every block_interval_s, at wall-clock time, until ``stop`` is set
        or ``duration_s`` has passed."""
        interval = self.settings.block_interval_s
        deadline = None if duration_s is None else time.monotonic() + duration_s
        rpc = Rpc(self._rpc_url)
        try:
            with evm.manual_mining(rpc):
                transactor = Transactor(rpc)
                _, last_timestamp = evm.latest_block(rpc)
                next_report = time.monotonic() + _REPORT_EVERY_S
                log.info("simulating the market live, a block every %gs", interval)
                while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                    started = time.monotonic()
                    now = max(int(time.time()), last_timestamp + 1)
                    # After a pause (a stopped simulator) trade one normal block, not the backlog.
                    dt = min(now - last_timestamp, 2 * interval)
                    self._block(rpc, transactor, now, dt=dt, timestamp=None)
                    last_timestamp = now
                    if time.monotonic() >= next_report:
                        self._report()
                        next_report += _REPORT_EVERY_S
                    stop.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            rpc.close()
        self._report()
        return self.stats

    def generate_history(
        self,
        hours: float,
        progress: Callable[[int, int], None] | None = None,
        block_interval_s: int | None = None,
    ) -> tuple[int, int]:
        """Mine ``hours`` of chain time as fast as the node allows, blocks
        ``block_interval_s`` (default history_block_interval_s) apart; returns (first, last)
        block of this call. Block timestamps run ahead of the wall clock from the latest
        block on."""
        interval = block_interval_s or self.settings.history_block_interval_s
        total = max(1, round(hours * 3600 / interval))
        rpc = Rpc(self._rpc_url)
        try:
            with evm.manual_mining(rpc):
                transactor = Transactor(rpc)
                before, timestamp = evm.latest_block(rpc)
                for done in range(1, total + 1):
                    timestamp += interval
                    self._block(rpc, transactor, timestamp, dt=interval, timestamp=timestamp)
                    if progress is not None and (done % 50 == 0 or done == total):
                        progress(done, total)
        finally:
            rpc.close()
        self._report()
        assert self.stats.last_block is not None
        return before + 1, self.stats.last_block

    def _report(self) -> None:
        s = self.stats
        log.info(
            "market: %d blocks, %d swaps, %d liquidity changes, %d reverted",
            s.blocks,
            s.swaps,
            s.liquidity_changes,
            s.reverted,
            extra={"last_block": s.last_block},
        )

    # --- one block -------------------------------------------------------------------------

    def _block(
        self, rpc: Rpc, transactor: Transactor, chain_time: int, dt: float, timestamp: int | None
    ) -> None:
        """Trade one block's worth (``dt`` seconds of chain time) and mine it."""
        self._wander(dt)
        states = evm.read_pools(rpc, self.deployment.pools)
        rhythm = self.rhythm(chain_time)
        txs: list[Tx] = []
        for pool in self.deployment.pools:
            state = states[pool.name]
            if state.reserve0 == 0 or state.reserve1 == 0:
                continue  # emptied (a rug pull): nobody trades there any more
            expected = self.settings.swaps_per_minute * dt / 60.0 * rhythm
            for _ in range(self.rng.poisson(expected)):
                swap, state = self._swap(state)
                if swap:
                    txs += swap
                    self.stats.swaps += 1
            if self.rng.random() < self.settings.lp_change_probability * dt / 60.0:
                change = self._liquidity_change(rpc, state)
                if change:
                    txs += change
                    self.stats.liquidity_changes += 1
        receipts = transactor.execute(txs, timestamp=timestamp, strict=False)
        self.stats.reverted += sum(r["status"] != "0x1" for r in receipts)
        number, _ = evm.latest_block(rpc)
        self.stats.blocks += 1
        self.stats.first_block = self.stats.first_block or number
        self.stats.last_block = number

    def rhythm(self, chain_time: float) -> float:
        """Activity multiplier at ``chain_time``: quiet at the simulated night, busy by day."""
        phase = 2 * math.pi * (chain_time % self.settings.day_length_s) / self.settings.day_length_s
        return 1.0 - _RHYTHM_AMPLITUDE * math.cos(phase)

    def _wander(self, dt: float) -> None:
        sigma = self.settings.daily_volatility * math.sqrt(dt / self.settings.day_length_s)
        for symbol in self.fair_usd:
            if symbol != "USDC":
                self.fair_usd[symbol] *= math.exp(sigma * self.rng.standard_normal())

    def _usd_value(self, symbol: str, raw: int) -> float:
        token = self.deployment.tokens[symbol]
        return raw / 10**token.decimals * self.fair_usd[symbol]

    def _swap(self, state: PoolState) -> tuple[list[Tx], PoolState]:
        pool = state.pool
        fair = self.fair_usd[pool.token0] / self.fair_usd[pool.token1]
        if self.rng.random() < _ARBITRAGE_SHARE:
            zero_for_one = evm.human_price(self.deployment, state) > fair  # token0 too dear
        else:
            zero_for_one = bool(self.rng.random() < 0.5)
        symbol_in = pool.token0 if zero_for_one else pool.token1
        reserve_in = state.reserve0 if zero_for_one else state.reserve1
        usd = self.settings.trade_usd_median * math.exp(
            self.settings.trade_usd_sigma * self.rng.standard_normal()
        )
        usd = min(usd, _MAX_TRADE_SHARE * self._usd_value(symbol_in, reserve_in))
        amount_in = evm.units(self.deployment.tokens[symbol_in], usd / self.fair_usd[symbol_in])
        if amount_in <= 0:
            return [], state
        trader = str(self.rng.choice(self._traders, p=self._trader_weights))
        return evm.swap_exact_in(self.deployment, state, trader, zero_for_one, amount_in)

    def _liquidity_change(self, rpc: Rpc, state: PoolState) -> list[Tx]:
        """A liquidity provider adds a position, or takes part of one of theirs out."""
        pool = state.pool
        provider = str(self.rng.choice(self.deployment.accounts.liquidity_providers))
        if pool.protocol == "v3":
            positions = evm.positions_in(
                self.deployment,
                pool,
                evm.v3_positions(rpc, self.deployment.periphery["v3_position_manager"], [provider]),
            )
            if positions and self.rng.random() < 0.5:
                position = positions[int(self.rng.integers(len(positions)))]
                fraction = self.rng.uniform(*_LP_REMOVE_FRACTION)
                return [
                    evm.v3_remove(self.deployment, position, int(position.liquidity * fraction))
                ]
            return [self._v3_add(state, provider)]
        (balance,) = evm.v2_balances(rpc, pool.address, [provider])
        if balance and self.rng.random() < 0.5:
            return evm.v2_remove(
                pool, provider, int(balance * self.rng.uniform(*_LP_REMOVE_FRACTION))
            )
        half_usd = self._pool_usd(state) * self.rng.uniform(*_LP_ADD_SHARE) / 2
        amount0 = evm.units(
            self.deployment.tokens[pool.token0], half_usd / self.fair_usd[pool.token0]
        )
        # At the pair's own ratio: anything more would be donated to the other providers.
        amount1 = amount0 * state.reserve1 // state.reserve0
        return evm.v2_add(self.deployment, pool, provider, amount0, amount1)

    def _v3_add(self, state: PoolState, provider: str) -> Tx:
        pool = state.pool
        assert pool.fee is not None
        spacing = evm.TICK_SPACING[pool.fee]
        width = math.log(float(self.rng.choice(_LP_RANGES))) / math.log(1.0001)
        lower = evm.aligned_tick(state.tick - width, spacing)
        upper = evm.aligned_tick(state.tick + width, spacing)
        half_usd = self._pool_usd(state) * self.rng.uniform(*_LP_ADD_SHARE) / 2
        amount0, amount1 = (
            evm.units(self.deployment.tokens[s], half_usd / self.fair_usd[s])
            for s in (pool.token0, pool.token1)
        )
        return evm.v3_mint(self.deployment, pool, provider, lower, upper, amount0, amount1)

    def _pool_usd(self, state: PoolState) -> float:
        """The pool's value at fair prices (virtual reserves for V3)."""
        pool = state.pool
        return self._usd_value(pool.token0, state.reserve0) + self._usd_value(
            pool.token1, state.reserve1
        )
