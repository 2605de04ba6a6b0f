"""What one pool event contributes to its slice (``effect_of``): price, liquidity level,
trader and amounts, read from the event's arguments once, before anything is folded in."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dexwatch.core.schemas.pool_event import PoolEvent

__all__ = ["DEPTH_BAND_TICKS", "Effect", "depth_weight", "effect_of"]

_Q96 = 2**96
# A V3 position narrower than this many ticks (2 % of price) counts in proportion to its
# width: a range order a few ticks wide holds many units of liquidity but little depth. Chosen
# on 2022-01-05's logs: its false inflows were positions 20-40 ticks wide, 16-24 % of L.
DEPTH_BAND_TICKS = 200


@dataclass(frozen=True, slots=True)
class Effect:
    """What one event contributes to its slice."""

    price: float | None = None  # positive and finite when set
    liquidity: float | None = None
    trader: str | None = None  # set for swaps
    amount: float = 0.0  # a swap's token1 leg (its volume), absolute
    amount0: float = 0.0  # its token0 leg, absolute
    bought: bool = False
    added: float = 0.0
    removed: float = 0.0
    # V3: the swap's tick; the Mint's or Burn's position (owner, tick_lower, tick_upper).
    tick: int | None = None
    position: tuple[str, int, int] | None = None


def effect_of(event: PoolEvent) -> Effect:
    """What ``event`` contributes to its slice; raises ValueError if it cannot be read (a
    message that passed PoolEvent.from_json always can)."""
    args = event.args
    if event.event == "Swap":
        if "sqrtPriceX96" in args:  # Uniswap V3
            amount1 = int(args["amount1"])
            return _checked(
                Effect(
                    price=_positive((int(args["sqrtPriceX96"]) / _Q96) ** 2),
                    liquidity=float(int(args["liquidity"])),
                    trader=event.tx_from or args["recipient"],
                    amount=float(abs(amount1)),
                    amount0=float(abs(int(args["amount0"]))),
                    bought=amount1 > 0,  # paid token1 in: bought token0
                    tick=int(args["tick"]),
                )
            )
        # V2 pair: the price comes with the Sync that precedes the Swap
        amount_in, amount_out = int(args["amount1In"]), int(args["amount1Out"])
        amount0 = int(args["amount0In"]) + int(args["amount0Out"])
        return _checked(
            Effect(trader=event.tx_from or args["to"], amount=float(amount_in + amount_out),
                   amount0=float(amount0), bought=amount_in > amount_out)
        )  # fmt: skip
    if event.event == "Sync":
        reserve0, reserve1 = int(args["reserve0"]), int(args["reserve1"])
        if reserve0 > 0 and reserve1 > 0:
            return _checked(
                Effect(price=reserve1 / reserve0, liquidity=math.sqrt(reserve0 * reserve1))
            )
        return Effect()
    if event.event in ("Mint", "Burn"):
        position = None
        if "amount" in args:  # V3: a position; V2 pairs have no ranges
            tick_lower, tick_upper = int(args["tickLower"]), int(args["tickUpper"])
            amount = float(int(args["amount"])) * depth_weight(tick_lower, tick_upper)
            position = (args["owner"], tick_lower, tick_upper)
        else:
            amount = _liquidity_of_amounts(args)
        if event.event == "Mint":
            return _checked(Effect(added=amount, position=position))
        return _checked(Effect(removed=amount, position=position))
    if event.event == "Collect":
        return Effect()
    raise ValueError(f"{event.event} is not a pool event the features read")


def depth_weight(tick_lower: int, tick_upper: int) -> float:
    """The share of a V3 position's liquidity that counts as depth (DEPTH_BAND_TICKS)."""
    return min(1.0, max(tick_upper - tick_lower, 1) / DEPTH_BAND_TICKS)


def _positive(price: float) -> float | None:
    return price if price > 0 else None


def _checked(effect: Effect) -> Effect:
    numbers = (effect.price or 0.0, effect.liquidity or 0.0, effect.amount, effect.amount0,
               effect.added, effect.removed)  # fmt: skip
    if not all(math.isfinite(x) for x in numbers):
        raise ValueError("an amount or price is not a finite number")
    return effect


def _liquidity_of_amounts(args: dict[str, str]) -> float:
    return math.sqrt(float(args["amount0"]) * float(args["amount1"]))
