"""The market's liquidity providers: now and then one adds a position or takes part of one out.

Two kinds of market, chosen by the simulator settings:

- the early simulator's (``concentrated_ratio`` 0, ``position_width_ticks`` unset): providers
  add small positions 1.2x to 3x wide and remove parts of theirs at random; nearly all of a
  pool's liquidity is the deployment's wide positions;
- a concentrated market, as real V3 pools are: providers keep narrow positions around the
  price (log-normal widths) worth ``concentrated_ratio`` times the deployment's wide ones,
  add and take out a few tenths of a percent of the pool at a time (a move is a removal with
  chance ``lp_removal_share``), move a position back around the price once the price has
  left it (a Burn, then a Mint), and place range orders one tick spacing wide beside the
  price.

Positions at least ``_WIDE_TICKS`` wide are the deployment's and never counted as the
concentrated liquidity, so a simulator started again on the same chain tops it up instead of
adding it twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from infra.local import evm
from infra.local.deployment import LocalDeployment, PoolInfo
from infra.local.evm import PoolState, Rpc, Tx, V3Position
from infra.local.settings import SimulatorSettings

_LP_REMOVE_FRACTION = (0.3, 1.0)
# The early simulator's ranges: price / r .. price * r.
_LP_RANGES = (1.2, 1.5, 2.0, 3.0)
# Concentrated liquidity is placed in this many positions a pool.
_CONCENTRATED_POSITIONS = 4
# The deployment's positions are 1.5x to 4x ranges, more than 8,000 ticks wide.
_WIDE_TICKS = 8000
# A position worth less than this is dust: it is removed, not moved.
_DUST_USD = 10.0
_LOG_TICK = math.log(1.0001)

# A just-in-time position holds this many times the pool's in-range liquidity.
_JIT_MULTIPLE = (30.0, 85.0)

# (symbol, raw amount) -> USD at the market's fair prices.
UsdValue = Callable[[str, int], float]


class LiquidityProviders:
    """The providers of the local pools, drawing from the market's random generator.

    Args:
        settings: the simulator's settings.
        deployment: the local deployment (pools, tokens, the providers' accounts).
        rng: the market's generator, so one seed fixes the whole market.
        usd_value: a token amount's value at the market's fair prices.
    """

    def __init__(
        self,
        settings: SimulatorSettings,
        deployment: LocalDeployment,
        rng: np.random.Generator,
        usd_value: UsdValue,
    ) -> None:
        self.settings = settings
        self.deployment = deployment
        self.rng = rng
        self.usd_value = usd_value
        self.accounts = deployment.accounts.liquidity_providers

    @property
    def concentrated(self) -> bool:
        s = self.settings
        return s.concentrated_ratio > 0 or s.position_width_ticks is not None

    def _pool_usd(self, state: PoolState) -> float:
        """The pool's value at fair prices (virtual reserves for V3)."""
        pool = state.pool
        return self.usd_value(pool.token0, state.reserve0) + self.usd_value(
            pool.token1, state.reserve1
        )

    # --- concentrated liquidity --------------------------------------------------------------

    def top_up(self, rpc: Rpc, states: dict[str, PoolState]) -> list[Tx]:
        """Mints that bring each V3 pool's narrow in-range liquidity up to
        ``concentrated_ratio`` times its wide positions, when it holds less than half of that
        (pools without a state in ``states`` are left alone)."""
        if self.settings.concentrated_ratio <= 0:
            return []
        txs: list[Tx] = []
        manager = self.deployment.periphery["v3_position_manager"]
        owners = [self.deployment.accounts.deployer, *self.accounts]
        positions = evm.v3_positions(rpc, manager, owners)
        for pool in self.deployment.pools:
            state = states.get(pool.name)
            if state is None or pool.protocol != "v3" or state.reserve0 == 0:
                continue
            in_pool = evm.positions_in(self.deployment, pool, positions)
            wide = sum(
                self._position_usd(p, state)
                for p in in_pool
                if p.tick_upper - p.tick_lower >= _WIDE_TICKS
            )
            target = self.settings.concentrated_ratio * wide
            held = sum(
                self._position_usd(p, state)
                for p in self._narrow(pool, in_pool)
                if p.tick_lower <= state.tick < p.tick_upper and p.owner in self.accounts
            )
            if held >= target / 2:
                continue
            for i in range(_CONCENTRATED_POSITIONS):
                provider = self.accounts[i % len(self.accounts)]
                usd = (target - held) / _CONCENTRATED_POSITIONS
                txs.append(self._mint_around(state, provider, usd))
        return txs

    def change(self, rpc: Rpc, state: PoolState) -> list[Tx]:
        """One provider's move in ``state.pool``: an add, a removal or a re-centring."""
        pool = state.pool
        provider = str(self.rng.choice(self.accounts))
        if pool.protocol != "v3":
            return self._v2_change(rpc, state, provider)
        if not self.concentrated:
            positions = evm.positions_in(
                self.deployment,
                pool,
                evm.v3_positions(rpc, self.deployment.periphery["v3_position_manager"], [provider]),
            )
            if positions and self.rng.random() < self.settings.lp_removal_share:
                return [self._remove_part(positions)]
            return [self._mint_around(state, provider)]
        narrow = self._narrow(pool, self._positions(rpc))
        outside = [p for p in narrow if not p.tick_lower <= state.tick < p.tick_upper]
        if outside and self.settings.concentrated_ratio > 0:
            # The price has left this position: its provider moves it back around the price.
            position = outside[int(self.rng.integers(len(outside)))]
            usd = self._position_usd(position, state)
            remove = evm.v3_remove(self.deployment, position, position.liquidity)
            if usd < _DUST_USD:  # what partial removals left: nothing to move
                return [remove]
            return [remove, self._mint_around(state, position.owner, usd)]
        if narrow and self.rng.random() < self.settings.lp_removal_share:
            # A removal the size of an add: a real pool's liquidity is many providers', and
            # its worst hour loses a fraction of a percent of it (bench/calibration.py).
            return [self._remove_worth(narrow, state, self._tvl(rpc, pool))]
        # A V3 pool's virtual reserves grow with its concentrated liquidity: adds are sized
        # on the tokens it really holds, or each add would make the next one bigger.
        usd = self._tvl(rpc, pool) * self._change_share()
        if self.rng.random() < self.settings.range_order_share:
            return [self._range_order(state, provider, usd)]
        return [self._mint_around(state, provider, usd)]

    def just_in_time(self, rpc: Rpc, state: PoolState, swap: list[Tx]) -> list[Tx]:
        """``swap`` wrapped in a just-in-time bundle: a searcher's Mint of many times the
        in-range liquidity in the tick spacing around the price, the swap, the searcher's
        removal. The bundle must come first in its block: the position's token id is read
        from a dry run of the mint at the latest block."""
        pool = state.pool
        assert pool.fee is not None
        spacing = evm.TICK_SPACING[pool.fee]
        lower = state.tick // spacing * spacing
        upper = lower + spacing
        liquidity = self.rng.uniform(*_JIT_MULTIPLE) * state.liquidity
        # 1 % over what the liquidity needs: the manager takes what the range takes.
        amount0, amount1 = (
            int(a * 1.01) + 1 for a in _position_amounts(liquidity, lower, upper, state.price)
        )
        searcher = self.accounts[-1]
        mint = evm.v3_mint(self.deployment, pool, searcher, lower, upper, amount0, amount1)
        dry_run = rpc.call(
            "eth_call",
            {"from": searcher, "to": mint.to, "data": mint.data, "gas": hex(mint.gas)},
            "latest",
        )
        token_id, minted = evm.decode(["uint256", "uint128"], dry_run[:130])
        token0, token1 = (self.deployment.tokens[s].address for s in (pool.token0, pool.token1))
        position = V3Position(token_id, searcher, token0, token1, pool.fee, lower, upper, minted)
        return [mint, *swap, evm.v3_remove(self.deployment, position, minted)]

    # --- building blocks ---------------------------------------------------------------------

    def _positions(self, rpc: Rpc) -> list[V3Position]:
        manager = self.deployment.periphery["v3_position_manager"]
        return evm.v3_positions(rpc, manager, self.accounts)

    def _narrow(self, pool: PoolInfo, positions: list[V3Position]) -> list[V3Position]:
        return [
            p
            for p in evm.positions_in(self.deployment, pool, positions)
            if p.tick_upper - p.tick_lower < _WIDE_TICKS
        ]

    def _change_share(self) -> float:
        """A provider's add or removal, as a share of the pool's value."""
        return self.rng.uniform(*self.settings.lp_change_share)

    def _add_usd(self, state: PoolState) -> float:
        return self._pool_usd(state) * self._change_share()

    def _tvl(self, rpc: Rpc, pool: PoolInfo) -> float:
        """What the pool holds (its token balances), in USD at fair prices."""
        symbols = (pool.token0, pool.token1)
        balances = evm.eth_calls(
            rpc,
            [
                (
                    self.deployment.tokens[s].address,
                    evm.encode_call("balanceOf(address)", pool.address),
                )
                for s in symbols
            ],
        )
        return sum(
            self.usd_value(s, evm.decode(["uint256"], raw)[0])
            for s, raw in zip(symbols, balances, strict=True)
        )

    def _remove_part(self, positions: list[V3Position]) -> Tx:
        position = positions[int(self.rng.integers(len(positions)))]
        fraction = self.rng.uniform(*_LP_REMOVE_FRACTION)
        return evm.v3_remove(self.deployment, position, int(position.liquidity * fraction))

    def _remove_worth(self, positions: list[V3Position], state: PoolState, tvl: float) -> Tx:
        """An add's worth of the pool (``tvl``) out of one of ``positions`` (all of it, if it
        holds less). Draws as many numbers, in the same order, as a removal of a part of a
        position did, so that the rest of the market's random path stays as it was."""
        position = positions[int(self.rng.integers(len(positions)))]
        usd = tvl * self._change_share()
        held = self._position_usd(position, state)
        if held <= usd or held <= _DUST_USD:
            # Exactly all of it: a float product can round above the position's liquidity.
            return evm.v3_remove(self.deployment, position, position.liquidity)
        return evm.v3_remove(self.deployment, position, int(position.liquidity * usd / held))

    def _half_width_ticks(self) -> float:
        if self.settings.position_width_ticks is None:
            return math.log(float(self.rng.choice(_LP_RANGES))) / _LOG_TICK
        median, sigma = self.settings.position_width_ticks
        return median * math.exp(sigma * self.rng.standard_normal()) / 2

    def _mint_around(self, state: PoolState, provider: str, usd: float | None = None) -> Tx:
        """A position of about ``usd`` (half in each token; default a small add) centred on
        the price."""
        pool = state.pool
        assert pool.fee is not None
        spacing = evm.TICK_SPACING[pool.fee]
        half = self._half_width_ticks()
        if usd is None:
            usd = self._add_usd(state)
        lower = evm.aligned_tick(state.tick - half, spacing)
        upper = max(evm.aligned_tick(state.tick + half, spacing), lower + spacing)
        amount0, amount1 = (self._units(s, usd / 2) for s in (pool.token0, pool.token1))
        return evm.v3_mint(self.deployment, pool, provider, lower, upper, amount0, amount1)

    def _range_order(self, state: PoolState, provider: str, usd: float) -> Tx:
        """A one-spacing position just above the price (all token0: a sell order for it) or
        just below (all token1). Both tokens are offered: if the block's earlier trades have
        moved the price into the range, the position takes some of each."""
        pool = state.pool
        assert pool.fee is not None
        spacing = evm.TICK_SPACING[pool.fee]
        floor = state.tick // spacing * spacing
        lower = floor + spacing if self.rng.random() < 0.5 else floor - spacing
        amount0, amount1 = (self._units(s, usd) for s in (pool.token0, pool.token1))
        return evm.v3_mint(
            self.deployment, pool, provider, lower, lower + spacing, amount0, amount1
        )

    def _position_usd(self, position: V3Position, state: PoolState) -> float:
        """What a V3 position holds at the pool's current price, in USD at fair prices."""
        amount0, amount1 = _position_amounts(
            position.liquidity, position.tick_lower, position.tick_upper, state.price
        )
        pool = state.pool
        return self.usd_value(pool.token0, int(amount0)) + self.usd_value(pool.token1, int(amount1))

    def _units(self, symbol: str, usd: float) -> int:
        one = self.usd_value(symbol, 10 ** self.deployment.tokens[symbol].decimals)
        return evm.units(self.deployment.tokens[symbol], usd / one)

    def _v2_change(self, rpc: Rpc, state: PoolState, provider: str) -> list[Tx]:
        pool = state.pool
        (balance,) = evm.v2_balances(rpc, pool.address, [provider])
        if balance and self.rng.random() < self.settings.lp_removal_share:
            return evm.v2_remove(
                pool, provider, int(balance * self.rng.uniform(*_LP_REMOVE_FRACTION))
            )
        half_usd = self._pool_usd(state) * self._change_share() / 2
        amount0 = self._units(pool.token0, half_usd)
        # At the pair's own ratio: anything more would be donated to the other providers.
        amount1 = amount0 * state.reserve1 // state.reserve0
        return evm.v2_add(self.deployment, pool, provider, amount0, amount1)


def _position_amounts(
    liquidity: float, lower: int, upper: int, price: float
) -> tuple[float, float]:
    """Raw token amounts of ``liquidity`` over ticks [lower, upper) at the raw ``price``."""
    low, high = (1.0001 ** (tick / 2) for tick in (lower, upper))
    root = min(max(math.sqrt(price), low), high)
    return liquidity * (1 / root - 1 / high), liquidity * (root - low)
