"""The steps behind ``liquidity_lost_1h`` and ``liquidity_lost_24h``: what a pool's liquidity
did over the last hour and the last day.

A drain spread over half an hour (half a percent of the pool a block) keeps every window
under its limit; added up over the hour it is what it is. Each slice that adds or removes
liquidity makes one *step*: the log of 1 + its net change over the pool's level just before
it, counted as ``net_liquidity_change`` counts it (in range, net of just-in-time liquidity,
narrow ranges by their depth). A window's ``liquidity_lost_1h`` is 1 - exp(the sum of the
steps in the hour before its end): shares of the level at each moment, so a price that moves
the in-range level between a pool's Burns does not count as a loss or a gain.

The day horizon adds up the same steps over the day before the window's end, but for the
fast ones (a slice that moves a tenth of the pool or more: its window and the hour see it): a
drain of a few percent an hour, under the hour's limit every hour, is what it is over a day,
while a fast drain hours ago does not keep the pool's next day anomalous.

Streaming keeps a pool's steps for a day after its slices leave state (one float for each
slice that changed liquidity); batch works them out from the sorted slices. Both add the same
steps in the same order, so both give the same number to the last bit.
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Sequence

from dexwatch.core.features.chain import liquidity_before, liquidity_changes
from dexwatch.core.features.slices import SliceSummary

__all__ = [
    "DAY_HORIZON_S", "LIQUIDITY_HORIZON_S", "hour_steps", "liquidity_step", "slow_steps",
    "steps_before",
]  # fmt: skip

LIQUIDITY_HORIZON_S = 3600
DAY_HORIZON_S = 24 * 3600
# A step of this share of the pool or more is fast: the day horizon leaves it to the window
# and the hour.
FAST_STEP_SHARE = 0.1
# A slice that removes everything would be log(0): it counts as keeping one part in 10^6.
_LEAST_KEPT = 1e-6


def liquidity_step(
    previous: SliceSummary | None, summary: SliceSummary, level: float | None = None
) -> float:
    """log(the pool's liquidity after the slice over its liquidity before it), from the
    slice's Mints and Burns.

    Args:
        previous: the pool's slice before this one (any time before). Without one the step is
            0: the first slice seen is the pool's launch, or the first of a replay, and its
            Mints have no level before them to be a share of.
        level: the pool's liquidity after ``previous`` when no swap of ``previous`` or of
            this slice says it (a V3 pool's level comes with its swaps only): see
            ``hour_steps``.
    """
    if previous is None:
        return 0.0
    added, removed = liquidity_changes([previous], [summary], trips_from_baseline=False)
    if added == removed:
        return 0.0
    before = liquidity_before([previous], [summary]) or level
    if not before:
        return 0.0
    return math.log(max(1.0 + (added - removed) / before, _LEAST_KEPT))


def hour_steps(
    ordered: Sequence[SliceSummary],
    previous: SliceSummary | None = None,
    level: float | None = None,
) -> tuple[list[tuple[int, float]], float | None]:
    """(slice start, step) of each slice of ``ordered`` (in time order) that changed the
    pool's liquidity, and the pool's level after the last slice.

    A slice without a swap reports no level: the level carries over from the last one
    reported, moved by the steps since, so that Burns between a quiet pool's swaps are
    each a share of what the pool held then.

    Args:
        previous: the pool's slice before the first, if any.
        level: the pool's level after ``previous`` (the level this returned for it).
    """
    steps = []
    for summary in ordered:
        step = liquidity_step(previous, summary, level)
        if step:
            steps.append((summary.start, step))
        if summary.last_liquidity:
            level = summary.last_liquidity
        elif level:
            level *= math.exp(step)
        previous = summary
    return steps, level


def steps_before(
    steps: Sequence[tuple[int, float]], window_end: int, horizon_s: int = LIQUIDITY_HORIZON_S
) -> list[float]:
    """The steps (of ``hour_steps``, in time order) of the ``horizon_s`` before
    ``window_end``."""
    start = operator.itemgetter(0)
    first = bisect.bisect_left(steps, window_end - horizon_s, key=start)
    last = bisect.bisect_left(steps, window_end, key=start)
    return [step for _, step in steps[first:last]]


def slow_steps(steps: Sequence[float]) -> list[float]:
    """The steps that move less than ``FAST_STEP_SHARE`` of the pool, either way."""
    return [step for step in steps if abs(math.expm1(step)) < FAST_STEP_SHARE]
