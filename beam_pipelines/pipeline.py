"""Builds the dexwatch pipeline without running it, so tests, the local runner and the
Dataflow launcher all build the same graph.

    pool-events → Parse ─┬→ PoolWindowFeatures → ScoreWindows ─┬→ pool_scores
                         │                                      └→ ThreadAnomalies ─┬→ anomalies
                         └→ dead_letters                                            └→ alerts
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.transforms.features import PoolWindowFeatures
from beam_pipelines.transforms.parse import DEAD_LETTERS, ParsePoolEvents
from beam_pipelines.transforms.scoring import ScoreWindows, model_handler
from beam_pipelines.transforms.sinks import ThreadAnomalies, WriteTable, alert_message
from dexwatch.contracts.pool_event import EVENT_TIME_ATTRIBUTE
from dexwatch.contracts.tables import ANOMALIES, POOL_SCORES
from dexwatch.contracts.tables import DEAD_LETTERS as DEAD_LETTERS_TABLE
from dexwatch.contracts.topics import ALERTS, PIPELINE_SUBSCRIPTION, subscription_path, topic_path
from dexwatch.settings import Settings


def detect(
    events,
    settings: Settings,
    streaming: bool,
    handler=None,
    final_before: int | None = None,
    window_ends: tuple[int, int] | None = None,
):
    """The detector on PoolEvents (timestamped by block time): writes scores and anomalies
    and returns the alerts (an Alert PCollection). Windows ending at or before
    ``final_before`` (unix s) are not emitted again (a resumed run replaying its journal);
    with ``window_ends`` (first, last), only windows ending in (first, last] are scored."""
    rows = events | "Features" >> PoolWindowFeatures(settings.pipeline, streaming, final_before)
    if window_ends is not None:
        first, last = window_ends
        rows = rows | "InRange" >> beam.Filter(
            lambda row: first < row["window_end"].timestamp() <= last
        )
    scored = rows | "Score" >> ScoreWindows(handler or model_handler(settings))
    scored | "WriteScores" >> WriteTable(settings, POOL_SCORES)
    threaded = scored | "Threads" >> ThreadAnomalies(settings.pipeline.alert_cooldown_s)
    threaded.anomalies | "WriteAnomalies" >> WriteTable(settings, ANOMALIES)
    return threaded.alerts


def build_streaming_pipeline(
    settings: Settings,
    options: PipelineOptions,
    handler=None,
    final_before: int | None = None,
) -> beam.Pipeline:
    """Pub/Sub pool-events → tables and the alerts topic, following the stream. The model
    handler defaults to the configured one (model.serving); see ``detect`` for
    final_before."""
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
    parsed[DEAD_LETTERS] | "WriteDeadLetters" >> WriteTable(settings, DEAD_LETTERS_TABLE)
    alerts = detect(parsed.main, settings, True, handler, final_before)
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
    events_file: Path,
    handler=None,
    window_ends: tuple[int, int] | None = None,
) -> beam.Pipeline:
    """A recorded stream (JSON lines of pool-event messages) → the same tables, in batch
    (only windows ending in ``window_ends``, if given). Alerts are not published: a replay
    looks at the past."""
    pipeline = beam.Pipeline(options=options)
    parsed = _read_recording(pipeline, events_file)
    parsed[DEAD_LETTERS] | "WriteDeadLetters" >> WriteTable(settings, DEAD_LETTERS_TABLE)
    detect(parsed.main, settings, streaming=False, handler=handler, window_ends=window_ends)
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


def _read_recording(pipeline: beam.Pipeline, events_file: Path):
    """A recording (JSON lines of pool-event messages) → parsed events, stamped with their
    block time, and dead letters."""
    return (
        pipeline
        | "ReadRecorded" >> beam.io.ReadFromText(str(events_file), coder=beam.coders.BytesCoder())
        | "Parse" >> ParsePoolEvents(stamp_event_time=True)
    )
