"""The hourly branch: pool-hourly messages → one feature row per pool and hour, the
13-number vector of ``dexwatch/core/features/hourly.py``.

Streaming keeps each pool's recent hours in state (``_PoolHoursFn``): a redelivered hour is
dropped, a newer version of an hour (further indexed) replaces the one held, and every hour
whose history it belongs to (itself and the 24 after it) is computed again. Rows have a
natural id and the sinks upsert, so a recomputed row replaces the earlier one: out-of-order
and late hours settle on the rows an in-order stream gives. Batch (replay) computes the same
rows from each pool's whole series.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from beam_pipelines.transforms.parse import DEAD_LETTERS, ParseMessages, dead_letter_of
from dexwatch.core.features.hourly import (
    HISTORY_HOURS,
    hourly_features,
    latest_versions,
    supersedes,
)
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour

SOURCE = "subgraph"


def hour_pool_key(hour: PoolHour) -> str:
    return f"{hour.chain_id}:{hour.dex}:{hour.pool}"


def written_key(hour: PoolHour) -> str:
    """The pool as the warehouse names it (chain_id:pool), for resuming."""
    return f"{hour.chain_id}:{hour.pool}"


def hourly_row(hour: PoolHour, features: dict[str, float]) -> dict:
    """A pool_scores row (before scoring) of one hour; the chain features stay empty."""
    return {
        # Marked: a chain window may end exactly at an hour's start.
        "window_id": f"{hour.hour_id}:hour",
        "chain_id": hour.chain_id,
        "dex": hour.dex,
        "pool": hour.pool,
        "source": SOURCE,
        "window_start": datetime.fromtimestamp(hour.hour_start, UTC),
        "window_end": datetime.fromtimestamp(hour.hour_end, UTC),
        "events": hour.tx_count,
        **features,
    }


def _hour_end(hour: PoolHour) -> int:
    return hour.hour_end


class ParsePoolHours(ParseMessages):
    """pool-hourly messages → ``main`` (PoolHour) and ``dead_letters`` (the same table as the
    chain path's), stamped with the hour's end when asked."""

    def __init__(self, stamp_event_time: bool = False, max_ahead_s: int | None = None) -> None:
        super().__init__(
            PoolHour.from_json, _hour_end, "parse-hourly", stamp_event_time, max_ahead_s
        )


class _PoolHoursFn(beam.DoFn):
    """(pool, PoolHour) → the rows of the hours the arrival changes. State per pool: its
    hours by start, back to the history of the oldest hour that may still be replaced."""

    HOURS = ReadModifyWriteStateSpec("hours", PickleCoder())

    def __init__(self, allowed_lateness_h: int, final_before: dict[str, int] | None = None) -> None:
        self._lateness_s = allowed_lateness_h * HOUR_S
        self._keep_s = (allowed_lateness_h + HISTORY_HOURS) * HOUR_S
        self._final_before = final_before or {}

    def process(self, element, hours_state=beam.DoFn.StateParam(HOURS)):
        _, hour = element
        held: dict[int, PoolHour] = hours_state.read() or {}
        newest = max(held, default=hour.hour_start)
        if hour.hour_start < newest - self._lateness_s:
            # Its history has left the state: it could not be computed right.
            beam.metrics.Metrics.counter("dexwatch", "hours_too_late").inc()
            return []
        if not supersedes(hour, held.get(hour.hour_start)):
            beam.metrics.Metrics.counter("dexwatch", "duplicate_hours").inc()
            return []
        held[hour.hour_start] = hour
        horizon = max(newest, hour.hour_start) - self._keep_s
        held = {start: h for start, h in held.items() if start >= horizon}
        hours_state.write(held)
        if hour.hour_end <= self._final_before.get(written_key(hour), -1):
            return []  # a resumed run replaying its journal: the previous run wrote these rows
        return list(_rows_from(held, hour.hour_start))


def _rows_from(held: dict[int, PoolHour], changed_start: int):
    """The rows of the held hour starting at ``changed_start`` and of the ones whose 24-hour
    history it is part of, in hour order."""
    last = changed_start + HISTORY_HOURS * HOUR_S
    for start in sorted(s for s in held if changed_start <= s <= last):
        yield from _guarded_row(held[start], held.values())


def _guarded_row(hour: PoolHour, history: Iterable[PoolHour]):
    """The hour's row, or a dead letter if its features cannot be worked out (a sum of
    squares beyond a float, say)."""
    try:
        features = hourly_features(hour, history)
    except (ValueError, ArithmeticError) as err:
        yield dead_letter_of("features-hourly", f"hour {hour.hour_id}: {err}", hour)
        return
    if features is not None:
        yield hourly_row(hour, features)


def _series_rows(element: tuple[str, Iterable[PoolHour]]):
    _, hours = element
    ordered = sorted(latest_versions(list(hours)).values(), key=lambda h: h.hour_start)
    for i, hour in enumerate(ordered):
        history = ordered[max(0, i - HISTORY_HOURS) : i]
        yield from _guarded_row(hour, history)


class PoolHourFeatures(beam.PTransform):
    """PoolHours → hourly feature rows (dicts with the 13 features), in the global window.

    Streaming: per-pool state, rows as hours arrive (recomputed when an earlier hour comes
    late or in a newer version); hours ending at or before their pool's ``final_before``
    (``written_key`` → unix s: a resumed run replaying its journal) only rebuild the state.
    Batch: each pool's whole series at once."""

    def __init__(
        self,
        allowed_lateness_h: int,
        streaming: bool = True,
        final_before: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self._allowed_lateness_h = allowed_lateness_h
        self._streaming = streaming
        self._final_before = final_before

    def expand(self, hours):
        keyed = hours | "KeyByPool" >> beam.Map(
            lambda hour: (hour_pool_key(hour), hour)
        ).with_output_types(beam.typehints.Tuple[str, beam.typehints.Any])
        if self._streaming:
            rows = keyed | "PoolHours" >> beam.ParDo(
                _PoolHoursFn(self._allowed_lateness_h, self._final_before)
            ).with_outputs(DEAD_LETTERS, main="main")
        else:
            rows = (
                keyed
                | "GroupByPool" >> beam.GroupByKey()
                | "SeriesRows" >> beam.FlatMap(_series_rows).with_outputs(DEAD_LETTERS, main="main")
            )
        return {"main": rows.main, DEAD_LETTERS: rows[DEAD_LETTERS]}
