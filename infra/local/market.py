"""The market simulator: keeps the local pools busy the way real markets are.

Each token has a fair USD price that wanders (``infra.local.fair_price``: geometric Brownian
motion, ``daily_volatility`` per simulated day, in calm and hectic regimes). Traders, a few
of them much busier than the rest, swap with log-normal (heavy-tailed) sizes, some through a
router that receives the output. Prices are found either the early way (most trades lean
toward the fair price) or as on a real chain (noise traders pick sides at random; an
arbitrageur brings each pool back within its fee of the fair price every block). Activity
follows a daily and weekly rhythm of ``day_length_s`` days of chain time, and pools fall
silent for hours now and then. Liquidity providers (``infra.local.liquidity_providers``)
add, remove and move positions.

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
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from infra.local import evm
from infra.local.deployment import LocalDeployment
from infra.local.evm import ChainError, PoolState, Rpc, Transactor, Tx
from infra.local.fair_price import FairPrices
from infra.local.liquidity_providers import LiquidityProviders
from infra.local.market_events import ShiftRequests
from infra.local.settings import LocalSettings, SimulatorSettings

log = logging.getLogger("dexwatch.local.market")

# With price_discovery "lean": the share of trades that lean toward the fair price.
_LEANING_SHARE = 0.7
# No single trade takes more than this share of the token's (virtual) reserve in the pool:
# keeps the heavy tail from emptying a small pool, and a drained pool from being hammered.
_MAX_TRADE_SHARE = 0.01
# A price this close (in log) to an arbitrage's target is at it.
_AT_TARGET = 1e-6
# A V2 pair's fee: an arbitrageur leaves its price this close to the fair price.
_V2_FEE = 0.003
# Concentrated liquidity is topped up at most once an hour of chain time.
_TOP_UP_EVERY_S = 3600.0
# Seconds between the live simulator's progress lines.
_REPORT_EVERY_S = 60.0


def with_live_blocks(settings: LocalSettings) -> LocalSettings:
    """``settings`` whose history is mined with blocks as far apart as in live runs: history
    that the live pipeline or its model sees must look like live traffic."""
    interval = max(1, round(settings.simulator.block_interval_s))
    return settings.with_sections(simulator={"history_block_interval_s": interval})


@dataclass
class _History:
    """The chain as the simulator left it, while it is the only one mining."""

    states: dict[str, PoolState] | None  # None after a block that traded: read them again
    number: int


@dataclass
class MarketStats:
    blocks: int = 0
    swaps: int = 0
    liquidity_changes: int = 0
    reverted: int = 0
    first_block: int | None = None
    last_block: int | None = None


def busiest_span_start(settings: SimulatorSettings, hours: float, not_after: float) -> int:
    """The start of the latest span of ``hours`` centred on the market's busiest time of day
    that starts by ``not_after`` (spans of a day or more: ``not_after``). A first model
    mined from two night hours of a market with real days takes the ordinary extremes of
    its busy hours (a shallow pool's large trades) for anomalies."""
    day, span = settings.day_length_s, hours * 3600
    if span >= day:
        return int(not_after)
    start = (math.floor(not_after / day) + settings.busiest_at) * day - span / 2
    while start > not_after:
        start -= day
    return int(start)


class MarketSimulator:
    def __init__(self, settings: LocalSettings, deployment: LocalDeployment) -> None:
        self.settings = settings.simulator
        self.deployment = deployment
        self.rng = np.random.default_rng(self.settings.seed)
        self.prices = FairPrices(
            self.settings,
            {s: t.initial_usd_price for s, t in deployment.tokens.items()},
            self.rng,
            pegged=frozenset(s for s, t in deployment.tokens.items() if t.peg == "USD"),
        )
        traders = deployment.accounts.traders
        # Zipf-like activity: the busiest trader trades about len(traders) times the quietest.
        weights = 1.0 / np.arange(1, len(traders) + 1)
        self._traders = traders
        self._trader_weights = weights / weights.sum()
        # The quietest trader is also the arbitrage bot (price_discovery "arbitrage").
        self._arbitrageur = traders[-1]
        self._router = deployment.periphery["v3_swap_router"]
        self.providers = LiquidityProviders(self.settings, deployment, self.rng, self._usd_value)
        self._silent_until: dict[str, float] = {}
        self._hushed: frozenset[str] = frozenset()  # pools kept silent by ``fill``
        self._next_top_up = 0.0
        self.stats = MarketStats()
        self._rpc_url = settings.local.rpc_url
        # Fair-price moves asked by `dexwatch simulate inject` while this runs live.
        self._mailbox = ShiftRequests(settings.state_dir)

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
                # After a mined history (or an earlier run) the market goes on from the
                # pools' prices: from the tokens' initial ones, the arbitrageur would move
                # every pool by the history's whole drift in one block (false dislocations).
                states = evm.read_pools(rpc, self.deployment.pools)
                trading = {n: s for n, s in states.items() if s.reserve0 and s.reserve1}
                self.prices.continue_from(evm.usd_prices(self.deployment, trading))
                next_report = time.monotonic() + _REPORT_EVERY_S
                log.info("simulating the market live, a block every %gs", interval)
                while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                    started = time.monotonic()
                    now = max(int(time.time()), last_timestamp + 1)
                    # After a pause (a stopped simulator) trade one normal block, not the backlog.
                    dt = min(now - last_timestamp, 2 * interval)
                    for factors, over_s in self._mailbox.receive():
                        self.prices.shift(factors, over_s)
                    try:
                        self._block(rpc, transactor, now, dt=dt, timestamp=None)
                    except ChainError as err:
                        # An injected drain sends from the providers' accounts too: the
                        # transactor asks their nonces again, and the market goes on.
                        log.warning("a block of the live market failed: %s", err)
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
                # Nobody else mines while history is mined: the pools change only in the
                # blocks that trade, and block numbers follow on from ``before``.
                history = _History(evm.read_pools(rpc, self.deployment.pools), before)
                for done in range(1, total + 1):
                    timestamp += interval
                    self._block(rpc, transactor, timestamp, interval, timestamp, history)
                    if progress is not None and (done % 50 == 0 or done == total):
                        progress(done, total)
        finally:
            rpc.close()
        self._report()
        assert self.stats.last_block is not None
        return before + 1, self.stats.last_block

    def fill(self, seconds: float, silent: Collection[str] = ()) -> None:
        """Mine ``seconds`` of normal trading (as ``generate_history``) in every pool but the
        ones named in ``silent``: the gaps of an incident that takes its time
        (``infra.local.incidents.inject``'s ``between``)."""
        self._hushed = frozenset(silent)
        try:
            self.generate_history(seconds / 3600)
        finally:
            self._hushed = frozenset()

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
        self,
        rpc: Rpc,
        transactor: Transactor,
        chain_time: int,
        dt: float,
        timestamp: int | None,
        history: _History | None = None,
    ) -> None:
        """Trade one block's worth (``dt`` seconds of chain time) and mine it. ``history``:
        what the chain is known to be when this simulator is the only one mining."""
        self.prices.wander(dt)
        if history is not None and history.states is not None:
            states = history.states
        else:
            states = evm.read_pools(rpc, self.deployment.pools)
        activity = self.rhythm(chain_time) * self.prices.intensity()
        txs: list[Tx] = []
        if self.providers.concentrated and chain_time >= self._next_top_up:
            awake = {name: state for name, state in states.items() if name not in self._hushed}
            txs += self.providers.top_up(rpc, awake)
            self._next_top_up = chain_time + _TOP_UP_EVERY_S
        jit_done = False  # one just-in-time bundle a block at most
        for pool in self.deployment.pools:
            state = states[pool.name]
            if state.reserve0 == 0 or state.reserve1 == 0:
                continue  # emptied (a rug pull): nobody trades there any more
            if self._silent(pool.name, chain_time, dt):
                continue
            # The traders who swapped this pool in this block: an ordinary trader swaps a pool
            # once a block (two swaps of one address around another's are a sandwich's shape).
            swapped: dict[str, int] = {}  # trader: its swap's place in the block
            if self.settings.price_discovery == "arbitrage":
                arbitrage, state = self._arbitrage(state)
                txs += arbitrage
                self.stats.swaps += bool(arbitrage)
                if arbitrage:
                    swapped[self._arbitrageur] = 0
            if not jit_done and self._jit_now(pool.protocol, dt, activity):
                swap, _ = self._swap(state, swapped, large=True)
                if swap:
                    # First in the block: the bundle's position id is read at the block before.
                    txs[0:0] = self.providers.just_in_time(rpc, state, swap)
                    jit_done = True
                    self.stats.swaps += 1
                    self.stats.liquidity_changes += 2
            expected = self.settings.swaps_per_minute * dt / 60.0 * activity
            for _ in range(self.rng.poisson(expected)):
                swap, state = self._swap(state, swapped)
                if swap:
                    txs += swap
                    self.stats.swaps += 1
            if self.rng.random() < self.settings.lp_change_probability * dt / 60.0:
                change = self.providers.change(rpc, state)
                if change:
                    txs += change
                    self.stats.liquidity_changes += 1
        receipts = transactor.execute(txs, timestamp=timestamp, strict=False)
        for tx, receipt in zip(txs, receipts, strict=True):
            if receipt["status"] != "0x1":
                self.stats.reverted += 1
                log.debug("reverted: %s from %s to %s", tx.data[:10], tx.sender, tx.to)
        if history is None:
            number, _ = evm.latest_block(rpc)
        else:
            history.number += 1
            number = history.number
            history.states = None if txs else states
        self.stats.blocks += 1
        self.stats.first_block = self.stats.first_block or number
        self.stats.last_block = number

    def rhythm(self, chain_time: float) -> float:
        """Activity multiplier at ``chain_time``: quiet at the simulated night, busy by day,
        quieter at weekends (days are counted from the Unix epoch, a Thursday)."""
        s = self.settings
        days = chain_time / s.day_length_s
        daily = 1.0 + s.rhythm_amplitude * math.cos(2 * math.pi * (days % 1.0 - s.busiest_at))
        weekend = (int(days) + 3) % 7 >= 5
        return daily * (s.weekend_activity if weekend else 1.0)

    def _jit_now(self, protocol: str, dt: float, activity: float) -> bool:
        rate = self.settings.jit_per_hour
        return protocol == "v3" and rate > 0 and self.rng.random() < rate * dt / 3600 * activity

    def _silent(self, pool: str, chain_time: float, dt: float) -> bool:
        """Whether ``pool`` is in one of its silences, which start now and then, or kept
        silent by ``fill``."""
        if pool in self._hushed:
            return True
        s = self.settings
        if s.silences_per_day <= 0:
            return False
        if chain_time < self._silent_until.get(pool, 0.0):
            return True
        if self.rng.random() < s.silences_per_day * dt / s.day_length_s:
            length = self.rng.exponential(s.silence_mean_hours * 3600)
            self._silent_until[pool] = chain_time + length
            return True
        return False

    def _arbitrage(self, state: PoolState) -> tuple[list[Tx], PoolState]:
        """The arbitrageur's back-run: the pool's price back to within its fee of the fair
        price, when it has drifted further than the fee and arbitrage_min_gap."""
        pool = state.pool
        fee = pool.fee / 1e6 if pool.fee else _V2_FEE
        fair = self.prices.usd[pool.token0] / self.prices.usd[pool.token1]
        gap = math.log(evm.human_price(self.deployment, state) / fair)
        # A stable pool left at its last back-run's target reads a hair beyond it through the
        # rounded reserves: trading to the price it is at reverts (V3's SPL).
        if abs(gap) <= fee + self.settings.arbitrage_min_gap + _AT_TARGET:
            return [], state
        target = state.price * math.exp(math.copysign(fee, gap) - gap)
        return evm.swap_to_price(self.deployment, state, self._arbitrageur, target)

    def _usd_value(self, symbol: str, raw: int) -> float:
        token = self.deployment.tokens[symbol]
        return raw / 10**token.decimals * self.prices.usd[symbol]

    def _swap(
        self, state: PoolState, swapped: dict[str, int], large: bool = False
    ) -> tuple[list[Tx], PoolState]:
        """A trader's swap; ``large``: of the size distribution's 99th percentile. The trader
        drawn, if it has ``swapped`` the pool in this block already, gives way to the next in
        line who has not, or when all have, to the one who swapped longest ago (no draw more:
        the market's path stays as it was); its place joins ``swapped``."""
        pool = state.pool
        fair = self.prices.usd[pool.token0] / self.prices.usd[pool.token1]
        if self.settings.price_discovery == "lean" and self.rng.random() < _LEANING_SHARE:
            zero_for_one = evm.human_price(self.deployment, state) > fair  # token0 too dear
        else:
            zero_for_one = bool(self.rng.random() < 0.5)
        symbol_in = pool.token0 if zero_for_one else pool.token1
        reserve_in = state.reserve0 if zero_for_one else state.reserve1
        z = 2.33 if large else self.rng.standard_normal()
        spread = self.settings.trade_usd_sigma
        if z < 0 and self.settings.trade_usd_sigma_low is not None:
            spread = self.settings.trade_usd_sigma_low
        usd = self.settings.trade_usd_median * math.exp(spread * z)
        usd = min(usd, _MAX_TRADE_SHARE * self._usd_value(symbol_in, reserve_in))
        amount_in = evm.units(self.deployment.tokens[symbol_in], usd / self.prices.usd[symbol_in])
        if amount_in <= 0:
            return [], state
        drawn = str(self.rng.choice(self._traders, p=self._trader_weights))
        trader = self._unused_trader(drawn, swapped)
        swapped[trader] = max(swapped.values(), default=-1) + 1
        recipient = None
        if self.settings.router_share > 0 and self.rng.random() < self.settings.router_share:
            recipient = self._router
        return evm.swap_exact_in(self.deployment, state, trader, zero_for_one, amount_in, recipient)

    def _unused_trader(self, drawn: str, swapped: dict[str, int]) -> str:
        """``drawn``, or the next trader after it (in turn) not in ``swapped``, or when every
        trader is, the one whose swap came first: repeats as far apart as the traders are many."""
        if drawn not in swapped:
            return drawn
        start = self._traders.index(drawn)
        for step in range(1, len(self._traders)):
            candidate = self._traders[(start + step) % len(self._traders)]
            if candidate not in swapped:
                return candidate
        return min(swapped, key=swapped.__getitem__)
