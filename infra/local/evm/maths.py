"""Uniswap V3 tick and price maths, and the protocol's constants."""

from __future__ import annotations

import math

# NonfungiblePositionManager and SwapRouter deadlines: never the reason a transaction fails,
# even when history runs put chain time far ahead of the wall clock.
FAR_DEADLINE = 2**63


UINT128_MAX = 2**128 - 1


Q96 = 2**96


# Tick bounds of Uniswap V3 (TickMath.MIN_TICK / MAX_TICK) and the matching price limits.
MIN_TICK, MAX_TICK = -887272, 887272


_MIN_SQRT_RATIO, _MAX_SQRT_RATIO = 4295128739, 1461446703485210103287273052203988822378723970342


TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10000: 200}


def v2_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut: the 0.3% fee of Uniswap V2 and SushiSwap pairs."""
    with_fee = amount_in * 997
    return with_fee * reserve_out // (reserve_in * 1000 + with_fee)


def sqrt_price_x96(price: float) -> int:
    """sqrtPriceX96 of a raw price (token1 units per token0 unit)."""
    return math.isqrt(int(price * 2**192))


def aligned_tick(tick: float, spacing: int) -> int:
    """The usable tick nearest ``tick``: a multiple of the spacing, within the V3 bounds."""
    aligned = round(tick / spacing) * spacing
    bound = MAX_TICK // spacing * spacing
    return max(-bound, min(bound, aligned))


def tick_of(price: float) -> float:
    return math.log(price) / math.log(1.0001)
