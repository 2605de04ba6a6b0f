"""One block of a same-block incident's swaps, sized from the pool's reserves
(``infra.local.incidents``): a sandwich and a round trip.

Constant product (V3: within the range's virtual reserves): paying x into a pool moves its
price by about (1 + x / reserve_in)^2, and returns ``amount_out``. The outputs are estimates:
the swaps themselves are exact-in, so a trade back never fails for want of balance.
"""

from __future__ import annotations

import math

from infra.local import evm
from infra.local.deployment import LocalDeployment
from infra.local.evm import PoolState, Tx

_SANDWICH_VICTIM_MOVE = 0.015  # the victim's purchase moves the price this much
_SANDWICH_FRONT_SHARE = 0.5  # the front-run, as a share of the victim's
# The back-run sells this share of what the front-run bought: selling a little less than
# the estimate never fails for want of balance.
_SANDWICH_SELL_BACK = 0.995


def amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee: float) -> int:
    """Constant product's output for ``amount_in``, the pool keeping ``fee`` of it."""
    kept = amount_in * (1 - fee)
    return int(reserve_out * kept / (reserve_in + kept))


def _sides(state: PoolState, buys_token0: bool) -> tuple[int, int]:
    """(the reserve paid into, the reserve paid out of)."""
    return (state.reserve1, state.reserve0) if buys_token0 else (state.reserve0, state.reserve1)


def sandwich(
    deployment: LocalDeployment,
    state: PoolState,
    attacker: str,
    victim: str,
    fee: float,
    buys_token0: bool,
) -> tuple[list[Tx], float]:
    """The attacker's front-run, the victim's swap (moving the price 1.5 %) and the
    attacker's back-run; returns them and what the back-run gained, in token1."""  # fmt: skip
    pay, get = _sides(state, buys_token0)
    price = state.price
    victim_in = int(pay * (math.sqrt(1 + _SANDWICH_VICTIM_MOVE) - 1))
    front_in = int(victim_in * _SANDWICH_FRONT_SHARE)
    front_out = amount_out(front_in, pay, get, fee)
    pay, get = pay + front_in, get - front_out
    victim_out = amount_out(victim_in, pay, get, fee)
    pay, get = pay + victim_in, get - victim_out
    sold = int(front_out * _SANDWICH_SELL_BACK)
    back_out = amount_out(sold, get, pay, fee)
    # What the back-run got over what the part it sold back cost, in the paid token.
    gained = back_out - front_in * _SANDWICH_SELL_BACK
    txs: list[Tx] = []
    for trader, zero_for_one, amount in (
        (attacker, not buys_token0, front_in),
        (victim, not buys_token0, victim_in),
        (attacker, buys_token0, sold),
    ):
        swap, state = evm.swap_exact_in(deployment, state, trader, zero_for_one, amount)
        txs += swap
    return txs, gained if buys_token0 else gained * price


def round_trip(
    deployment: LocalDeployment,
    state: PoolState,
    trader: str,
    fee: float,
    buys_token0: bool,
    move: float,
) -> tuple[list[Tx], float]:
    """The trader's swap moving the price by ``move`` and its swap of what it got straight
    back; returns them and what the trip cost it (fees and impact), in token1."""  # fmt: skip
    pay, get = _sides(state, buys_token0)
    paid = int(pay * (math.sqrt(1 + move) - 1))
    got = amount_out(paid, pay, get, fee)
    back = amount_out(got, get - got, pay + paid, fee)
    price = state.price
    first, state = evm.swap_exact_in(deployment, state, trader, not buys_token0, paid)
    second, state = evm.swap_exact_in(deployment, state, trader, buys_token0, got)
    cost = paid - back
    return first + second, cost if buys_token0 else cost * price
