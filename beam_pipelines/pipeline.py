"""Builds the dexwatch pipeline without running it, so tests, the local runner and the
Dataflow launcher all build the same graph.

    pool-events → Parse ──────┬→ PoolWindowFeatures → ScoreWindows ─┐
                              └→ dead_letters                       ├┬→ pool_scores
    pool-hourly → ParseHours ─┬→ PoolHourFeatures → ScoreWindows ───┘└→ ThreadAnomalies ┬→ anomalies
    (pipeline.hourly)         └→ dead_letters                           (per pool)      └→ alerts

The hourly branch (``pipeline.hourly``) scores its rows with the hourly model and merges
them with the chain windows before the sinks: the same tables (``source`` tells them
apart) and one alert-threading step, so an incident both paths flag is one alert thread.
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.transforms.features import PoolWindowFeatures
from beam_pipelines.transforms.hourly import ParsePoolHours, PoolHourFeatures
from beam_pipelines.transforms.parse import DEAD_LETTERS, ParsePoolEvents
from beam_pipelines.transforms.scoring import ScoreWindows, hourly_model_handler, model_handler
from beam_pipelines.transforms.sinks import ThreadAnomalies, WriteTable, alert_message
from dexwatch.contracts.hourly_features import HOURLY_FEATURE_NAMES
from dexwatch.contracts.pool_event import EVENT_TIME_ATTRIBUTE
from dexwatch.contracts.tables import ANOMALIES, POOL_SCORES
from dexwatch.contracts.tables import DEAD_LETTERS as DEAD_LETTERS_TABLE
from dexwatch.contracts.topics import (
    ALERTS,
    PIPELINE_SUBSCRIPTION,
    POOL_HOURLY_SUBSCRIPTION,
    subscription_path,
    topic_path,
)
from dexwatch.settings import Settings


def detect(
    events,
    settings: Settings,
    streaming: bool,
    handler=None,
    final_before: int | None = None,
    window_ends: tuple[int, int] | None = None,
    hours=None,
    hourly_handler=None,
    hours_final_before: dict[str, int] | None = None,
):
    """The detector on PoolEvents (timestamped by block time) and, if given, PoolHours
    (timestamped by hour end): writes scores and anomalies of both and returns the alerts
    (an Alert PCollection). Windows ending at or before ``final_before`` (unix s) are not
    emitted again (a resumed run replaying its journal); likewise, hours ending at or before
    their pool's ``hours_final_before`` (chain_id:pool → unix s) only rebuild the hourly
    state. With ``window_ends`` (first, last), only windows and hours ending in
    (first, last] are scored (a backfill's range)."""
    scored = None
    if events is not None:
        rows = events | "Features" >> PoolWindowFeatures(settings.pipeline, streaming, final_before)
        if window_ends is not None:
            rows = rows | "InRange" >> beam.Filter(_ends_in, *window_ends)
        scored = rows | "Score" >> ScoreWindows(handler or model_handler(settings))
    if hours is not None:
        hour_rows = hours | "HourlyFeatures" >> PoolHourFeatures(
            settings.pipeline.hourly_allowed_lateness_h, streaming, hours_final_before
        )
        if window_ends is not None:
            hour_rows = hour_rows | "HoursInRange" >> beam.Filter(_ends_in, *window_ends)
        scored_hours = hour_rows | "ScoreHours" >> ScoreWindows(
            hourly_handler or hourly_model_handler(settings), HOURLY_FEATURE_NAMES
        )
        scored = (
            scored_hours
            if scored is None
            else (scored, scored_hours) | "BothSources" >> beam.Flatten()
        )
    scored | "WriteScores" >> WriteTable(settings, POOL_SCORES)
    threaded = scored | "Threads" >> ThreadAnomalies(settings.pipeline.alert_cooldown_s)
    threaded.anomalies | "WriteAnomalies" >> WriteTable(settings, ANOMALIES)
    return threaded.alerts


def build_streaming_pipeline(
    settings: Settings,
    options: PipelineOptions,
    handler=None,
    final_before: int | None = None,
    hourly_handler=None,
    hours_final_before: dict[str, int] | None = None,
) -> beam.Pipeline:
    """Pub/Sub pool-events (and pool-hourly, with ``pipeline.hourly``) → tables and the
    alerts topic, following the stream. The model handlers default to the configured ones
    (model.serving); see ``detect`` for final_before and hours_final_before."""
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    project = settings.pubsub.project
    parsed = (
        pipeline
        | "ReadPoolEvents"
        >> beam.io.ReadFromPubSub(
            subscription=subscription_path(project, PIPELINE_SUBSCRIPTION),
            with_attributes=True,
            timestamp_attribute=EVENT_TIME_ATTRIBUTE,
        )
        | "Parse" >> ParsePoolEvents()
    )
    hours = None
    dead_letters = parsed[DEAD_LETTERS]
    if settings.pipeline.hourly:
        parsed_hours = (
            pipeline
            | "ReadPoolHours"
            >> beam.io.ReadFromPubSub(
                subscription=subscription_path(project, POOL_HOURLY_SUBSCRIPTION),
                with_attributes=True,
                timestamp_attribute=EVENT_TIME_ATTRIBUTE,
            )
            | "ParseHours" >> ParsePoolHours()
        )
        hours = parsed_hours.main
        dead_letters = (dead_letters, parsed_hours[DEAD_LETTERS]) | "AllDead" >> beam.Flatten()
    dead_letters | "WriteDeadLetters" >> WriteTable(settings, DEAD_LETTERS_TABLE)
    alerts = detect(
        parsed.main,
        settings,
        streaming=True,
        handler=handler,
        final_before=final_before,
        hours=hours,
        hourly_handler=hourly_handler,
        hours_final_before=hours_final_before,
    )
    (
        alerts
        | "AlertMessages" >> beam.Map(alert_message)
        | "PublishAlerts"
        >> beam.io.WriteToPubSub(topic_path(project, ALERTS), with_attributes=True)
    )
    return pipeline


def build_replay_pipeline(
    settings: Settings,
    options: PipelineOptions,
    events_file: Path | None,
    handler=None,
    window_ends: tuple[int, int] | None = None,
    hours_file: Path | None = None,
    hourly_handler=None,
) -> beam.Pipeline:
    """A recorded stream (JSON lines of pool-event messages, of pool-hourly messages, or
    both) → the same tables, in batch (only what ends in ``window_ends``, if given).
    Alerts are not published: a replay looks at the past."""
    if events_file is None and hours_file is None:
        raise ValueError("nothing to replay: give a recording of events, of hours or both")
    pipeline = beam.Pipeline(options=options)
    events = hours = None
    dead_letters = []
    if events_file is not None:
        parsed = _read_recording(pipeline, events_file)
        events = parsed.main
        dead_letters.append(parsed[DEAD_LETTERS])
    if hours_file is not None:
        parsed_hours = (
            pipeline
            | "ReadRecordedHours"
            >> beam.io.ReadFromText(str(hours_file), coder=beam.coders.BytesCoder())
            | "ParseHours" >> ParsePoolHours(stamp_event_time=True)
        )
        hours = parsed_hours.main
        dead_letters.append(parsed_hours[DEAD_LETTERS])
    (
        dead_letters
        | "AllDead" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteTable(settings, DEAD_LETTERS_TABLE)
    )
    detect(
        events,
        settings,
        streaming=False,
        handler=handler,
        window_ends=window_ends,
        hours=hours,
        hourly_handler=hourly_handler,
    )
    return pipeline


def build_feature_pipeline(
    settings: Settings, options: PipelineOptions, events_file: Path, output_prefix: Path
) -> beam.Pipeline:
    """A recorded stream → feature rows as JSON lines (training data for the detector)."""
    import orjson

    pipeline = beam.Pipeline(options=options)
    (
        _read_recording(pipeline, events_file).main
        | "Features" >> PoolWindowFeatures(settings.pipeline, streaming=False)
        | "ToJson" >> beam.Map(lambda row: orjson.dumps(row).decode())
        | "WriteFeatures" >> beam.io.WriteToText(str(output_prefix), file_name_suffix=".jsonl")
    )
    return pipeline


def _ends_in(row: dict, first: int, last: int) -> bool:
    return first < row["window_end"].timestamp() <= last


def _read_recording(pipeline: beam.Pipeline, events_file: Path):
    """A recording (JSON lines of pool-event messages) → parsed events, stamped with their
    block time, and dead letters."""
    return (
        pipeline
        | "ReadRecorded" >> beam.io.ReadFromText(str(events_file), coder=beam.coders.BytesCoder())
        | "Parse" >> ParsePoolEvents(stamp_event_time=True)
    )
