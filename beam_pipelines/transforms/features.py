"""Pool events → one feature row per pool and window (definitions in contracts/features).

Two stages, both in event time with early panes, so an incident shows within seconds rather
than at a window's end, and late events (within the allowed lateness) still correct a window:

1. Fixed slices per pool: a CombineFn keyed by event id drops duplicates and lets a
   retraction cancel the event it retracts, then summarises what is left.
2. Sliding windows of slices: the latest pane of each slice wins; the last
   ``current_slices`` slices are compared with the ones before them.

Panes accumulate, so every firing carries the whole window; rows have a natural id and the
sinks upsert, so a later pane replaces an earlier one.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.transforms import trigger, window

from dexwatch.contracts.features import SliceSummary, summarize_slice, window_features
from dexwatch.contracts.pool_event import PoolEvent
from dexwatch.settings import PipelineSettings


def _triggered(windowing: window.WindowFn, settings: PipelineSettings) -> beam.WindowInto:
    return beam.WindowInto(
        windowing,
        trigger=trigger.AfterWatermark(
            early=trigger.AfterProcessingTime(settings.early_firing_s),
            late=trigger.AfterCount(1),
        ),
        accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
        allowed_lateness=settings.allowed_lateness_s,
    )


def pool_key(event: PoolEvent) -> str:
    return f"{event.chain_id}:{event.dex}:{event.pool}"


class SliceCombineFn(beam.CombineFn):
    """Events of one pool and slice → SliceSummary of the distinct, non-retracted ones."""

    def __init__(self, slice_s: int) -> None:
        self._slice_s = slice_s

    def create_accumulator(self) -> dict[str, PoolEvent]:
        return {}

    def add_input(self, accumulator: dict[str, PoolEvent], event: PoolEvent):
        known = accumulator.get(event.event_id)
        # A retraction wins over its event whichever arrives first; duplicates are dropped.
        if known is None or event.kind == "retraction":
            accumulator[event.event_id] = event
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: dict[str, PoolEvent] = {}
        for accumulator in accumulators:
            for event in accumulator.values():
                self.add_input(merged, event)
        return merged

    def extract_output(self, accumulator: dict[str, PoolEvent]) -> SliceSummary | None:
        if not accumulator:
            return None
        any_event = next(iter(accumulator.values()))
        start = any_event.block_timestamp // self._slice_s * self._slice_s
        live = [e for e in accumulator.values() if e.kind == "event"]
        return summarize_slice(any_event.pool, start, live)


class _VersionSlice(beam.DoFn):
    """Tags each slice pane with its index: later panes of a slice supersede earlier ones."""

    def process(self, element, pane_info=beam.DoFn.PaneInfoParam):
        key, summary = element
        if summary is not None:
            yield key, (pane_info.index, summary)


class LatestSlicesFn(beam.CombineFn):
    """Versioned slices of one pool and window → the latest version of each slice.

    A CombineFn rather than a GroupByKey: runners combine each bundle's slices before the
    shuffle, so a slice copied into every sliding window it belongs to stays cheap."""

    def create_accumulator(self) -> dict[int, tuple[int, SliceSummary]]:
        return {}

    def add_input(self, accumulator, versioned):
        index, summary = versioned
        known = accumulator.get(summary.start)
        if known is None or index >= known[0]:
            accumulator[summary.start] = (index, summary)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: dict[int, tuple[int, SliceSummary]] = {}
        for accumulator in accumulators:
            for versioned in accumulator.values():
                self.add_input(merged, versioned)
        return merged

    def extract_output(self, accumulator) -> list[SliceSummary]:
        return [summary for _, summary in accumulator.values()]


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


class _StreamingFeaturesFn(beam.DoFn):
    def __init__(self, settings: PipelineSettings) -> None:
        self._settings = settings

    def process(self, element, win=beam.DoFn.WindowParam):
        key, slices = element
        row = feature_row(key, int(math.floor(win.end)), slices, self._settings)
        if row is not None:
            yield row


def _slice_key(event: PoolEvent, slice_s: int) -> tuple[tuple[str, int], PoolEvent]:
    return (pool_key(event), event.block_timestamp // slice_s * slice_s), event


def _by_pool(element):
    (key, _), summary = element
    if summary is not None:
        yield key, summary


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
        row = feature_row(key, window_end, ordered[low:high], s)
        if row is not None:
            yield row


class PoolWindowFeatures(beam.PTransform):
    """PoolEvents timestamped with their block time → feature rows (dicts).

    Streaming uses Beam's event-time windows and triggers (early panes, lateness). Batch
    (replay, backfill, training data) runs the same slice CombineFn and feature_row on
    explicit (pool, slice) keys in the global window, then one sliding pass over each pool's
    sorted slices: every window is complete, and the batch runner skips its per-window
    trigger bookkeeping, which grows with the square of a pool's windows.
    """

    def __init__(self, settings: PipelineSettings, streaming: bool = True) -> None:
        super().__init__()
        self._settings = settings
        self._streaming = streaming

    def expand(self, events):
        rows = self._streaming_rows(events) if self._streaming else self._batch_rows(events)
        # Each row names its window; in the global window downstream, RunInference batches
        # rows of many windows into one call and alert threads span windows.
        return rows | "IntoGlobalWindow" >> beam.WindowInto(window.GlobalWindows())

    def _streaming_rows(self, events):
        s = self._settings
        length = (s.current_slices + s.baseline_slices) * s.slice_s
        return (
            events
            | "KeyByPool" >> beam.Map(lambda event: (pool_key(event), event))
            | "Slices" >> _triggered(window.FixedWindows(s.slice_s), s)
            | "SummarizeSlices" >> beam.CombinePerKey(SliceCombineFn(s.slice_s))
            | "VersionSlices" >> beam.ParDo(_VersionSlice())
            | "Windows" >> _triggered(window.SlidingWindows(length, s.slice_s), s)
            | "LatestSlices" >> beam.CombinePerKey(LatestSlicesFn())
            | "WindowFeatures" >> beam.ParDo(_StreamingFeaturesFn(s))
        )

    def _batch_rows(self, events):
        s = self._settings
        return (
            events
            | "KeyBySlice" >> beam.Map(_slice_key, s.slice_s)
            | "SummarizeSlices" >> beam.CombinePerKey(SliceCombineFn(s.slice_s))
            | "ByPool" >> beam.FlatMap(_by_pool)
            | "GroupByPool" >> beam.GroupByKey()
            | "WindowFeatures" >> beam.FlatMap(_pool_windows, s)
        )
