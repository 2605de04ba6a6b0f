"""Reads of the local pools and positions: prices, reserves, liquidity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from infra.local.deployment import LocalDeployment, PoolInfo, TokenInfo
from infra.local.evm.maths import Q96
from infra.local.evm.rpc import Rpc, decode, encode_call, eth_calls


@dataclass(frozen=True)
class PoolState:
    """A pool's state as reserves: real ones for V2 pairs, virtual ones (L/√P, L·√P) for V3.

    Either way the pool price (token1 per token0, raw units) is reserve1 / reserve0 and
    sqrt(reserve0 · reserve1) is its liquidity (V3: L; V2: √k).
    """

    pool: PoolInfo
    reserve0: int
    reserve1: int
    sqrt_price_x96: int = 0  # V3 only
    tick: int = 0  # V3 only
    total_supply: int = 0  # V2 only: LP tokens

    @property
    def price(self) -> float:
        return self.reserve1 / self.reserve0

    @property
    def liquidity(self) -> float:
        return math.sqrt(self.reserve0 * self.reserve1)


def read_pools(rpc: Rpc, pools: Sequence[PoolInfo], block: str = "latest") -> dict[str, PoolState]:
    """The state of ``pools`` at ``block`` (a tag or hex number), by name, in one request."""
    calls: list[tuple[str, str]] = []
    for pool in pools:
        if pool.protocol == "v3":
            calls += [
                (pool.address, encode_call("slot0()")),
                (pool.address, encode_call("liquidity()")),
            ]
        else:
            calls += [
                (pool.address, encode_call("getReserves()")),
                (pool.address, encode_call("totalSupply()")),
            ]
    results = iter(eth_calls(rpc, calls, block))
    states = {}
    for pool in pools:
        first, second = next(results), next(results)
        if pool.protocol == "v3":
            sqrt_price, tick = decode(["uint160", "int24"], first[:130])
            (liquidity,) = decode(["uint128"], second)
            states[pool.name] = PoolState(
                pool,
                reserve0=liquidity * Q96 // sqrt_price,
                reserve1=liquidity * sqrt_price // Q96,
                sqrt_price_x96=sqrt_price,
                tick=tick,
            )
        else:
            reserve0, reserve1, _ = decode(["uint112", "uint112", "uint32"], first)
            (supply,) = decode(["uint256"], second)
            states[pool.name] = PoolState(pool, reserve0, reserve1, total_supply=supply)
    return states


def human_price(deployment: LocalDeployment, state: PoolState) -> float:
    """Price of token0 in units of token1, decimals applied."""
    pool = state.pool
    decimals0, decimals1 = (deployment.tokens[s].decimals for s in (pool.token0, pool.token1))
    return state.price * 10 ** (decimals0 - decimals1)


def usd_prices(deployment: LocalDeployment, states: dict[str, PoolState]) -> dict[str, float]:
    """USD price of every token, walking the pools out from the numeraire (USDC = 1).

    Tokens no pool connects to the numeraire keep their initial price.
    """
    prices = {"USDC": 1.0}
    changed = True
    while changed:
        changed = False
        for state in states.values():
            pool = state.pool
            price = human_price(deployment, state)
            if pool.token1 in prices and pool.token0 not in prices:
                prices[pool.token0] = price * prices[pool.token1]
                changed = True
            elif pool.token0 in prices and pool.token1 not in prices:
                prices[pool.token1] = prices[pool.token0] / price
                changed = True
    for symbol, token in deployment.tokens.items():
        prices.setdefault(symbol, token.initial_usd_price)
    return prices


def units(token: TokenInfo, amount: float) -> int:
    """Raw units of ``amount`` whole tokens."""
    return int(amount * 10**token.decimals)


@dataclass(frozen=True)
class V3Position:
    token_id: int
    owner: str
    token0: str  # addresses
    token1: str
    fee: int
    tick_lower: int
    tick_upper: int
    liquidity: int


def v3_positions(rpc: Rpc, position_manager: str, owners: Sequence[str]) -> list[V3Position]:
    """Every NonfungiblePositionManager position of ``owners`` (three requests in all)."""
    counts = eth_calls(
        rpc, [(position_manager, encode_call("balanceOf(address)", o)) for o in owners]
    )
    slots = [
        (owner, index)
        for owner, count in zip(owners, counts, strict=True)
        for index in range(decode(["uint256"], count)[0])
    ]
    ids = eth_calls(
        rpc,
        [
            (position_manager, encode_call("tokenOfOwnerByIndex(address,uint256)", o, i))
            for o, i in slots
        ],
    )
    token_ids = [decode(["uint256"], raw)[0] for raw in ids]
    details = eth_calls(
        rpc, [(position_manager, encode_call("positions(uint256)", t)) for t in token_ids]
    )
    positions = []
    for (owner, _), token_id, raw in zip(slots, token_ids, details, strict=True):
        fields = decode(
            ["uint96", "address", "address", "address", "uint24", "int24", "int24", "uint128"],
            raw[: 2 + 64 * 8],
        )
        token0, token1, fee, lower, upper, liquidity = fields[2:]
        positions.append(V3Position(token_id, owner, token0, token1, fee, lower, upper, liquidity))
    return positions


def positions_in(
    deployment: LocalDeployment, pool: PoolInfo, positions: Sequence[V3Position]
) -> list[V3Position]:
    """The live (non-empty) positions among ``positions`` that belong to ``pool``."""
    token0, token1 = (deployment.tokens[s].address for s in (pool.token0, pool.token1))
    return [
        p
        for p in positions
        if (p.token0, p.token1, p.fee) == (token0, token1, pool.fee) and p.liquidity > 0
    ]


def v2_balances(rpc: Rpc, pair: str, owners: Sequence[str]) -> list[int]:
    """LP-token balances of ``owners`` in a V2 pair."""
    raw = eth_calls(rpc, [(pair, encode_call("balanceOf(address)", owner)) for owner in owners])
    return [decode(["uint256"], r)[0] for r in raw]
