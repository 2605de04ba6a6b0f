"""Incident injection: the abnormal behaviour dexwatch must catch, with its ground truth.

Each kind is a short sequence of blocks, each built from the pool's state when it is mined:

- liquidity-drain: the team (the deployer, which holds most of every pool's liquidity) takes
  70% of its position out over three blocks.
- slow-drain: the team takes half of its position out in 120 equal parts, one every 15 s:
  30 minutes in which no one-minute window removes more than an ordinary provider's exit.
- rug-pull: an adversary pumps the base token about 20% over two blocks, then the team
  removes all of its liquidity.
- price-manipulation: one swap moves the price 12%, the next block swaps it back.
- wash-trading: for 15 blocks the two colluding adversaries trade the same amount back and
  forth, 20 times the pool's normal volume for that time.

Blocks are mined with wall-clock timestamps, ``simulator.block_interval_s`` apart (a slow
drain's, 15 s apart), so the injector runs beside the live simulator without pushing the chain
clock ahead. Into a history run (``history=True``) they are mined at once, stamped that far
apart after the latest block; ``between`` may mine the market's normal trading in the gaps of
an incident that takes longer than a few blocks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from dexwatch.core.schemas.labels import INCIDENT_KINDS, IncidentLabel
from infra.local import evm
from infra.local.deployment import LocalDeployment, PoolInfo
from infra.local.evm import PoolState, Rpc, Transactor, Tx
from infra.local.settings import LocalSettings

log = logging.getLogger("dexwatch.local.incidents")

_DRAIN_SHARE = 0.7
_DRAIN_BLOCKS = 3
_SLOW_DRAIN_SHARE = 0.5
_SLOW_DRAIN_PARTS = 120
_SLOW_DRAIN_EVERY_S = 15.0
_PUMP_STEP = 1.1  # price factor per pump block
_PUMP_BLOCKS = 2
_MANIPULATION_MOVE = 1.12
_WASH_BLOCKS = 15
_WASH_VOLUME_MULTIPLE = 20
_WASH_SWAPS_PER_BLOCK = 4  # alternating buy and sell: the price ends where it started

# A step builds one block's transactions from the pool's state just before it, and may
# describe what it did for the label.
_Step = Callable[[PoolState], list[Tx]]


def inject(
    settings: LocalSettings,
    deployment: LocalDeployment,
    kind: str,
    pool_name: str,
    history: bool = False,
    between: Callable[[float], object] | None = None,
) -> IncidentLabel:
    """Inject an incident of ``kind`` into the pool and return its ground-truth label.

    Args:
        history: stamp its blocks in chain time instead of waiting for the wall clock.
        between: in history, called with the seconds of chain time to fill before each of
            an incident's blocks that comes more than a block after the one before (a slow
            drain's), to mine the market's normal trading there (``generate_history``).
    """
    if kind not in INCIDENT_KINDS:
        raise ValueError(f"unknown incident kind {kind!r}; choose one of {INCIDENT_KINDS}")
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
        between: Callable[[float], object] | None = None,
    ) -> None:
        self.settings = settings
        self.history = history
        self.between = between
        self.deployment = deployment
        self.rpc = rpc
        self.pool = pool
        self.team = deployment.accounts.deployer
        self.adversaries = deployment.accounts.adversaries

    def run(self, kind: str) -> IncidentLabel:
        before = self._state()
        steps, describe, every_s = {
            "liquidity-drain": self._drain,
            "slow-drain": self._slow_drain,
            "rug-pull": self._rug_pull,
            "price-manipulation": self._price_manipulation,
            "wash-trading": self._wash_trading,
        }[kind](before)
        transactor = Transactor(self.rpc)
        numbers: set[int] = set()
        interval = self.settings.simulator.block_interval_s
        every = every_s or interval
        for index, step in enumerate(steps):
            timestamp = None
            if self.history:
                if index and self.between is not None and every > interval:
                    self.between(every - interval)
                timestamp = evm.latest_block(self.rpc)[1] + max(1, round(interval))
            elif index:
                time.sleep(every)
            receipts = transactor.execute(step(self._state()), timestamp=timestamp)
            numbers.update(int(receipt["blockNumber"], 16) for receipt in receipts)
            if len(steps) > 10 and (index + 1) % 20 == 0:
                log.info("%s of %s: %d of %d blocks", kind, self.pool.name, index + 1, len(steps))
        first, last = min(numbers), max(numbers)
        first_ts, last_ts = (self._timestamp(n) for n in (first, last))
        details = describe(before, self._state())
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

    def _state(self) -> PoolState:
        return evm.read_pools(self.rpc, [self.pool])[self.pool.name]

    def _timestamp(self, number: int) -> int:
        block = self.rpc.call("eth_getBlockByNumber", hex(number), False)
        return int(block["timestamp"], 16)

    # --- kinds: each returns its steps, how to describe the outcome, and the seconds between
    # its blocks (None: a block interval) ------------------------------------------------

    def _drain(self, before: PoolState):
        pieces = self._team_removals(_DRAIN_SHARE, _DRAIN_BLOCKS)
        return pieces, self._removed_share, None

    def _slow_drain(self, before: PoolState):
        pieces = self._team_removals(_SLOW_DRAIN_SHARE, _SLOW_DRAIN_PARTS)

        def describe(start: PoolState, end: PoolState) -> str:
            minutes = _SLOW_DRAIN_PARTS * _SLOW_DRAIN_EVERY_S / 60
            return f"{self._removed_share(start, end)} over {minutes:.0f} minutes"

        return pieces, describe, _SLOW_DRAIN_EVERY_S

    def _rug_pull(self, before: PoolState):
        pump_price = before.price
        steps: list[_Step] = []
        for _ in range(_PUMP_BLOCKS):
            pump_price *= _PUMP_STEP if self._base_is_token0 else 1 / _PUMP_STEP
            steps.append(self._move_to(pump_price, self.adversaries[0]))
        steps += self._team_removals(1.0, 1)

        def describe(start: PoolState, end: PoolState) -> str:
            ratio = pump_price / start.price
            pump = (ratio if self._base_is_token0 else 1 / ratio) - 1
            return f"pumped the base token {pump:.0%}, then {self._removed_share(start, end)}"

        return steps, describe, None

    def _price_manipulation(self, before: PoolState):
        moved = before.price * _MANIPULATION_MOVE
        steps = [
            self._move_to(moved, self.adversaries[0]),
            self._move_to(before.price, self.adversaries[0]),
        ]

        def describe(start: PoolState, end: PoolState) -> str:
            return (
                f"one swap moved the price {_MANIPULATION_MOVE - 1:.0%}, the next block moved it "
                f"back (now {end.price / start.price - 1:+.1%} from the start)"
            )

        return steps, describe, None

    def _wash_trading(self, before: PoolState):
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

        return [step] * _WASH_BLOCKS, describe, None

    # --- building blocks --------------------------------------------------------------------

    @property
    def _base_is_token0(self) -> bool:
        """The base token is the one that is not USDC (or WETH, in pairs without USDC)."""
        quote = "USDC" if "USDC" in (self.pool.token0, self.pool.token1) else "WETH"
        return self.pool.token1 == quote

    def _usd_price(self, symbol: str) -> float:
        prices = evm.usd_prices(self.deployment, evm.read_pools(self.rpc, self.deployment.pools))
        return prices[symbol]

    def _move_to(self, price: float, trader: str) -> _Step:
        return lambda state: evm.swap_to_price(self.deployment, state, trader, price)[0]

    def _team_removals(self, share: float, blocks: int) -> list[_Step]:
        """Steps that take ``share`` of the team's liquidity out in ``blocks`` equal parts
        (the last step takes everything when ``share`` is 1)."""
        if self.pool.protocol == "v3":
            team_liquidity = self._team_v3_position().liquidity
        else:
            (team_liquidity,) = evm.v2_balances(self.rpc, self.pool.address, [self.team])
        if not team_liquidity:
            raise evm.ChainError(f"the team has no liquidity left in {self.pool.name}")
        part = int(team_liquidity * share) // blocks

        def step(last: bool) -> _Step:
            def remove(state: PoolState) -> list[Tx]:
                if self.pool.protocol == "v3":
                    position = self._team_v3_position()
                    amount = position.liquidity if last and share >= 1 else part
                    return [evm.v3_remove(self.deployment, position, amount)]
                (balance,) = evm.v2_balances(self.rpc, self.pool.address, [self.team])
                amount = balance if last and share >= 1 else part
                return evm.v2_remove(self.pool, self.team, amount)

            return remove

        return [step(i == blocks - 1) for i in range(blocks)]

    def _team_v3_position(self) -> evm.V3Position:
        manager = self.deployment.periphery["v3_position_manager"]
        positions = evm.positions_in(
            self.deployment, self.pool, evm.v3_positions(self.rpc, manager, [self.team])
        )
        if not positions:
            raise evm.ChainError(f"the team has no liquidity left in {self.pool.name}")
        return max(positions, key=lambda p: p.liquidity)

    @staticmethod
    def _removed_share(start: PoolState, end: PoolState) -> str:
        return f"removed {1 - end.liquidity / start.liquidity:.0%} of the pool's liquidity"
