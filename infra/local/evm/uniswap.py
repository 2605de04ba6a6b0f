"""Transaction builders for Uniswap V3 and V2 (SushiSwap) pools: swaps, mints, removals."""

from __future__ import annotations

import math

from infra.local.deployment import LocalDeployment, PoolInfo
from infra.local.evm.maths import (
    _MAX_SQRT_RATIO,
    _MIN_SQRT_RATIO,
    FAR_DEADLINE,
    UINT128_MAX,
    sqrt_price_x96,
    v2_amount_out,
)
from infra.local.evm.pools import PoolState, V3Position
from infra.local.evm.rpc import encode_call
from infra.local.evm.transactions import (
    GAS_V2_MINT_BURN,
    GAS_V2_SWAP,
    GAS_V3_MINT,
    GAS_V3_REMOVE,
    GAS_V3_SWAP,
    Tx,
    transfer,
)


def v3_swap(
    deployment: LocalDeployment,
    pool: PoolInfo,
    trader: str,
    zero_for_one: bool,
    amount_in: int,
    sqrt_price_limit_x96: int = 0,
    recipient: str | None = None,
) -> Tx:
    """Exact-input swap through the SwapRouter; it stops early at ``sqrt_price_limit_x96``.
    The output goes to ``recipient`` (default: the trader)."""
    token_in, token_out = (deployment.tokens[s].address for s in (pool.token0, pool.token1))
    if not zero_for_one:
        token_in, token_out = token_out, token_in
    if not sqrt_price_limit_x96:
        sqrt_price_limit_x96 = _MIN_SQRT_RATIO + 1 if zero_for_one else _MAX_SQRT_RATIO - 1
    params = (
        token_in,
        token_out,
        pool.fee,
        recipient or trader,
        FAR_DEADLINE,
        amount_in,
        0,
        sqrt_price_limit_x96,
    )
    data = encode_call(
        "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))", params
    )
    return Tx(trader, deployment.periphery["v3_swap_router"], data, GAS_V3_SWAP)


def v3_mint(
    deployment: LocalDeployment,
    pool: PoolInfo,
    owner: str,
    tick_lower: int,
    tick_upper: int,
    amount0: int,
    amount1: int,
) -> Tx:
    """A new position; the manager takes as much of the two amounts as the range needs."""
    token0, token1 = (deployment.tokens[s].address for s in (pool.token0, pool.token1))
    params = (
        token0,
        token1,
        pool.fee,
        tick_lower,
        tick_upper,
        amount0,
        amount1,
        0,
        0,
        owner,
        FAR_DEADLINE,
    )
    data = encode_call(
        "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))",
        params,
    )
    return Tx(owner, deployment.periphery["v3_position_manager"], data, GAS_V3_MINT)


def v3_remove(deployment: LocalDeployment, position: V3Position, liquidity: int) -> Tx:
    """Decrease a position and collect what it owes (pool Burn + Collect), in one transaction.

    A position emptied completely is burnt too, so position lists stay short.
    """
    calls = [
        encode_call(
            "decreaseLiquidity((uint256,uint128,uint256,uint256,uint256))",
            (position.token_id, liquidity, 0, 0, FAR_DEADLINE),
        ),
        encode_call(
            "collect((uint256,address,uint128,uint128))",
            (position.token_id, position.owner, UINT128_MAX, UINT128_MAX),
        ),
    ]
    if liquidity >= position.liquidity:
        calls.append(encode_call("burn(uint256)", position.token_id))
    data = encode_call("multicall(bytes[])", [bytes.fromhex(c[2:]) for c in calls])
    return Tx(position.owner, deployment.periphery["v3_position_manager"], data, GAS_V3_REMOVE)


def v2_swap(
    deployment: LocalDeployment,
    pool: PoolInfo,
    trader: str,
    zero_for_one: bool,
    amount_in: int,
    amount_out: int,
    recipient: str | None = None,
) -> list[Tx]:
    """Pay the pair, then take ``amount_out`` to ``recipient`` (default: the trader); the pair
    checks its constant product."""
    symbol_in = pool.token0 if zero_for_one else pool.token1
    outs = (0, amount_out) if zero_for_one else (amount_out, 0)
    return [
        transfer(deployment.tokens[symbol_in].address, trader, pool.address, amount_in),
        Tx(
            trader,
            pool.address,
            encode_call("swap(uint256,uint256,address,bytes)", *outs, recipient or trader, b""),
            GAS_V2_SWAP,
        ),
    ]


def v2_add(
    deployment: LocalDeployment, pool: PoolInfo, owner: str, amount0: int, amount1: int
) -> list[Tx]:
    token0, token1 = (deployment.tokens[s].address for s in (pool.token0, pool.token1))
    return [
        transfer(token0, owner, pool.address, amount0),
        transfer(token1, owner, pool.address, amount1),
        Tx(owner, pool.address, encode_call("mint(address)", owner), GAS_V2_MINT_BURN),
    ]


def v2_remove(pool: PoolInfo, owner: str, lp_amount: int) -> list[Tx]:
    return [
        transfer(pool.address, owner, pool.address, lp_amount),
        Tx(owner, pool.address, encode_call("burn(address)", owner), GAS_V2_MINT_BURN),
    ]


def swap_exact_in(
    deployment: LocalDeployment,
    state: PoolState,
    trader: str,
    zero_for_one: bool,
    amount_in: int,
    recipient: str | None = None,
) -> tuple[list[Tx], PoolState]:
    """A swap of ``amount_in`` (its output to ``recipient``, default the trader) and the pool
    state after it.

    V2 pairs need the output amount up front: it is computed from the reserves (0.1% short of
    the exact figure, so rounding never reverts) and the returned state carries the new
    reserves, for the next swap of the same block. V3 pools price the swap themselves; their
    state is returned unchanged.
    """
    pool = state.pool
    if pool.protocol == "v3":
        return [v3_swap(deployment, pool, trader, zero_for_one, amount_in, 0, recipient)], state
    reserve_in, reserve_out = (
        (state.reserve0, state.reserve1) if zero_for_one else (state.reserve1, state.reserve0)
    )
    amount_out = v2_amount_out(amount_in, reserve_in, reserve_out) * 999 // 1000
    if amount_out <= 0:
        return [], state
    reserve_in, reserve_out = reserve_in + amount_in, reserve_out - amount_out
    after = (
        PoolState(pool, reserve_in, reserve_out, total_supply=state.total_supply)
        if zero_for_one
        else PoolState(pool, reserve_out, reserve_in, total_supply=state.total_supply)
    )
    txs = v2_swap(deployment, pool, trader, zero_for_one, amount_in, amount_out, recipient)
    return txs, after


def swap_to_price(
    deployment: LocalDeployment, state: PoolState, trader: str, target_price: float
) -> tuple[list[Tx], PoolState]:
    """One swap that moves the pool's raw price (token1 per token0) to ``target_price``, and
    the pool state after it (as ``swap_exact_in``)."""
    pool = state.pool
    zero_for_one = target_price < state.price  # selling token0 makes it cheaper
    if pool.protocol == "v3":
        # Exact input with a price limit: the router pays only what reaching the limit takes,
        # so the amount offered just has to be more than enough.
        offered = 20 * (state.reserve0 if zero_for_one else state.reserve1)
        limit = sqrt_price_x96(target_price)
        return [v3_swap(deployment, pool, trader, zero_for_one, offered, limit)], state
    # Constant product: the reserves at the target price keep k = x * y.
    k = state.reserve0 * state.reserve1
    target0, target1 = math.isqrt(int(k / target_price)), math.isqrt(int(k * target_price))
    needed = target0 - state.reserve0 if zero_for_one else target1 - state.reserve1
    amount_in = needed * 1000 // 997  # the pair keeps 0.3% of the input
    return swap_exact_in(deployment, state, trader, zero_for_one, amount_in)
