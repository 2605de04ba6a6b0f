"""Pool events → one feature row per pool and window (definitions in dexwatch.core.features.chain).

Each pool's events are cut into fixed event-time slices; a window is the last
``current_slices`` slices (under test) and the ``baseline_slices`` before them.

Streaming keeps per-pool state and sends updates at the end of every bundle, so an incident
shows within seconds, and late events (within the allowed lateness) still correct a window:

1. ``_SliceUpdatesFn``, per pool and slice: drops duplicates, lets a retraction cancel the
   event it retracts, folds the rest into the slice's summary as they come, and sends the
   summary on at the end of each bundle that changed it.
2. ``_PoolWindowsFn``, per pool: keeps the latest summary of its recent slices and emits
   the row of every window the changed slice belongs to.

Rows have a natural id and the sinks upsert, so a later row replaces an earlier one. Batch
(replay, backfill, training data) computes the same rows from complete slices.

Events come through ``AdmitEvents`` (admission.py): announced pools, each id once. An event
whose amounts cannot be read, or a window whose features cannot be computed, goes to the
``dead_letters`` output with the stage and the reason: no element can stop the pipeline.
"""

from __future__ import annotations

import dataclasses
import operator
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    CombiningValueStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from beam_pipelines.transforms.admission import pool_key
from beam_pipelines.transforms.parse import DEAD_LETTERS, dead_letter_of
from dexwatch.core.features.chain import (
    SliceBuilder,
    SliceSummary,
    chain_position,
    effect_of,
    window_features,
)
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.settings import PipelineSettings

__all__ = ["PoolWindowFeatures", "feature_row", "pool_key"]


def feature_row(
    key: str, window_end: int, slices: list[SliceSummary], s: PipelineSettings
) -> dict | None:
    """The row of one pool's window ending at ``window_end``, or None while the pool has
    too little history to compare with, or when the window saw no event."""
    if not slices:
        return None
    current_start = window_end - s.current_slices * s.slice_s
    history_s = current_start - min(summary.start for summary in slices)
    if history_s < s.min_baseline_share * s.baseline_slices * s.slice_s:
        beam.metrics.Metrics.counter("dexwatch", "windows_warming_up").inc()
        return None
    features = window_features(slices, window_end, s.slice_s, s.current_slices)
    if features is None:
        return None
    chain_id, dex, pool = key.split(":")
    return {
        "window_id": f"{chain_id}:{pool}:{window_end}",
        "chain_id": int(chain_id),
        "dex": dex,
        "pool": pool,
        "source": "chain",
        "window_start": datetime.fromtimestamp(current_start, UTC),
        "window_end": datetime.fromtimestamp(window_end, UTC),
        "events": sum(x.events for x in slices if x.start >= current_start),
        **features,
    }


class _SliceProgress:
    """The state of one pool's slice: the ids that count and the summary so far."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.builder: SliceBuilder | None = None
        self.version = 0  # grows with every change, so later updates win downstream

    def changes(self, event: PoolEvent) -> bool:
        """False for a copy of a counted event or a retraction of an uncounted one (the
        admission stage lets none through; a second line of defence costs a set lookup)."""
        return (event.event_id in self.live) == (event.kind == "retraction")

    def needs_rebuild(self, event: PoolEvent) -> bool:
        """True if the event cannot be folded in as it comes: a retraction, or an event
        older (in chain order) than the slice's newest."""
        if event.kind == "retraction":
            return True
        return self.builder is not None and not self.builder.in_order(event)


class _Rebuilt:
    """An input of _FoldSlice: the slice rebuilt from its raw events."""

    def __init__(self, event: PoolEvent, builder: SliceBuilder) -> None:
        self.event = event
        self.builder = builder


class _FoldSlice(beam.CombineFn):
    """Combining state of _SliceUpdatesFn: folds each new event into the slice's progress.

    Runners keep the accumulator in memory through a bundle and encode it once at its
    end; a read-modify-write state would be encoded on every event."""

    def create_accumulator(self) -> _SliceProgress:
        return _SliceProgress()

    def add_input(self, progress: _SliceProgress, item) -> _SliceProgress:
        if isinstance(item, _Rebuilt):
            event, progress.builder = item.event, item.builder
        else:
            event, effect = item
            progress.builder.add(event, effect)
        if event.kind == "retraction":
            progress.live.discard(event.event_id)
        else:
            progress.live.add(event.event_id)
        progress.version += 1
        return progress

    def merge_accumulators(self, accumulators):
        # A runner merges only when it holds more than one encoded accumulator of a key and
        # window; there is no order to rebuild from here, so keep the most advanced one.
        return max(accumulators, key=lambda progress: progress.version)

    def extract_output(self, progress: _SliceProgress) -> _SliceProgress:
        return progress


class _SliceUpdatesFn(beam.DoFn):
    """(pool, event) in fixed slice windows → (pool, (version, SliceSummary)) at the end of
    every bundle that changed the slice. State lives until the allowed lateness has passed."""

    PROGRESS = CombiningValueStateSpec("progress", PickleCoder(), _FoldSlice())
    RAW = BagStateSpec("raw", PickleCoder())  # the distinct events, for a rebuild
    EXPIRE = TimerSpec("expire", TimeDomain.WATERMARK)

    def __init__(self, settings: PipelineSettings) -> None:
        self._settings = settings
        self._changed: dict[tuple[str, window.BoundedWindow], _SliceProgress] = {}

    def start_bundle(self) -> None:
        self._changed = {}

    def process(
        self,
        element,
        win=beam.DoFn.WindowParam,
        progress=beam.DoFn.StateParam(PROGRESS),
        raw=beam.DoFn.StateParam(RAW),
        expire=beam.DoFn.TimerParam(EXPIRE),
    ):
        key, event = element
        state = progress.read()
        if not state.changes(event):
            beam.metrics.Metrics.counter("dexwatch", "duplicate_events").inc()
            return
        try:
            # Worked out before the state changes: an event that cannot be read is turned
            # away whole.
            effect = None if event.kind == "retraction" else effect_of(event)
            if state.builder is None or state.needs_rebuild(event):
                rebuilt = _rebuild(state, event, raw.read(), int(win.start))
        except (ValueError, ArithmeticError) as err:
            yield dead_letter_of("features", f"unreadable {event.event}: {err}", event)
            return
        if state.builder is None or state.needs_rebuild(event):
            progress.add(_Rebuilt(event, rebuilt))
        else:
            progress.add((event, effect))
        if event.kind == "event":
            raw.add(event)
        expire.set(win.end + self._settings.allowed_lateness_s)
        self._changed[(key, win)] = state

    def finish_bundle(self):
        for (key, win), state in self._changed.items():
            if state.builder is not None:
                summary = dataclasses.replace(
                    state.builder.summary, trader_volume=dict(state.builder.summary.trader_volume)
                )
                yield WindowedValue((key, (state.version, summary)), win.max_timestamp(), (win,))
        self._changed = {}

    @on_timer(EXPIRE)
    def expire(
        self, progress=beam.DoFn.StateParam(PROGRESS), raw=beam.DoFn.StateParam(RAW)
    ) -> None:
        progress.clear()
        raw.clear()


def _rebuild(state: _SliceProgress, event: PoolEvent, raw, start: int) -> SliceBuilder:
    """The slice's builder from its counted raw events and the new one, in chain order."""
    live = set(state.live)
    distinct = {e.event_id: e for e in raw}
    if event.kind == "retraction":
        live.discard(event.event_id)
    else:
        live.add(event.event_id)
        distinct[event.event_id] = event
    builder = SliceBuilder(event.pool, start)
    for counted in sorted(distinct.values(), key=chain_position):
        if counted.event_id in live:
            builder.add(counted)
    return builder


class _PoolWindowsFn(beam.DoFn):
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
        known: _PoolSlices = slices_state.read() or _PoolSlices()
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
        known: _PoolSlices | None = slices_state.read()
        if not known or not known.slices:
            return
        window_end = int(now.seconds())
        newest_end = max(known.slices) + s.slice_s
        yield from self._rows(key, known, [window_end])
        if window_end + s.slice_s < newest_end + s.current_slices * s.slice_s:
            tail.set(Timestamp(window_end + s.slice_s))

    def _rows(self, key: str, known: _PoolSlices, window_ends):
        s = self._settings
        ordered = sorted((held for _, held in known.slices.values()), key=lambda x: x.start)
        first_end = self._first_end(key)
        for window_end in window_ends:
            if window_end < first_end:
                continue
            in_window = [x for x in ordered if window_end - self._span <= x.start < window_end]
            yield from _guarded_row(key, window_end, in_window, s)

    def _prune_time(self, known: _PoolSlices) -> Timestamp:
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
        known: _PoolSlices = slices_state.read()
        # Slices that ended more than the allowed lateness ago take no more updates; the
        # slices before them stay while a window of those may still change.
        known.horizon = int(now.seconds()) - s.allowed_lateness_s - s.slice_s
        first_needed = known.horizon - self._span + s.slice_s
        # The windows after the newest slice need its span, whatever the order timers fire in.
        first_needed = min(first_needed, max(known.slices) + s.slice_s - self._span)
        known.slices = {start: v for start, v in known.slices.items() if start >= first_needed}
        slices_state.write(known)
        # Slices kept for the newest slice's windows wait for newer data to re-arm this.
        if self._prune_time(known) > now:
            prune.set(self._prune_time(known))


@dataclasses.dataclass
class _PoolSlices:
    slices: dict[int, tuple[int, SliceSummary]] = dataclasses.field(default_factory=dict)
    horizon: int = 0  # updates of slices that start before this come too late


def _guarded_row(key: str, window_end: int, slices: list[SliceSummary], s: PipelineSettings):
    """feature_row, or a dead letter naming the window if its features cannot be worked out."""
    try:
        row = feature_row(key, window_end, slices, s)
    except (ValueError, ArithmeticError) as err:
        yield dead_letter_of(
            "features", f"window {key}:{window_end}: {err}", {"pool": key, "window_end": window_end}
        )
        return
    if row is not None:
        yield row


# A PoolEvent as a plain tuple crosses a shuffle with Beam's fast coder instead of pickle.
_event_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(PoolEvent)))


def _slice_key(event: PoolEvent, slice_s: int) -> tuple[tuple[str, int], tuple]:
    return (pool_key(event), event.block_timestamp // slice_s * slice_s), _event_fields(event)


def _summarize_slice_events(element):
    """((pool, slice start), event tuples) → (pool, SliceSummary) of the counted events
    (batch admission passes only those; a retraction still cancels its event, and
    copies count once); an event whose amounts cannot be read → a dead letter."""
    (key, start), rows = element
    latest: dict[str, PoolEvent] = {}
    for row in rows:
        event = PoolEvent(*row)
        if event.kind == "retraction" or event.event_id not in latest:
            latest[event.event_id] = event
    builder = SliceBuilder(key.rsplit(":", 1)[1], start)
    for event in sorted(latest.values(), key=chain_position):
        if event.kind != "event":
            continue
        try:
            effect = effect_of(event)
        except (ValueError, ArithmeticError) as err:
            yield dead_letter_of("features", f"unreadable {event.event}: {err}", event)
            continue
        builder.add(event, effect)
    yield key, builder.summary


def _pool_windows(element, s: PipelineSettings):
    """Every window of one pool, from its slices in time order (batch): a sliding pass over
    the sorted slices instead of a copy of each slice per window."""
    key, slices = element
    ordered = sorted(slices, key=lambda summary: summary.start)
    span = (s.current_slices + s.baseline_slices) * s.slice_s
    first_end = ordered[0].start + s.slice_s
    last_end = ordered[-1].start + span
    low = high = 0
    for window_end in range(first_end, last_end + 1, s.slice_s):
        while high < len(ordered) and ordered[high].start < window_end:
            high += 1
        while ordered[low].start < window_end - span:
            low += 1
        yield from _guarded_row(key, window_end, ordered[low:high], s)


class PoolWindowFeatures(beam.PTransform):
    """Admitted PoolEvents timestamped with their block time → outputs ``main`` (feature
    rows, dicts) and ``dead_letters`` (events or windows that could not be read).

    Streaming keeps per-pool state (see the module's docstring). Batch (replay, backfill,
    training data) groups each (pool, slice)'s events, summarises them with the same
    SliceBuilder, then makes one sliding pass over each pool's sorted slices with the same
    feature_row: every window is complete, so no state or timers are needed.

    Args:
        settings: slices, windows and lateness.
        streaming: per-pool state and timers, or complete slices (batch).
        final_before: streaming: a pool's (chain_id:pool) windows ending at or before this
            (unix s) are not emitted again (a resumed run replaying its journal).
    """

    def __init__(
        self,
        settings: PipelineSettings,
        streaming: bool = True,
        final_before: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self._settings = settings
        self._streaming = streaming
        self._final_before = final_before

    def expand(self, events):
        rows = self._streaming_rows(events) if self._streaming else self._batch_rows(events)
        # Each row names its window; in the global window downstream, RunInference batches
        # rows of many windows into one call and alert threads span windows.
        letters = (
            rows.slices[DEAD_LETTERS]
            | "SliceDeadInGlobalWindow" >> beam.WindowInto(window.GlobalWindows()),
            rows.windows[DEAD_LETTERS],
        ) | "AllDead" >> beam.Flatten()
        return {
            "main": rows.windows.main
            | "IntoGlobalWindow" >> beam.WindowInto(window.GlobalWindows()),
            DEAD_LETTERS: letters,
        }

    def _streaming_rows(self, events) -> _Stages:
        s = self._settings
        slices = (
            events
            | "KeyByPool" >> beam.Map(lambda event: (pool_key(event), event))
            | "Slices" >> beam.WindowInto(window.FixedWindows(s.slice_s))
            | "SliceUpdates"
            >> beam.ParDo(_SliceUpdatesFn(s)).with_outputs(DEAD_LETTERS, main="main")
        )
        windows = (
            slices.main
            | "AllTime" >> beam.WindowInto(window.GlobalWindows())
            | "WindowFeatures"
            >> beam.ParDo(_PoolWindowsFn(s, self._final_before)).with_outputs(
                DEAD_LETTERS, main="main"
            )
        )
        return _Stages(slices, windows)

    def _batch_rows(self, events) -> _Stages:
        s = self._settings
        slices = (
            events
            | "KeyBySlice" >> beam.Map(_slice_key, s.slice_s)
            | "GroupBySlice" >> beam.GroupByKey()
            | "SummarizeSlices"
            >> beam.FlatMap(_summarize_slice_events).with_outputs(DEAD_LETTERS, main="main")
        )
        windows = (
            slices.main
            | "GroupByPool" >> beam.GroupByKey()
            | "WindowFeatures"
            >> beam.FlatMap(_pool_windows, s).with_outputs(DEAD_LETTERS, main="main")
        )
        return _Stages(slices, windows)


@dataclasses.dataclass(frozen=True)
class _Stages:
    slices: beam.pvalue.DoOutputsTuple
    windows: beam.pvalue.DoOutputsTuple
