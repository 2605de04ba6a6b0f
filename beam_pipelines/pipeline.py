"""Builds the dexwatch pipeline without running it, so tests, the local runner and the
Dataflow launcher all build the same graph.

    pool-events → Parse ─→ AdmitEvents ─┬→ PoolWindowFeatures → ScoreWindows ─┐
                                        ├→ pools     └ slices ┐               ├┬→ pool_scores
                                        └──────────→ WatchMarket (market)     ││
    pool-hourly → ParseHours ─→ PoolHourFeatures → ScoreWindows ──────────────┘│
    (pipeline.hourly)                                   ThreadAnomalies ←──────┘
                                    (findings →)          ├→ anomalies
                                                          ├→ market_events
                                                          └→ alerts
    every step's rejects → dead_letters

The hourly branch (``pipeline.hourly``) scores its rows with the hourly model and merges
them with the chain windows before the sinks: the same tables (``source`` tells them
apart) and one alert-threading step, so an incident both paths flag is one alert thread.
With ``market.assets`` configured, ``WatchMarket`` prices the chain's assets together from
every pool's slices; its findings (a market-wide move, a depeg) open threads of their own
that take the pools' anomalies they explain (transforms.threads).
Every step that can fail on one element sends it to ``dead_letters`` with its stage and
reason and goes on: no element can stop the job or make a runner retry it forever.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.transforms.admission import POOLS, AdmitEvents
from beam_pipelines.transforms.features import PoolWindowFeatures
from beam_pipelines.transforms.hourly import ParsePoolHours, PoolHourFeatures
from beam_pipelines.transforms.market import PEG_POOL, WatchMarket
from beam_pipelines.transforms.parse import DEAD_LETTERS, ParsePoolEvents
from beam_pipelines.transforms.scoring import ScoreWindows, hourly_model_handler, model_handler
from beam_pipelines.transforms.sinks import WriteTable, alert_messages
from beam_pipelines.transforms.threads import ThreadAnomalies
from dexwatch.core.features.hourly import HOURLY_FEATURE_NAMES
from dexwatch.core.schemas.pool_event import EVENT_TIME_ATTRIBUTE
from dexwatch.core.schemas.tables import ANOMALIES, MARKET_EVENTS, POOL_SCORES
from dexwatch.core.schemas.tables import DEAD_LETTERS as DEAD_LETTERS_TABLE
from dexwatch.core.schemas.tables import POOLS as POOLS_TABLE
from dexwatch.core.schemas.topics import (
    ALERTS,
    PIPELINE_SUBSCRIPTION,
    POOL_HOURLY_SUBSCRIPTION,
    subscription_path,
    topic_path,
)
from dexwatch.core.settings import Settings


@dataclasses.dataclass(frozen=True)
class Detected:
    """What ``detect`` leaves for the caller to route: the alerts, and the dead letters of
    every step after parsing."""

    alerts: beam.PCollection
    dead_letters: list[beam.PCollection]


def detect(
    events,
    settings: Settings,
    streaming: bool,
    handler=None,
    final_before: dict[str, int] | None = None,
    window_ends: tuple[int, int] | None = None,
    hours=None,
    hourly_handler=None,
    hours_final_before: dict[str, int] | None = None,
) -> Detected:
    """The detector on pool events and, if given, PoolHours (timestamped by hour end):
    writes pools, scores and anomalies of both and returns the alerts and dead letters.

    Args:
        events: streaming: PoolEvents timestamped by block time; batch: (order, PoolEvent)
            pairs, the order being the recording's (duplicates and retractions resolve by
            it). Announcements included.
        settings: the pipeline's settings.
        streaming: per-key state and timers, or complete data in batch.
        handler, hourly_handler: model handlers (default: the configured ones).
        final_before: chain_id:pool → unix s: the pool's windows ending at or before it are
            not emitted again (a resumed run replaying its journal).
        window_ends: (first, last): only windows and hours ending in (first, last] are
            scored (a backfill's range).
        hours: PoolHours, or None without the hourly branch.
        hours_final_before: chain_id:pool → unix s: hours ending at or before it only
            rebuild the hourly state.
    """
    scored = []
    letters = []
    findings = None
    if events is not None:
        admitted = events | "Admit" >> AdmitEvents(settings.pipeline, streaming)
        admitted[POOLS] | "WritePools" >> WriteTable(settings, POOLS_TABLE)
        features = admitted["main"] | "Features" >> PoolWindowFeatures(
            settings.pipeline, streaming, final_before
        )
        rows = features["main"]
        if settings.markets.any_assets:
            findings = (admitted[POOLS], features["slices"]) | "Market" >> WatchMarket(
                settings.markets, settings.pipeline.slice_s, streaming
            )
            if window_ends is not None:
                findings = findings | "FindingsInRange" >> beam.Filter(
                    lambda row, *ends: row["kind"] == PEG_POOL or _ends_in(row, *ends),
                    *window_ends,
                )
        if window_ends is not None:
            rows = rows | "InRange" >> beam.Filter(_ends_in, *window_ends)
        chain = rows | "Score" >> ScoreWindows(handler or model_handler(settings))
        scored.append(chain["main"])
        letters += [admitted[DEAD_LETTERS], features[DEAD_LETTERS], chain[DEAD_LETTERS]]
    if hours is not None:
        hour_features = hours | "HourlyFeatures" >> PoolHourFeatures(
            settings.pipeline.hourly_allowed_lateness_h, streaming, hours_final_before
        )
        hour_rows = hour_features["main"]
        if window_ends is not None:
            hour_rows = hour_rows | "HoursInRange" >> beam.Filter(_ends_in, *window_ends)
        hourly = hour_rows | "ScoreHours" >> ScoreWindows(
            hourly_handler or hourly_model_handler(settings), HOURLY_FEATURE_NAMES
        )
        scored.append(hourly["main"])
        letters += [hour_features[DEAD_LETTERS], hourly[DEAD_LETTERS]]
    all_scored = scored[0] if len(scored) == 1 else scored | "BothSources" >> beam.Flatten()
    all_scored | "WriteScores" >> WriteTable(settings, POOL_SCORES)
    threads = ThreadAnomalies(
        settings.pipeline.alert_cooldown_s, streaming, hold_s=market_hold_s(settings)
    )
    threaded = (all_scored if findings is None else (all_scored, findings)) | "Threads" >> threads
    threaded.anomalies | "WriteAnomalies" >> WriteTable(settings, ANOMALIES)
    threaded.market_events | "WriteMarketEvents" >> WriteTable(settings, MARKET_EVENTS)
    return Detected(threaded.alerts, letters)


def market_hold_s(settings: Settings) -> int:
    """How long (event time) an anomaly the market may explain waits for the market's view:
    one slice more than its own, so that a move spread over a slice boundary is seen whole."""
    return settings.pipeline.slice_s + 1


def _write_dead_letters(settings: Settings, letters: list) -> None:
    (
        letters
        | "AllDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteTable(settings, DEAD_LETTERS_TABLE)
    )


def build_streaming_pipeline(
    settings: Settings,
    options: PipelineOptions,
    handler=None,
    final_before: dict[str, int] | None = None,
    hourly_handler=None,
    hours_final_before: dict[str, int] | None = None,
) -> beam.Pipeline:
    """Pub/Sub pool-events (and pool-hourly, with ``pipeline.hourly``) → tables and the
    alerts topic, following the stream. The model handlers default to the configured ones
    (model.serving); see ``detect`` for final_before and hours_final_before."""
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    project = settings.pubsub.project
    max_ahead_s = settings.pipeline.max_event_ahead_s
    # The shared topic's subscription, then those of the chains with topics of their own
    # (chain.own_topic), each read by its own step (the shared one keeps its name for
    # Dataflow's --update).
    reads = [
        pipeline
        | (f"ReadPoolEvents[{name}]" if name != PIPELINE_SUBSCRIPTION else "ReadPoolEvents")
        >> beam.io.ReadFromPubSub(
            subscription=subscription_path(project, name),
            with_attributes=True,
            timestamp_attribute=EVENT_TIME_ATTRIBUTE,
        )
        for name in settings.event_subscriptions(PIPELINE_SUBSCRIPTION)
    ]
    messages = reads[0] if len(reads) == 1 else reads | "AllPoolEvents" >> beam.Flatten()
    parsed = messages | "Parse" >> ParsePoolEvents(max_ahead_s=max_ahead_s)
    hours = None
    letters = [parsed[DEAD_LETTERS]]
    if settings.pipeline.hourly:
        parsed_hours = (
            pipeline
            | "ReadPoolHours"
            >> beam.io.ReadFromPubSub(
                subscription=subscription_path(project, POOL_HOURLY_SUBSCRIPTION),
                with_attributes=True,
                timestamp_attribute=EVENT_TIME_ATTRIBUTE,
            )
            | "ParseHours" >> ParsePoolHours(max_ahead_s=max_ahead_s)
        )
        hours = parsed_hours.main
        letters.append(parsed_hours[DEAD_LETTERS])
    detected = detect(
        parsed.main,
        settings,
        streaming=True,
        handler=handler,
        final_before=final_before,
        hours=hours,
        hourly_handler=hourly_handler,
        hours_final_before=hours_final_before,
    )
    _write_dead_letters(settings, letters + detected.dead_letters)
    (
        detected.alerts
        | "AlertMessages" >> beam.FlatMap(alert_messages, settings.pipeline.alert_v1_until)
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
    letters = []
    if events_file is not None:
        parsed = _read_recording(pipeline, events_file)
        events = parsed.main
        letters.append(parsed[DEAD_LETTERS])
    if hours_file is not None:
        parsed_hours = (
            pipeline
            | "ReadRecordedHours"
            >> beam.io.ReadFromText(str(hours_file), coder=beam.coders.BytesCoder())
            | "ParseHours" >> ParsePoolHours(stamp_event_time=True)
        )
        hours = parsed_hours.main
        letters.append(parsed_hours[DEAD_LETTERS])
    detected = detect(
        events,
        settings,
        streaming=False,
        handler=handler,
        window_ends=window_ends,
        hours=hours,
        hourly_handler=hourly_handler,
    )
    _write_dead_letters(settings, letters + detected.dead_letters)
    return pipeline


def build_feature_pipeline(
    settings: Settings, options: PipelineOptions, events_file: Path, output_prefix: Path
) -> beam.Pipeline:
    """A recorded stream → feature rows as JSON lines (training data for the detector): the
    same admission and features as the detector's."""
    pipeline = beam.Pipeline(options=options)
    admitted = _read_recording(pipeline, events_file).main | "Admit" >> AdmitEvents(
        settings.pipeline, streaming=False
    )
    features = admitted["main"] | "Features" >> PoolWindowFeatures(
        settings.pipeline, streaming=False
    )
    (
        features["main"]
        | "ToJson" >> beam.Map(lambda row: orjson.dumps(row).decode())
        | "WriteFeatures" >> beam.io.WriteToText(str(output_prefix), file_name_suffix=".jsonl")
    )
    return pipeline


def _ends_in(row: dict, first: int, last: int) -> bool:
    return first < row["window_end"].timestamp() <= last


def _numbered_lines(path: str):
    """(line number, line) of a recording: the order its duplicates and retractions
    resolve by."""
    with open(path, "rb") as lines:
        for number, line in enumerate(lines):
            line = line.rstrip(b"\n")
            if line:
                yield number, line


def _read_recording(pipeline: beam.Pipeline, events_file: Path):
    """A recording (JSON lines of pool-event messages) → (line number, event) pairs,
    stamped with their block time, and dead letters."""
    return (
        pipeline
        | "Recording" >> beam.Create([str(events_file)])
        | "ReadRecorded" >> beam.FlatMap(_numbered_lines)
        | "Parse" >> ParsePoolEvents(stamp_event_time=True)
    )
