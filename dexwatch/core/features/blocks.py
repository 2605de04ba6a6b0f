"""Same-block patterns: what the order of one pool's swaps inside a block shows.

A *sandwich*: one trader swaps, other traders' swaps follow in the same direction, and the
first trader swaps back, all in one block and in separate transactions. The front-run moved
the price against the victims, who moved it further, and the back-run sells into the price
they made. Its pool's swaps in the block, in log order, are

    A buys,  V1 buys [, V2 buys ...],  A sells      (or the same with sells and buys)

with nothing else between A's two swaps, at most four victims, and A's second swap closing
the position its first opened (its token0 within a tenth). An opposite swap of another trader
in between is ordinary two-sided flow; one trader buying and selling in one block with nobody
between is a round trip; a trader with a dozen others' swaps between its two, or trading
back another amount, is trading. The back-run must also pay: the value extracted, from the
amounts, is the part of the position the attacker closed times the gap between its selling
and buying prices (token1 per token0, fees included), in token1 units; a pattern that does
not profit is left alone.

A *round trip*: one trader's swap and its swap back, next to each other in the block's swaps
(nobody between; one transaction or two), the second closing the first's position:

    A buys,  A sells      (or A sells, A buys)

the flash loan's shape (borrow, move the price, read or use it, move it back, repay), or a
bot inflating a pool's volume at the cost of its fees. One is nothing (an arbitrageur's
correction of its own overshoot); one trader's round trips in block after block are an
incident (``dexwatch.core.features.kinds``). Its cost, what the trader paid the pool for
it (fees and price impact), is the value extracted of the same formula, negated.

*Crossed swaps*: one trader's swap and another trader's swap back, next to each other in the
block's swaps, the second closing the first's position (as above):

    A buys,  B sells      (or A sells, B buys; B's token0 within a tenth of A's)

two addresses trading with each other at no net position: the shape of wash trading, one
block's worth of it. Ordinary two-sided flow rarely trades back the same amount next to the
first (the real Polygon days: at most one such pair in a minute; the simulated market, whose
few trader accounts trade often, three or four). Counted, not listed: the pair is in the
window's ``top_trader_share``.

Traders are transaction senders where the node said them, else swap recipients (a router's
swaps all share its address: a sandwich through a public router is not told apart from two
users of that router, and none on the three real Polygon days took this shape).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import orjson

__all__ = [
    "BlockSwap", "RoundTrip", "Sandwich", "crossed_swaps", "find_round_trips", "find_sandwiches",
    "patterns_json", "round_trips_in", "sandwiches_in",
]  # fmt: skip

# How far the back-run's token0 may stand from the front-run's (a share of it): a sandwich
# bot closes the position it opened, give or take its rounding.
_CLOSING_TOLERANCE = 0.1
# A sandwich brackets a victim's swap, or a few (a bot bundles them between its own); a
# trader with a dozen others' swaps between its two is trading, not sandwiching.
_MOST_VICTIMS = 4


@dataclass(frozen=True, slots=True)
class BlockSwap:
    """One swap of a block, as the pattern needs it.

    Args:
        bought: the trader bought token0 (paid token1 in).
        amount0, amount1: the token amounts it traded, absolute, in raw units.
    """

    tx_hash: str
    trader: str
    bought: bool
    amount0: float
    amount1: float


@dataclass(frozen=True, slots=True)
class Sandwich:
    """A sandwich found in one block: who, around whom, and what it took (token1 units)."""

    block_number: int
    attacker: str
    front_tx: str
    back_tx: str
    victim_txs: tuple[str, ...]
    extracted: float


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A round trip found in one block: who, its two swaps, the token0 it moved through the
    pool and what the trip cost it (token1 units)."""

    block_number: int
    trader: str
    first_tx: str
    second_tx: str
    amount0: float
    cost: float


def find_round_trips(block_number: int, swaps: Sequence[BlockSwap]) -> list[RoundTrip]:
    """The round trips among one block's swaps of one pool (in log order); each swap is part
    of at most one."""
    return [
        RoundTrip(
            block_number,
            first.trader,
            first.tx_hash,
            second.tx_hash,
            first.amount0,
            -_extracted(first, second),
        )
        for first, second in _closing_neighbours(swaps, same_trader=True)
    ]


def crossed_swaps(swaps: Sequence[BlockSwap]) -> int:
    """The crossed swaps among one block's swaps of one pool (in log order), in pairs; each
    swap is part of at most one."""
    return sum(1 for _ in _closing_neighbours(swaps, same_trader=False))


def _closing_neighbours(
    swaps: Sequence[BlockSwap], same_trader: bool
) -> Iterator[tuple[BlockSwap, BlockSwap]]:
    """Neighbouring swaps, one trader's or two traders' as asked, the second closing the
    first's position; each swap in at most one pair."""
    i = 0
    while i < len(swaps) - 1:
        first, second = swaps[i], swaps[i + 1]
        if (
            (first.trader == second.trader) == same_trader
            and first.bought != second.bought
            and _closes(first, second)
        ):
            yield first, second
            i += 2
        else:
            i += 1


def find_sandwiches(block_number: int, swaps: Sequence[BlockSwap]) -> list[Sandwich]:
    """The sandwiches among one block's swaps of one pool (in log order); each swap is part
    of at most one."""
    found: list[Sandwich] = []
    i = 0
    while i < len(swaps) - 2:
        sandwich = _sandwich_from(block_number, swaps, i)
        if sandwich is None:
            i += 1
            continue
        found.append(sandwich)
        i += len(sandwich.victim_txs) + 2
    return found


def patterns_json(
    sandwiches: Sequence[Sandwich], round_trips: Sequence[RoundTrip] = ()
) -> str | None:
    """A window's patterns for its row's ``patterns`` column (JSON), None without any."""
    items = [{"pattern": "sandwich", **asdict(s)} for s in sandwiches]
    items += [{"pattern": "round-trip", **asdict(r)} for r in round_trips]
    return orjson.dumps(items).decode() if items else None


def round_trips_in(patterns: str | None) -> list[RoundTrip]:
    """The round trips of a row's ``patterns`` (``patterns_json``)."""
    if not patterns:
        return []
    return [
        RoundTrip(**{k: v for k, v in item.items() if k != "pattern"})
        for item in orjson.loads(patterns)
        if item.get("pattern") == "round-trip"
    ]


def sandwiches_in(patterns: str | None) -> list[Sandwich]:
    """The sandwiches of a row's ``patterns`` (``patterns_json``)."""
    if not patterns:
        return []
    found = []
    for item in orjson.loads(patterns):
        if item.pop("pattern", None) == "sandwich":
            found.append(Sandwich(**{**item, "victim_txs": tuple(item["victim_txs"])}))
    return found


def _sandwich_from(block_number: int, swaps: Sequence[BlockSwap], i: int) -> Sandwich | None:
    """The sandwich whose front-run is ``swaps[i]``, if there is one."""
    front = swaps[i]
    victims: list[BlockSwap] = []
    for swap in swaps[i + 1 :]:
        if swap.trader == front.trader:
            if swap.bought == front.bought or swap.tx_hash == front.tx_hash or not victims:
                return None
            if not _closes(front, swap):
                return None
            extracted = _extracted(front, swap)
            if extracted <= 0:
                return None
            return Sandwich(
                block_number, front.trader, front.tx_hash, swap.tx_hash,
                tuple(v.tx_hash for v in victims), extracted,
            )  # fmt: skip
        if swap.bought != front.bought or len(victims) == _MOST_VICTIMS:
            return None
        victims.append(swap)
    return None


def _closes(front: BlockSwap, back: BlockSwap) -> bool:
    """Whether the back-run closes the front-run's position: its token0 within
    ``_CLOSING_TOLERANCE`` of the front-run's. Traders who happen to trade both ways around
    others in a block rarely trade the same amount back (a simulated market with a few
    trader accounts made such shapes by the hundred a day)."""
    return abs(back.amount0 - front.amount0) <= _CLOSING_TOLERANCE * front.amount0


def _extracted(front: BlockSwap, back: BlockSwap) -> float:
    """The back-run's gain on the part of the front-run's position it closed, token1 units."""
    if not (front.amount0 and back.amount0):
        return 0.0
    sold, bought = (back, front) if front.bought else (front, back)
    closed = min(front.amount0, back.amount0)
    return closed * (sold.amount1 / sold.amount0 - bought.amount1 / bought.amount0)
