"""Pool events → one feature row per pool and window (definitions in dexwatch.core.features.chain).

Each pool's events are cut into fixed event-time slices; a window is the last
``current_slices`` slices (under test) and the ``baseline_slices`` before them.

Streaming keeps per-pool state and sends updates at the end of every bundle, so an incident
shows within seconds, and late events (within the allowed lateness) still correct a window:

1. ``_SliceUpdatesFn``, per pool and slice: drops duplicates, lets a retraction cancel the
   event it retracts, folds the rest into the slice's summary as they come, and sends the
   summary on at the end of each bundle that changed it.
2. ``PoolWindowsFn``, per pool: keeps the latest summary of its recent slices and emits
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

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms import window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    CombiningValueStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.utils.windowed_value import WindowedValue

from beam_pipelines.transforms.admission import pool_key
from beam_pipelines.transforms.parse import DEAD_LETTERS, dead_letter_of
from beam_pipelines.transforms.pool_windows import PoolWindowsFn, feature_row, pool_windows
from dexwatch.core.features.effects import effect_of
from dexwatch.core.features.slices import SliceBuilder, chain_position
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.settings import PipelineSettings

__all__ = ["PoolWindowFeatures", "feature_row", "pool_key"]


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
                # A copy of what the builder goes on changing: the summary sent is final.
                folded = state.builder.summary
                summary = dataclasses.replace(
                    folded,
                    trader_volume=dict(folded.trader_volume),
                    pending_liquidity=list(folded.pending_liquidity),
                    position_added=dict(folded.position_added),
                    position_removed=dict(folded.position_removed),
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


class PoolWindowFeatures(beam.PTransform):
    """Admitted PoolEvents timestamped with their block time → outputs ``main`` (feature
    rows, dicts), ``slices`` (the slice summaries the rows are made of, keyed by pool) and
    ``dead_letters`` (events or windows that could not be read).

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
            # Each pool's slice summaries as they change (streaming: with their version),
            # for the market view (transforms.market).
            "slices": rows.slices.main,
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
            >> beam.ParDo(PoolWindowsFn(s, self._final_before)).with_outputs(
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
            >> beam.FlatMap(pool_windows, s).with_outputs(DEAD_LETTERS, main="main")
        )
        return _Stages(slices, windows)


@dataclasses.dataclass(frozen=True)
class _Stages:
    slices: beam.pvalue.DoOutputsTuple
    windows: beam.pvalue.DoOutputsTuple
