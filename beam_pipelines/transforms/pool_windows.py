"""Windows of one pool: its slices → the feature row of each window (definitions in
dexwatch.core.features.chain), in streaming (``PoolWindowsFn``, per-pool state and timers)
and in batch (``pool_windows``, one sliding pass over complete slices).

A window is the last ``current_slices`` slices (under test) and the ``baseline_slices``
before them. A pool silent through a window's baseline is scored against its last slice
before the span (the *carry*): its liquidity, price and tick; and its rates against the
pool's decayed rates of the slices before the span (dexwatch.core.features.rates). Each
window also adds up its pool's liquidity steps of the hour and the day before its end
(``liquidity_lost_1h``, ``liquidity_lost_24h``; dexwatch.core.features.horizon).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.transforms.parse import dead_letter_of
from dexwatch.core.features.blocks import patterns_json
from dexwatch.core.features.chain import window_features
from dexwatch.core.features.horizon import DAY_HORIZON_S, hour_steps, slow_steps, steps_before
from dexwatch.core.features.rates import DecayedRates, fold_rates
from dexwatch.core.features.slices import SliceSummary
from dexwatch.core.settings import PipelineSettings

__all__ = [
    "YOUNG_POOL_NEUTRAL", "PoolSlices", "PoolWindowsFn", "feature_row", "guarded_row",
    "pool_windows",
]  # fmt: skip


# A young pool's window (a pool seen for the first time, with less history than
# pipeline.min_baseline_share of a baseline) is scored on what needs no history: how much of
# its liquidity is removed, and how concentrated its trading is. Its rates, price moves and
# liquidity added are its launch, not an incident: they read as usual (0).
YOUNG_POOL_NEUTRAL = (
    "volume_ratio", "swap_count_ratio", "net_liquidity_change", "price_change",
    "price_range", "max_swap_price_impact", "pair_two_way_excess",
)  # fmt: skip


def feature_row(
    key: str,
    window_end: int,
    slices: list[SliceSummary],
    s: PipelineSettings,
    carry: SliceSummary | None = None,
    steps: Sequence[float] = (),
    rates: DecayedRates | None = None,
    day_steps: Sequence[float] = (),
) -> dict | None:
    """The row of one pool's window ending at ``window_end``, or None when the window saw
    no event. ``carry``: the pool's last slice before the window's span, if it had one (a
    quiet pool's window is scored against it: see ``window_features``); without one, a
    pool with too little history is young (``YOUNG_POOL_NEUTRAL``). ``steps``: the pool's
    liquidity steps of the hour before ``window_end``, ``day_steps`` the slow ones of the day.
    ``rates``: the pool's decayed rates from its slices before the window's span."""
    if not slices:
        return None
    current_start = window_end - s.current_slices * s.slice_s
    history_s = current_start - min(summary.start for summary in slices)
    features = window_features(
        slices, window_end, s.slice_s, s.current_slices, carry, steps, rates, day_steps
    )
    if features is None:
        return None
    if carry is None and history_s < s.min_baseline_share * s.baseline_slices * s.slice_s:
        beam.metrics.Metrics.counter("dexwatch", "windows_of_young_pools").inc()
        features.update(dict.fromkeys(YOUNG_POOL_NEUTRAL, 0.0))
    chain_id, dex, pool = key.split(":")
    current = [x for x in slices if x.start >= current_start]
    return {
        "window_id": f"{chain_id}:{pool}:{window_end}",
        "chain_id": int(chain_id),
        "dex": dex,
        "pool": pool,
        "source": "chain",
        "window_start": datetime.fromtimestamp(current_start, UTC),
        "window_end": datetime.fromtimestamp(window_end, UTC),
        "events": sum(x.events for x in current),
        **features,
        "patterns": patterns_json(
            [sandwich for x in current for sandwich in x.sandwiches],
            [trip for x in current for trip in x.round_trips],
        ),
    }


@dataclasses.dataclass
class PoolSlices:
    slices: dict[int, tuple[int, SliceSummary]] = dataclasses.field(default_factory=dict)
    horizon: int = 0  # updates of slices that start before this come too late
    # The newest slice pruned: the pool's last known state for windows after a silence.
    carry: SliceSummary | None = None
    # (start, liquidity step) of the pruned slices of the last day, in time order, and the
    # pool's liquidity level after the carry (horizon.hour_steps).
    steps: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    level: float | None = None
    # The pool's decayed rates, with every pruned slice folded in (features.rates).
    rates: DecayedRates | None = None


def guarded_row(
    key: str,
    window_end: int,
    slices: list[SliceSummary],
    s: PipelineSettings,
    carry: SliceSummary | None = None,
    steps: Sequence[float] = (),
    rates: DecayedRates | None = None,
    day_steps: Sequence[float] = (),
):
    """feature_row, or a dead letter naming the window if its features cannot be worked out."""
    try:
        row = feature_row(key, window_end, slices, s, carry, steps, rates, day_steps)
    except (ValueError, ArithmeticError) as err:
        yield dead_letter_of(
            "features", f"window {key}:{window_end}: {err}", {"pool": key, "window_end": window_end}
        )
        return
    if row is not None:
        yield row


class PoolWindowsFn(beam.DoFn):
    """(pool, (version, SliceSummary)) → the feature rows of the windows that contain the
    slice, up to the pool's newest slice: in order, one row per update. The windows after
    the newest slice (it is still in their current part) follow as the watermark passes
    their ends, unless newer data brings them first.

    Keeps each pool's slices while an update of a slice in their windows may still come:
    until the watermark passes them by a window's span and the allowed lateness."""

    SLICES = ReadModifyWriteStateSpec("slices", PickleCoder())
    PRUNE = TimerSpec("prune", TimeDomain.WATERMARK)
    TAIL = TimerSpec("tail", TimeDomain.WATERMARK)

    def __init__(
        self, settings: PipelineSettings, final_before: dict[str, int] | None = None
    ) -> None:
        s = settings
        self._settings = settings
        self._span = (s.current_slices + s.baseline_slices) * s.slice_s
        # A resumed run replays part of a window's span: rows of windows that were final
        # before the restart would come out incomplete, and are not emitted again.
        self._first_ends = {
            pool: (end // s.slice_s + 1) * s.slice_s for pool, end in (final_before or {}).items()
        }

    def _first_end(self, key: str) -> int:
        """The first window end of the pool (chain_id:dex:pool) a resumed run emits."""
        chain_id, _, pool = key.split(":")
        return self._first_ends.get(f"{chain_id}:{pool}", 0)

    def process(
        self,
        element,
        slices_state=beam.DoFn.StateParam(SLICES),
        prune=beam.DoFn.TimerParam(PRUNE),
        tail=beam.DoFn.TimerParam(TAIL),
    ):
        key, (version, summary) = element
        s = self._settings
        known: PoolSlices = slices_state.read() or PoolSlices()
        if summary.start < known.horizon:
            beam.metrics.Metrics.counter("dexwatch", "slice_updates_too_late").inc()
            return
        held = known.slices.get(summary.start)
        if held is not None and held[0] >= version:
            return
        previous_end = max(known.slices, default=summary.start) + s.slice_s
        known.slices[summary.start] = (version, summary)
        slices_state.write(known)
        prune.set(self._prune_time(known))
        newest_end = max(known.slices) + s.slice_s
        if s.current_slices > 1:
            tail.set(Timestamp(newest_end + s.slice_s))  # replaces a pending one
        # The previous newest slice's later windows, which its tail timer may not have
        # emitted yet, then this slice's windows up to the newest slice.
        tail_end = min(previous_end + (s.current_slices - 1) * s.slice_s, summary.start)
        ends = [*range(previous_end + s.slice_s, tail_end + 1, s.slice_s)]
        last_end = min(summary.start + self._span, newest_end)
        ends += range(summary.start + s.slice_s, last_end + 1, s.slice_s)
        yield from self._rows(key, known, ends)

    @on_timer(TAIL)
    def emit_tail(
        self,
        key=beam.DoFn.KeyParam,
        now=beam.DoFn.TimestampParam,
        slices_state=beam.DoFn.StateParam(SLICES),
        tail=beam.DoFn.TimerParam(TAIL),
    ):
        """The watermark passed the end of the window ``now`` seconds after the newest slice,
        and no newer slice came: that window is on time."""
        s = self._settings
        known: PoolSlices | None = slices_state.read()
        if not known or not known.slices:
            return
        window_end = int(now.seconds())
        newest_end = max(known.slices) + s.slice_s
        yield from self._rows(key, known, [window_end])
        if window_end + s.slice_s < newest_end + s.current_slices * s.slice_s:
            tail.set(Timestamp(window_end + s.slice_s))

    def _rows(self, key: str, known: PoolSlices, window_ends):
        s = self._settings
        ordered = sorted((held for _, held in known.slices.values()), key=lambda x: x.start)
        # The pruned slices' steps come before those of the slices in state.
        steps = [*known.steps, *hour_steps(ordered, known.carry, known.level)[0]]
        first_end = self._first_end(key)
        for window_end in window_ends:
            if window_end < first_end:
                continue
            in_window = [x for x in ordered if window_end - self._span <= x.start < window_end]
            before = [x for x in ordered if x.start < window_end - self._span]
            carry = before[-1] if before else known.carry
            hour = steps_before(steps, window_end)
            day = slow_steps(steps_before(steps, window_end, DAY_HORIZON_S))
            rates = fold_rates(known.rates, before, s.slice_s)
            yield from guarded_row(key, window_end, in_window, s, carry, hour, rates, day)

    def _prune_time(self, known: PoolSlices) -> Timestamp:
        oldest = min(known.slices)
        return Timestamp(
            oldest + self._settings.slice_s + self._settings.allowed_lateness_s + self._span
        )

    @on_timer(PRUNE)
    def prune(
        self,
        now=beam.DoFn.TimestampParam,
        slices_state=beam.DoFn.StateParam(SLICES),
        prune=beam.DoFn.TimerParam(PRUNE),
    ) -> None:
        s = self._settings
        known: PoolSlices | None = slices_state.read()
        if known is None or not known.slices:
            return
        # Slices that ended more than the allowed lateness ago take no more updates; the
        # slices before them stay while a window of those may still change.
        known.horizon = int(now.seconds()) - s.allowed_lateness_s - s.slice_s
        first_needed = known.horizon - self._span + s.slice_s
        newest_end = max(known.slices) + s.slice_s
        if int(now.seconds()) < self._tails_done(newest_end):
            # The windows after the newest slice need its span, whatever the order timers
            # fire in. Once they are out, an idle pool is compacted: its last slices fold
            # into the carry, rates and steps too, as the windows of its next event need.
            first_needed = min(first_needed, newest_end - self._span)
        dropped = sorted(
            (summary for start, (_, summary) in known.slices.items() if start < first_needed),
            key=lambda x: x.start,
        )
        if dropped:
            pruned, known.level = hour_steps(dropped, known.carry, known.level)
            known.steps += pruned
            known.rates = fold_rates(known.rates, dropped, s.slice_s)
            # The newest slice that leaves keeps the pool's state for its next windows.
            known.carry = dropped[-1]
        # Windows still to come end after first_needed: they look back a day from there.
        known.steps = [x for x in known.steps if x[0] >= first_needed - DAY_HORIZON_S]
        known.slices = {start: v for start, v in known.slices.items() if start >= first_needed}
        slices_state.write(known)
        if known.slices:
            prune.set(max(self._prune_time(known), Timestamp(self._tails_done(newest_end))))

    def _tails_done(self, newest_end: int) -> int:
        """When the windows after a pool's newest slice (ending at ``newest_end``) are all out."""
        return newest_end + self._settings.current_slices * self._settings.slice_s


def pool_windows(element, s: PipelineSettings):
    """Every window of one pool, from its slices in time order (batch): a sliding pass over
    the sorted slices instead of a copy of each slice per window."""
    key, slices = element
    ordered = sorted(slices, key=lambda summary: summary.start)
    span = (s.current_slices + s.baseline_slices) * s.slice_s
    first_end = ordered[0].start + s.slice_s
    last_end = ordered[-1].start + span
    steps, _ = hour_steps(ordered)
    low = high = 0
    rates: DecayedRates | None = None
    for window_end in range(first_end, last_end + 1, s.slice_s):
        while high < len(ordered) and ordered[high].start < window_end:
            high += 1
        while ordered[low].start < window_end - span:
            rates = fold_rates(rates, [ordered[low]], s.slice_s)
            low += 1
        carry = ordered[low - 1] if low else None
        hour = steps_before(steps, window_end)
        day = slow_steps(steps_before(steps, window_end, DAY_HORIZON_S))
        yield from guarded_row(key, window_end, ordered[low:high], s, carry, hour, rates, day)
