"""Incident injection: the abnormal behaviour dexwatch must catch, with its ground truth.

Each kind is a short sequence of blocks, each built from the pool's state when it is mined:

- liquidity-drain: the team (the accounts the local market provides liquidity from: the
  deployer and the providers, together nearly all of every pool's liquidity) takes 70% of
  its liquidity in range out over three blocks.
- slow-drain: the team takes half of it out in 120 equal parts, one every 15 s: 30 minutes
  in which no one-minute window removes more than an ordinary provider's exit.
- quiet-pool-drain: the pool is left without a trade for 10 minutes, then the team takes 70%
  of it out in one block.
- rug-pull: an adversary pumps the base token about 20% over two blocks, then the team
  removes 97% of its liquidity.
- fresh-pool-rug: the team launches a new token and a pool of it against the named pool's
  quote token, on the same DEX; an adversary buys it up about 60% over six blocks, 15 s
  apart, and the team removes all of its liquidity about two minutes after the launch.
- price-manipulation: one swap moves the price 12%, the next block swaps it back.
- wash-trading: for 15 blocks the two colluding adversaries trade the same amount back and
  forth, 20 times the pool's normal volume for that time.
- round-trips: for 12 blocks an adversary buys the base token up 5 % and sells it back at
  once (two swaps next to each other, nobody between: a flash loan's shape), the direction
  alternating from block to block.
- sandwich: for 20 blocks an adversary trades just before a trader and back just after, in
  the same block, the trader's direction alternating from block to block so that the price
  ends near where it started (the trader's swap moves it about 1.5 %, the front-run half as
  much).

Blocks are mined with wall-clock timestamps, ``simulator.block_interval_s`` apart (a slow
drain's and a fresh pool's, 15 s apart), so the injector runs beside the live simulator
without pushing the chain clock ahead. Into a history run (``history=True``) they are mined at
once, stamped that far apart after the latest block; ``between`` may mine the market's normal
trading in the gaps of an incident that takes longer than a few blocks, and the silence before
a quiet pool's drain. Beside the live simulator, a quiet pool's drain needs a pool that has
not traded for 10 minutes (stop ``dexwatch simulate`` first), and says so otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from dexwatch.core.schemas.labels import INCIDENT_KINDS, IncidentLabel
from infra.local import evm, swap_shapes
from infra.local.deployment import LocalDeployment, PoolInfo
from infra.local.evm import PoolState, Rpc, Transactor, Tx
from infra.local.fresh_pool import launch_fresh_pool
from infra.local.market_events import MARKET_EVENT_KINDS
from infra.local.settings import LocalSettings

log = logging.getLogger("dexwatch.local.incidents")

_DRAIN_SHARE = 0.7
# A rug leaves dust: traders go on trading an emptied pool (the market's aftermath), and a
# V3 pool without liquidity in range has no price.
_RUG_SHARE = 0.97
_DRAIN_BLOCKS = 3
_SLOW_DRAIN_SHARE = 0.5
_SLOW_DRAIN_PARTS = 120
_SLOW_DRAIN_EVERY_S = 15.0
_QUIET_S = 600.0
_PUMP_STEP = 1.1  # price factor per pump block
_PUMP_BLOCKS = 2
_MANIPULATION_MOVE = 1.12
_WASH_BLOCKS = 15
_WASH_VOLUME_MULTIPLE = 20
_WASH_SWAPS_PER_BLOCK = 4  # alternating buy and sell: the price ends where it started
_ROUND_TRIP_BLOCKS = 12
_ROUND_TRIP_MOVE = 0.05  # the price moved by each trip's first swap
_SANDWICH_BLOCKS = 20
# A fresh scam pool (infra.local.fresh_pool) bought up 8 % a block.
_FRESH_PUMP_STEP = 1.08
_FRESH_PUMP_BLOCKS = 6
_FRESH_EVERY_S = 15.0

# A step builds one block's transactions from the pool's state just before it.
_Step = Callable[[PoolState], list[Tx]]
# Fills seconds of chain time with the market's normal trading, leaving the named pools silent.
Between = Callable[[float, Collection[str]], object]


@dataclass(frozen=True)
class _Plan:
    """One incident: its blocks' steps, how to describe its outcome (from the pool's state
    before and after), the seconds between its blocks (None: a block interval), and how
    long its pool must have been silent before it."""

    steps: list[_Step]
    describe: Callable[[PoolState, PoolState], str]
    every_s: float | None = None
    quiet_before_s: float = 0.0


def inject(
    settings: LocalSettings,
    deployment: LocalDeployment,
    kind: str,
    pool_name: str,
    history: bool = False,
    between: Between | None = None,
) -> IncidentLabel:
    """Inject an incident of ``kind`` into the pool and return its ground-truth label (a
    fresh-pool rug's label names the pool it launched, beside ``pool_name``).

    Args:
        history: stamp its blocks in chain time instead of waiting for the wall clock.
        between: in history, called with the seconds of chain time to fill before each of
            an incident's blocks that comes more than a block after the one before (a slow
            drain's), and with the pool to leave silent before a quiet pool's drain
            (``MarketSimulator.fill``).
    """
    if kind not in INCIDENT_KINDS or kind in MARKET_EVENT_KINDS:
        pool_kinds = [k for k in INCIDENT_KINDS if k not in MARKET_EVENT_KINDS]
        raise ValueError(f"unknown pool incident {kind!r}; choose one of {pool_kinds}")
    pool = deployment.pool(pool_name)
    rpc = Rpc(settings.local.rpc_url)
    try:
        # One block per step, its transactions in send order (automine would give each its
        # own block, and reorder the two transactions of a V2 swap across senders).
        with evm.manual_mining(rpc):
            return _Injector(settings, deployment, rpc, pool, history, between).run(kind)
    finally:
        rpc.close()


class _Injector:
    def __init__(
        self,
        settings: LocalSettings,
        deployment: LocalDeployment,
        rpc: Rpc,
        pool: PoolInfo,
        history: bool,
        between: Between | None = None,
    ) -> None:
        self.settings = settings
        self.history = history
        self.between = between
        self.deployment = deployment
        self.rpc = rpc
        self.pool = pool
        self.team = deployment.accounts.deployer
        self.adversaries = deployment.accounts.adversaries
        self.blocks: set[int] = set()

    def run(self, kind: str) -> IncidentLabel:
        plan = {
            "liquidity-drain": self._drain,
            "slow-drain": self._slow_drain,
            "quiet-pool-drain": self._quiet_pool_drain,
            "rug-pull": self._rug_pull,
            "fresh-pool-rug": self._fresh_pool_rug,
            "price-manipulation": self._price_manipulation,
            "wash-trading": self._wash_trading,
            "sandwich": self._sandwich,
            "round-trips": self._round_trips,
        }[kind]()
        if plan.quiet_before_s:
            self._wait_for_quiet(plan.quiet_before_s)
        before = self._state()
        interval = self.settings.simulator.block_interval_s
        every = plan.every_s or interval
        for index, step in enumerate(plan.steps):
            if index and self.history and self.between is not None and every > interval:
                self.between(every - interval, ())
            elif index and not self.history:
                time.sleep(every)
            self._mine(step(self._state()))
            if len(plan.steps) > 10 and (index + 1) % 20 == 0:
                log.info(
                    "%s of %s: %d of %d blocks", kind, self.pool.name, index + 1, len(plan.steps)
                )
        first, last = min(self.blocks), max(self.blocks)
        first_ts, last_ts = (self._timestamp(n) for n in (first, last))
        details = plan.describe(before, self._state())
        label = IncidentLabel(
            label_id=IncidentLabel.make_id(
                self.deployment.chain_id, self.pool.address, kind, first
            ),
            chain_id=self.deployment.chain_id,
            dex=self.pool.dex,
            pool=self.pool.address,
            kind=kind,  # type: ignore[arg-type]  # checked against INCIDENT_KINDS
            first_block=first,
            last_block=last,
            first_timestamp=datetime.fromtimestamp(first_ts, UTC),
            last_timestamp=datetime.fromtimestamp(last_ts, UTC),
            injected_at=datetime.now(UTC),
            details=details,
        )
        log.info("injected %s into %s: %s", kind, self.pool.name, details)
        return label

    def _mine(self, txs: list[Tx]) -> list[dict]:
        """Mine ``txs`` in one block of the incident (in history, a block interval after the
        latest block; else at the wall clock)."""
        timestamp = None
        if self.history:
            interval = self.settings.simulator.block_interval_s
            timestamp = evm.latest_block(self.rpc)[1] + max(1, round(interval))
        # Nonces asked afresh: the team's accounts are the market's providers, which may have
        # sent transactions of their own since the last block (``between``, the live market).
        receipts = Transactor(self.rpc).execute(txs, timestamp=timestamp)
        self.blocks.update(int(receipt["blockNumber"], 16) for receipt in receipts)
        return receipts

    def _wait_for_quiet(self, seconds: float) -> None:
        """In history, fill ``seconds`` with the market's trading in every pool but this one;
        beside the live simulator, check that the pool has been silent that long."""
        if self.history:
            if self.between is None:
                raise ValueError("a quiet pool's drain in history needs ``between``")
            self.between(seconds, (self.pool.name,))
            return
        number, now = evm.latest_block(self.rpc)
        logs = self.rpc.call(
            "eth_getLogs",
            {"address": self.pool.address, "fromBlock": hex(max(0, number - 5000)),
             "toBlock": hex(number)},
        )  # fmt: skip
        if logs:
            silent_s = now - self._timestamp(int(logs[-1]["blockNumber"], 16))
            if silent_s < seconds:
                raise ValueError(
                    f"{self.pool.name} last traded {silent_s} s ago; a quiet pool's drain "
                    f"needs it silent for {seconds:.0f} s: stop `dexwatch simulate` and wait, "
                    "or choose a quieter pool"
                )

    def _state(self) -> PoolState:
        return evm.read_pools(self.rpc, [self.pool])[self.pool.name]

    def _timestamp(self, number: int) -> int:
        return evm.block_timestamp(self.rpc, number)

    # --- kinds: each returns its plan --------------------------------------------------------

    def _drain(self) -> _Plan:
        return _Plan(self._team_removals(_DRAIN_SHARE, _DRAIN_BLOCKS), self._removed_share)

    def _slow_drain(self) -> _Plan:
        def describe(start: PoolState, end: PoolState) -> str:
            minutes = _SLOW_DRAIN_PARTS * _SLOW_DRAIN_EVERY_S / 60
            return f"{self._removed_share(start, end)} over {minutes:.0f} minutes"

        pieces = self._team_removals(_SLOW_DRAIN_SHARE, _SLOW_DRAIN_PARTS)
        return _Plan(pieces, describe, every_s=_SLOW_DRAIN_EVERY_S)

    def _quiet_pool_drain(self) -> _Plan:
        def describe(start: PoolState, end: PoolState) -> str:
            return f"after {_QUIET_S / 60:.0f} silent minutes, {self._removed_share(start, end)}"

        pieces = self._team_removals(_DRAIN_SHARE, 1)
        return _Plan(pieces, describe, quiet_before_s=_QUIET_S)

    def _rug_pull(self) -> _Plan:
        start_price = self._state().price
        steps = self._pump(start_price, _PUMP_STEP, _PUMP_BLOCKS)
        steps += self._team_removals(_RUG_SHARE, 1)
        pumped = _PUMP_STEP**_PUMP_BLOCKS - 1

        def describe(start: PoolState, end: PoolState) -> str:
            return f"pumped the base token {pumped:.0%}, then {self._removed_share(start, end)}"

        return _Plan(steps, describe)

    def _fresh_pool_rug(self) -> _Plan:
        launched = self._launch_fresh_pool()
        steps = self._pump(self._state().price, _FRESH_PUMP_STEP, _FRESH_PUMP_BLOCKS)
        steps += self._team_removals(1.0, 1)
        pumped = _FRESH_PUMP_STEP**_FRESH_PUMP_BLOCKS - 1

        def describe(start: PoolState, end: PoolState) -> str:
            return (
                f"{launched}; pumped its token {pumped:.0%} over {_FRESH_PUMP_BLOCKS} blocks, then "
                f"{self._removed_share(start, end)}"
            )

        return _Plan(steps, describe, every_s=_FRESH_EVERY_S)

    def _price_manipulation(self) -> _Plan:
        price = self._state().price
        moved = price * _MANIPULATION_MOVE
        steps = [
            self._move_to(moved, self.adversaries[0]),
            self._move_to(price, self.adversaries[0]),
        ]

        def describe(start: PoolState, end: PoolState) -> str:
            return (
                f"one swap moved the price {_MANIPULATION_MOVE - 1:.0%}, the next block moved it "
                f"back (now {end.price / start.price - 1:+.1%} from the start)"
            )

        return _Plan(steps, describe)

    def _wash_trading(self) -> _Plan:
        simulator = self.settings.simulator
        mean_trade = simulator.trade_usd_median * math.exp(simulator.trade_usd_sigma**2 / 2)
        normal_usd_per_s = simulator.swaps_per_minute / 60 * mean_trade
        # Block timestamps are whole seconds: a block spans at least one second of chain time.
        block_s = max(simulator.block_interval_s, 1.0)
        per_swap_usd = _WASH_VOLUME_MULTIPLE * normal_usd_per_s * block_s / _WASH_SWAPS_PER_BLOCK
        symbol = self.pool.token0
        token = self.deployment.tokens[symbol]
        usd_price = self._usd_price(symbol)
        amount0 = evm.units(token, per_swap_usd / usd_price)
        buyer, seller = self.adversaries[:2]

        def step(state: PoolState) -> list[Tx]:
            txs: list[Tx] = []
            for _ in range(_WASH_SWAPS_PER_BLOCK // 2):
                # The buyer pays token1 for about amount0, the seller sells amount0 back.
                amount1 = int(amount0 * state.price * 1.003)
                buy, state = evm.swap_exact_in(self.deployment, state, buyer, False, amount1)
                sell, state = evm.swap_exact_in(self.deployment, state, seller, True, amount0)
                txs += buy + sell
            return txs

        def describe(start: PoolState, end: PoolState) -> str:
            total = per_swap_usd * _WASH_SWAPS_PER_BLOCK * _WASH_BLOCKS
            return (
                f"two addresses traded ${total:,.0f} back and forth over {_WASH_BLOCKS} blocks, "
                f"{_WASH_VOLUME_MULTIPLE}x the pool's normal volume"
            )

        return _Plan([step] * _WASH_BLOCKS, describe)

    def _sandwich(self) -> _Plan:
        attacker, victim = self.adversaries[0], self.deployment.accounts.traders[0]
        fee = (self.pool.fee or 3000) / 1e6
        taken: list[float] = []  # per block, in token1

        def step(state: PoolState) -> list[Tx]:
            # The victim buys token0 in every other block, sells it in the rest: the price
            # ends near where it started.
            txs, gained = swap_shapes.sandwich(
                self.deployment, state, attacker, victim, fee, len(taken) % 2 == 0
            )
            taken.append(gained)
            return txs

        def describe(start: PoolState, end: PoolState) -> str:
            return (
                f"{attacker} sandwiched {victim}'s swaps in {_SANDWICH_BLOCKS} blocks, taking "
                f"about {sum(taken) / 1e18:.6g} {self.pool.token1} (estimated from the reserves)"
            )

        return _Plan([step] * _SANDWICH_BLOCKS, describe)

    def _round_trips(self) -> _Plan:
        trader = self.adversaries[0]
        fee = (self.pool.fee or 3000) / 1e6
        costs: list[float] = []  # per block, in token1

        def step(state: PoolState) -> list[Tx]:
            txs, cost = swap_shapes.round_trip(
                self.deployment, state, trader, fee, len(costs) % 2 == 0, _ROUND_TRIP_MOVE
            )
            costs.append(cost)
            return txs

        def describe(start: PoolState, end: PoolState) -> str:
            return (
                f"{trader} moved the price {_ROUND_TRIP_MOVE:.0%} and back in each of "
                f"{_ROUND_TRIP_BLOCKS} blocks, paying about {sum(costs) / 1e18:.6g} "
                f"{self.pool.token1} in fees and impact (estimated from the reserves)"
            )

        return _Plan([step] * _ROUND_TRIP_BLOCKS, describe)

    # --- building blocks --------------------------------------------------------------------

    @property
    def _base_is_token0(self) -> bool:
        """The base token is the one that is not USDC (or WETH, in pairs without USDC)."""
        quote = "USDC" if "USDC" in (self.pool.token0, self.pool.token1) else "WETH"
        return self.pool.token1 == quote

    def _usd_price(self, symbol: str) -> float:
        prices = evm.usd_prices(self.deployment, evm.read_pools(self.rpc, self.deployment.pools))
        return prices[symbol]

    def _pump(self, price: float, factor: float, blocks: int) -> list[_Step]:
        """Steps in which an adversary buys the base token up by ``factor`` a block."""
        steps = []
        for _ in range(blocks):
            price *= factor if self._base_is_token0 else 1 / factor
            steps.append(self._move_to(price, self.adversaries[0]))
        return steps

    def _launch_fresh_pool(self) -> str:
        """Launch a fresh pool against this pool's quote token (``fresh_pool``); this injector
        works on the new pool from then on. Returns what it launched, in words."""
        quote = "USDC" if "USDC" in (self.pool.token0, self.pool.token1) else "WETH"
        self.deployment, self.pool, launched = launch_fresh_pool(
            self.settings.local.node_modules, self.deployment, self.rpc, self.pool, self.team,
            self._usd_price(quote), self._mine,
        )  # fmt: skip
        # The incident starts with the pump, as a rug pull's does: a launch is not abnormal.
        self.blocks.clear()
        return launched

    def _move_to(self, price: float, trader: str) -> _Step:
        return lambda state: evm.swap_to_price(self.deployment, state, trader, price)[0]

    def _team_removals(self, share: float, blocks: int) -> list[_Step]:
        """Steps that take ``share`` of the liquidity the team holds out in ``blocks`` equal
        parts: of each V3 position in range when the incident starts (all of them when
        ``share`` is 1, the last step taking everything), or of each holder's LP tokens.

        The team holds the deployment's positions and the market's providers' (the
        simulator's accounts: nearly all of a pool's liquidity, however concentrated), so
        that a drain of a share of it is that share of the pool's in-range liquidity."""
        holders = [self.team, *self.deployment.accounts.liquidity_providers]
        if self.pool.protocol == "v3":
            tick = self._state().tick
            parts: dict = {
                p.token_id: int(p.liquidity * share) // blocks
                for p in self._held_v3_positions(holders)
                if share >= 1 or p.tick_lower <= tick < p.tick_upper
            }
        else:
            balances = evm.v2_balances(self.rpc, self.pool.address, holders)
            parts = {o: int(b * share) // blocks for o, b in zip(holders, balances, strict=True)}
        if not any(parts.values()):
            raise evm.ChainError(f"the team has no liquidity left in {self.pool.name}")

        def step(last: bool) -> _Step:
            def remove(state: PoolState) -> list[Tx]:
                everything = last and share >= 1
                txs: list[Tx] = []
                if self.pool.protocol == "v3":
                    # Read again: the providers may have moved theirs in the meantime.
                    for position in self._held_v3_positions(holders):
                        part = parts.get(position.token_id, 0)
                        amount = position.liquidity if everything else min(part, position.liquidity)
                        if amount:
                            txs.append(evm.v3_remove(self.deployment, position, amount))
                    return txs
                balances = evm.v2_balances(self.rpc, self.pool.address, holders)
                for owner, balance in zip(holders, balances, strict=True):
                    amount = balance if everything else min(parts[owner], balance)
                    if amount:
                        txs += evm.v2_remove(self.pool, owner, amount)
                return txs

            return remove

        return [step(i == blocks - 1) for i in range(blocks)]

    def _held_v3_positions(self, holders: list[str]) -> list[evm.V3Position]:
        manager = self.deployment.periphery["v3_position_manager"]
        return evm.positions_in(
            self.deployment, self.pool, evm.v3_positions(self.rpc, manager, holders)
        )

    @staticmethod
    def _removed_share(start: PoolState, end: PoolState) -> str:
        return f"removed {1 - end.liquidity / start.liquidity:.0%} of the pool's liquidity"
