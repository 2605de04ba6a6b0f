"""Slices: what one pool did in a few seconds of event time (``SliceSummary``), folded from its
events one at a time (``SliceBuilder``) in streaming and in batch alike. Window features
(``dexwatch.core.features.chain``) compare a stretch of slices with the slices before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from dexwatch.core.features.blocks import (
    BlockSwap,
    RoundTrip,
    Sandwich,
    crossed_swaps,
    find_round_trips,
    find_sandwiches,
)
from dexwatch.core.features.effects import DEPTH_BAND_TICKS, Effect, depth_weight, effect_of
from dexwatch.core.schemas.pool_event import PoolEvent

__all__ = [
    "Position", "SliceBuilder", "SliceSummary", "chain_position", "is_range_order",
    "summarize_slice",
]  # fmt: skip

# A V3 position: (owner, tick_lower, tick_upper).
Position = tuple[str, int, int]


@dataclass
class SliceSummary:
    """What one pool did in one slice of event time; mergeable, and small."""

    pool: str
    start: int  # unix seconds, slice start
    events: int = 0
    swaps: int = 0
    volume: float = 0.0
    liquidity_added: float = 0.0
    liquidity_removed: float = 0.0
    # Pool liquidity and price seen first and last in the slice (None if none was seen).
    first_liquidity: float | None = None
    last_liquidity: float | None = None
    first_price: float | None = None
    last_price: float | None = None
    min_price: float | None = None
    max_price: float | None = None
    max_swap_impact: float = 0.0
    trader_volume: dict[str, float] = field(default_factory=dict)
    # Swaps in which the slice's two busiest traders take opposite sides (see
    # pair_two_way_excess): per slice, as wash trading is a burst of seconds.
    pair_two_way_swaps: int = 0
    # V3: the tick of the slice's last swap; liquidity changes before its first swap, whose
    # range is judged against the tick before the slice (position, +added or -removed);
    # liquidity added and removed just in time (netted out of both sides).
    last_tick: int | None = None
    pending_liquidity: list[tuple[Position, float]] = field(default_factory=list)
    jit_liquidity: float = 0.0
    # V3: what each range order (a position narrower than DEPTH_BAND_TICKS) added and
    # removed in range, as counted above (pending changes aside), so that a window can net
    # its round trip (liquidity_changes).
    position_added: dict[Position, float] = field(default_factory=dict)
    position_removed: dict[Position, float] = field(default_factory=dict)
    # Sandwiches, round trips and crossed swaps (pairs) in the slice's blocks
    # (dexwatch.core.features.blocks).
    sandwiches: list[Sandwich] = field(default_factory=list)
    round_trips: list[RoundTrip] = field(default_factory=list)
    crossed_swaps: int = 0


def summarize_slice(pool: str, start: int, events: Iterable[PoolEvent]) -> SliceSummary:
    """The summary of one pool's (deduplicated, non-retracted) events of one slice."""
    builder = SliceBuilder(pool, start)
    for event in sorted(events, key=chain_position):
        builder.add(event)
    return builder.summary


def chain_position(event: PoolEvent) -> tuple[int, int]:
    return event.block_number, event.log_index


@dataclass(slots=True)
class _BlockMint:
    """A V3 Mint of the block being folded, until a Burn of the same position nets it."""

    amount: float  # not netted yet
    counted: float  # of it, in the slice's liquidity_added
    pending: int | None  # its index in pending_liquidity, if its range awaits a tick


class SliceBuilder:
    """Folds one slice's events into its SliceSummary, one at a time, in chain order.

    Streaming adds events as they arrive; ``in_order`` tells whether an event may be added
    (the swap impacts and the first and last levels depend on the order); if not, the
    caller rebuilds the slice with ``summarize_slice``.

    V3 liquidity counts only for positions in range at the time (a filled range order
    withdrawn moves no liquidity the pool trades on), and liquidity added and removed by
    the same owner and range within one block (just-in-time liquidity around a swap) is
    netted out: it was never there between blocks.
    """

    def __init__(self, pool: str, start: int) -> None:
        self._summary = SliceSummary(pool=pool, start=start)
        self._previous_price: float | None = None
        self._last_position = (-1, -1)
        # Per address: [buys, sells] of token0, for the slice's two-way swaps.
        self._sides: dict[str, list[int]] = {}
        self._block = -1
        self._block_mints: dict[tuple[str, int, int], list[_BlockMint]] = {}
        # The block's swaps in order, and the patterns of the blocks before it.
        self._block_swaps: list[BlockSwap] = []
        self._sandwiches: list[Sandwich] = []
        self._round_trips: list[RoundTrip] = []
        self._crossed_swaps = 0
        # The blocks of the first and last liquidity levels seen.
        self._level_blocks = (-1, -1)

    @property
    def summary(self) -> SliceSummary:
        # Two addresses taking each other's other side. One address trading both ways does
        # not count: a busy arbitrageur does that, and it made most of the normal tail.
        busiest = sorted(self._sides.items(), key=lambda item: (-sum(item[1]), item[0]))[:2]
        if len(busiest) == 2:
            (a_buys, a_sells), (b_buys, b_sells) = (counts for _, counts in busiest)
            self._summary.pair_two_way_swaps = 2 * (min(a_buys, b_sells) + min(a_sells, b_buys))
        self._summary.sandwiches = [
            *self._sandwiches,
            *find_sandwiches(self._block, self._block_swaps),
        ]
        self._summary.round_trips = [
            *self._round_trips,
            *find_round_trips(self._block, self._block_swaps),
        ]
        self._summary.crossed_swaps = self._crossed_swaps + crossed_swaps(self._block_swaps)
        return self._summary

    def in_order(self, event: PoolEvent) -> bool:
        return chain_position(event) > self._last_position

    def add(self, event: PoolEvent, effect: Effect | None = None) -> None:
        """Fold in one event (checked by PoolEvent.from_json), with its ``effect_of`` if the
        caller has it. What the event contributes is worked out before anything changes, so
        an event that cannot be read leaves the slice as it was and raises ValueError."""
        if effect is None:
            effect = effect_of(event)
        self._last_position = chain_position(event)
        if event.block_number != self._block:
            self._sandwiches += find_sandwiches(self._block, self._block_swaps)
            self._round_trips += find_round_trips(self._block, self._block_swaps)
            self._crossed_swaps += crossed_swaps(self._block_swaps)
            self._block, self._block_mints, self._block_swaps = event.block_number, {}, []
        summary = self._summary
        summary.events += 1
        if effect.trader is not None:
            self._sides.setdefault(effect.trader, [0, 0])[0 if effect.bought else 1] += 1
            summary.swaps += 1
            summary.volume += effect.amount
            summary.trader_volume[effect.trader] = (
                summary.trader_volume.get(effect.trader, 0.0) + effect.amount
            )
            self._block_swaps.append(
                BlockSwap(
                    event.tx_hash, effect.trader, effect.bought, effect.amount0, effect.amount
                )
            )
        if effect.position is not None:
            self._add_position_change(effect)
        else:
            summary.liquidity_added += effect.added
            summary.liquidity_removed += effect.removed
        if effect.tick is not None:
            summary.last_tick = effect.tick
        if effect.liquidity is not None:
            if summary.first_liquidity is None:
                summary.first_liquidity = effect.liquidity
                self._level_blocks = (self._block, self._block)
            summary.last_liquidity = effect.liquidity
            self._level_blocks = (self._level_blocks[0], self._block)
        price = effect.price
        if price is not None:
            previous = self._previous_price
            if previous is not None:
                # A V3 Swap carries its price; a V2 swap moves the Sync just before its Swap.
                summary.max_swap_impact = max(
                    summary.max_swap_impact, abs(math.log(price / previous))
                )
            if summary.first_price is None:
                summary.first_price = price
            summary.last_price = price
            summary.min_price = (
                price if summary.min_price is None else min(summary.min_price, price)
            )
            summary.max_price = (
                price if summary.max_price is None else max(summary.max_price, price)
            )
            self._previous_price = price

    def _add_position_change(self, effect: Effect) -> None:
        """A V3 Mint or Burn: netted just in time, then counted if its range holds the tick."""
        summary, position = self._summary, effect.position
        assert position is not None
        _, tick_lower, tick_upper = position
        tick = summary.last_tick
        if effect.added:
            mint = _BlockMint(effect.added, 0.0, None)
            if tick is None:
                mint.pending = len(summary.pending_liquidity)
                summary.pending_liquidity.append((position, effect.added))
            elif tick_lower <= tick < tick_upper:
                mint.counted = effect.added
                summary.liquidity_added += effect.added
                _count(summary.position_added, position, effect.added)
            self._block_mints.setdefault(position, []).append(mint)
            return
        removed = effect.removed
        for mint in self._block_mints.get(position, ()):
            netted = min(mint.amount, removed)
            if netted <= 0:
                continue
            mint.amount -= netted
            removed -= netted
            summary.jit_liquidity += netted
            uncounted = min(netted, mint.counted)
            mint.counted -= uncounted
            summary.liquidity_added = max(summary.liquidity_added - uncounted, 0.0)
            if uncounted:
                _count(summary.position_added, position, -uncounted)
            if mint.pending is not None:
                _, amount = summary.pending_liquidity[mint.pending]
                summary.pending_liquidity[mint.pending] = (position, amount - netted)
            if tick is not None and tick_lower <= tick < tick_upper:
                self._take_from_levels(netted / depth_weight(tick_lower, tick_upper))
        if removed <= 0:
            return
        if tick is None:
            summary.pending_liquidity.append((position, -removed))
        elif tick_lower <= tick < tick_upper:
            summary.liquidity_removed += removed
            _count(summary.position_removed, position, removed)

    def _take_from_levels(self, jit: float) -> None:
        """Just-in-time liquidity was in the levels this block's swaps reported: the pool
        holds that level only for the block."""
        summary = self._summary
        first_block, last_block = self._level_blocks
        if last_block == self._block and summary.last_liquidity is not None:
            summary.last_liquidity = max(summary.last_liquidity - jit, 1.0)
        if first_block == self._block and summary.first_liquidity is not None:
            summary.first_liquidity = max(summary.first_liquidity - jit, 1.0)


def is_range_order(position: Position) -> bool:
    _, tick_lower, tick_upper = position
    return tick_upper - tick_lower < DEPTH_BAND_TICKS


def _count(flows: dict[Position, float], position: Position, amount: float) -> None:
    if is_range_order(position):
        flows[position] = flows.get(position, 0.0) + amount
