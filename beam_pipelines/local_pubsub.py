"""Pub/Sub read for the local streaming runner: journaled, acknowledged only once journaled,
with an event-time watermark. Production keeps Dataflow's own Pub/Sub read.

Beam's local read pulls 10 messages per call, acknowledges them before the pipeline has
seen them, and sets the watermark to the wall clock. This one pulls in a background thread
(up to 1,000 messages per call, with a bound on what waits in memory), appends each batch to
a journal on disk and fsyncs it, and only then acknowledges it: a message is either in the
journal or still in the subscription, whenever the process dies.

The local runner keeps no state across a restart, so a restart replays the journal from
the span before the oldest window the previous run may not have finished (from its newest
rows in the warehouse, less the allowed lateness): those windows are recomputed whole, and
the ones before them, final and written, are not emitted again (``ResumePoint``).
A message both journaled and redelivered (killed between fsync and acknowledgement) comes
twice; the pipeline drops duplicates by event id. Each subscription read (pool-events, and
pool-hourly for the hourly branch) has its own journal directory and replay plan.

The watermark follows the data: the newest event time read, less a few seconds for
messages that overtake each other. It does not advance while nothing arrives, so a
publisher that was down publishes its backlog on time rather than late. For the
subscription's ack deadline after start it stays put: messages the previous run pulled but
had not journaled come back only then, and must not count as late.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import orjson
from apache_beam import pvalue
from apache_beam.io.gcp.pubsub import PubsubMessage, ReadFromPubSub
from apache_beam.pipeline import PTransformOverride
from apache_beam.runners.direct.transform_evaluator import (
    TransformEvaluatorRegistry,
    _TransformEvaluator,
)
from apache_beam.runners.direct.util import TransformResult
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from dexwatch.contracts.hourly_features import HISTORY_HOURS
from dexwatch.contracts.pool_event import rfc3339
from dexwatch.contracts.pool_hour import HOUR_S
from dexwatch.contracts.topics import PIPELINE_SUBSCRIPTION, POOL_HOURLY_SUBSCRIPTION
from dexwatch.settings import PipelineSettings, Settings

log = logging.getLogger("dexwatch.pipeline.local_read")

# Messages may overtake each other by this much event time before they count as late (the
# publisher sends a pool's events in block order; lateness settings cover the rest).
WATERMARK_LAG_S = 5
_SEGMENT_S = 60  # a journal file per minute, deleted whole once older than the retention
_PULL_MAX_MESSAGES = 1000
_MAX_WAITING = 20_000  # pulled but not yet taken by the runner: flow control
_BUNDLE_MAX = 5_000
_GATHER_S = 0.1
_REDELIVERY_MARGIN_S = 5


@dataclass(frozen=True)
class ResumePoint:
    """Where a restart picks up: journaled messages with event time >= replay_from (unix s)
    are replayed; windows ending at or before final_before were final and written."""

    replay_from: int
    final_before: int | None


def resume_point(settings: PipelineSettings, processed_until: int | None) -> ResumePoint:
    """``processed_until``: event time up to which the previous run had processed and
    written its rows (None: nothing written, so the whole journal is replayed). A window
    that far behind by the lag and the allowed lateness could take no more updates; the
    replay covers the span of every window after it."""
    if processed_until is None:
        return ResumePoint(replay_from=0, final_before=None)
    final_before = processed_until - WATERMARK_LAG_S - settings.allowed_lateness_s
    return ResumePoint(replay_from=final_before - _span_s(settings), final_before=final_before)


def journal_keep_s(settings: PipelineSettings) -> int:
    """How much event time the journal keeps: what a resume replays, and a slice more."""
    return WATERMARK_LAG_S + settings.allowed_lateness_s + _span_s(settings) + settings.slice_s


def _span_s(settings: PipelineSettings) -> int:
    return (settings.current_slices + settings.baseline_slices) * settings.slice_s


class Journal:
    """Append-only files of journaled messages, one per minute of wall time.

    Each line is a JSON record: event time (µs), attributes, and data (text, or base64 when
    the bytes are not UTF-8). A line cut short by a crash is skipped on reading."""

    def __init__(self, directory: Path, keep_s: int) -> None:
        self.directory = directory
        self.keep_s = keep_s
        directory.mkdir(parents=True, exist_ok=True)
        self._file = None
        self._file_started = 0.0
        self._newest_us = 0

    # --- reading back ---------------------------------------------------------------

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl"), key=lambda p: int(p.stem))

    def records(self) -> list[dict]:
        """Every complete record, in the order they were journaled."""
        records = []
        for segment in self._segments():
            for line in segment.read_bytes().splitlines():
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    log.warning("skipping a journal line cut short in %s", segment.name)
        return records

    # --- writing ------------------------------------------------------------------

    def append(self, records: list[dict]) -> None:
        """Journals the records durably (written and fsynced) before returning."""
        now = time.time()
        if self._file is None or now - self._file_started >= _SEGMENT_S:
            self._rotate(now)
        assert self._file is not None
        self._file.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._newest_us = max(self._newest_us, max(r["t"] for r in records))

    def _rotate(self, now: float) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(self.directory / f"{int(now * 1000)}.jsonl", "ab")  # noqa: SIM115
        self._file_started = now
        self._drop_expired()

    def _drop_expired(self) -> None:
        """Deletes whole segments whose newest record is older than keep_s."""
        horizon_us = self._newest_us - self.keep_s * 1_000_000
        for segment in self._segments()[:-1]:
            times = [orjson.loads(line)["t"] for line in segment.read_bytes().splitlines()[-50:]]
            if times and max(times) < horizon_us:
                segment.unlink()


def journal_record(message, timestamp_attribute: str | None) -> dict:
    """A pulled google.cloud.pubsub message → a journal record (event time in µs)."""
    attributes = dict(message.attributes)
    event_us = _event_time_us(attributes.get(timestamp_attribute or ""), message.publish_time)
    record: dict = {"t": event_us, "a": attributes}
    try:
        record["d"] = message.data.decode("utf-8")
    except UnicodeDecodeError:
        record["b"] = base64.b64encode(message.data).decode()
    return record


def _event_time_us(value: str | None, publish_time) -> int:
    # Like Beam's read: milliseconds since the epoch or RFC 3339; without a usable value,
    # the publish time (the pipeline then judges the payload itself).
    if value:
        try:
            return int(value) * 1000
        except ValueError:
            try:
                return Timestamp.from_rfc3339(value).micros
            except ValueError:
                pass
    return Timestamp.from_utc_datetime(publish_time).micros


def _element(record: dict, with_attributes: bool):
    data = record["d"].encode() if "d" in record else base64.b64decode(record["b"])
    value = PubsubMessage(data, record["a"]) if with_attributes else data
    return GlobalWindows.windowed_value(value, timestamp=Timestamp(micros=record["t"]))


class _Reader:
    """Replays the journal's tail, then pulls, journals and acknowledges in a thread."""

    def __init__(self, read: JournaledPubSubRead) -> None:
        from google.cloud import pubsub

        self._read = read
        self._journal = Journal(read.journal_dir, read.keep_s)
        replay_from_us = read.replay_from * 1_000_000
        replay = [r for r in self._journal.records() if r["t"] >= replay_from_us]
        self._waiting: deque[dict] = deque(replay)
        if replay:
            log.info("replaying %d journaled messages", len(replay))
        self._ready = threading.Condition()
        self._newest_us = MIN_TIMESTAMP.micros
        self._client = pubsub.SubscriberClient()
        ack_deadline_s = self._client.get_subscription(
            subscription=read.subscription
        ).ack_deadline_seconds
        self._hold_until = time.monotonic() + ack_deadline_s + _REDELIVERY_MARGIN_S
        self._error: BaseException | None = None
        threading.Thread(target=self._pull_forever, name="pubsub-pull", daemon=True).start()

    def _pull_forever(self) -> None:
        from google.api_core import exceptions

        read = self._read
        while True:
            with self._ready:
                while len(self._waiting) >= _MAX_WAITING:
                    self._ready.wait(0.1)
            try:
                response = self._client.pull(
                    subscription=read.subscription, max_messages=_PULL_MAX_MESSAGES, timeout=10
                )
            except (exceptions.DeadlineExceeded, exceptions.ServiceUnavailable) as err:
                log.debug("pull: %s; pulling again", err)
                continue
            except BaseException as err:  # surfaced by take() in the runner's thread
                self._error = err
                with self._ready:
                    self._ready.notify_all()
                return
            received = response.received_messages
            if not received:
                continue
            records = [journal_record(m.message, read.timestamp_attribute) for m in received]
            self._journal.append(records)
            self._client.acknowledge(
                subscription=read.subscription, ack_ids=[m.ack_id for m in received]
            )
            with self._ready:
                self._waiting.extend(records)
                self._ready.notify_all()

    def take(self) -> list[dict]:
        """What has been journaled since the last call: gathered for up to _GATHER_S, as
        every bundle costs the local runner a fixed overhead in each step downstream."""
        deadline = time.monotonic() + _GATHER_S
        with self._ready:
            while len(self._waiting) < _BUNDLE_MAX and self._error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            if self._error is not None:
                raise RuntimeError(f"pulling {self._read.subscription} failed") from self._error
            count = min(len(self._waiting), _BUNDLE_MAX)
            taken = [self._waiting.popleft() for _ in range(count)]
            self._ready.notify_all()
        if taken:
            self._newest_us = max(self._newest_us, max(record["t"] for record in taken))
        return taken

    @property
    def watermark(self) -> Timestamp:
        if self._newest_us == MIN_TIMESTAMP.micros or time.monotonic() < self._hold_until:
            return MIN_TIMESTAMP
        return Timestamp(micros=self._newest_us - WATERMARK_LAG_S * 1_000_000)


class JournaledPubSubRead(beam.PTransform):
    """Reads a subscription on the local runner (see the module's docstring). Put in place
    of ReadFromPubSub by ``build_local_streaming_pipeline``; only the DirectRunner runs it."""

    def __init__(
        self,
        subscription: str,
        timestamp_attribute: str | None,
        with_attributes: bool,
        journal_dir: Path,
        keep_s: int,
        replay_from: int,
    ) -> None:
        super().__init__()
        self.subscription = subscription
        self.timestamp_attribute = timestamp_attribute
        self.with_attributes = with_attributes
        self.journal_dir = journal_dir
        self.keep_s = keep_s
        self.replay_from = replay_from

    def expand(self, pbegin):
        return pvalue.PCollection(self.pipeline, is_bounded=False)

    def get_windowing(self, unused_inputs):
        return beam.Windowing(GlobalWindows())


class _JournaledReadEvaluator(_TransformEvaluator):
    """Each evaluation emits what the reader has journaled since the last one, then asks to
    be evaluated again (an unprocessed empty bundle), like Beam's own local read."""

    _readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _readers_lock = threading.Lock()

    def _reader(self) -> _Reader:
        transform = self._applied_ptransform.transform
        with self._readers_lock:
            reader = self._readers.get(transform)
            if reader is None:
                reader = self._readers[transform] = _Reader(transform)
            return reader

    def start_bundle(self) -> None:
        pass

    def process_element(self, element) -> None:
        pass

    def finish_bundle(self) -> TransformResult:
        reader = self._reader()
        records = reader.take()
        bundles = []
        if records:
            bundle = self._evaluation_context.create_bundle(list(self._outputs)[0])
            with_attributes = self._applied_ptransform.transform.with_attributes
            for record in records:
                bundle.output(_element(record, with_attributes))
            bundles.append(bundle)
        again = self._evaluation_context.create_bundle(
            pvalue.PBegin(self._applied_ptransform.transform.pipeline)
        )
        return TransformResult(self, bundles, [again], None, {None: reader.watermark})


# The DirectRunner looks evaluators up by transform class; this registry is the hook Beam
# offers for transforms of its own kind (private API, pinned with apache-beam in the lock).
TransformEvaluatorRegistry._test_evaluators_overrides[JournaledPubSubRead] = _JournaledReadEvaluator


@dataclass(frozen=True)
class JournalPlan:
    """How one subscription's journal is kept and replayed (event time, unix s)."""

    keep_s: int
    replay_from: int


class _JournaledReadOverride(PTransformOverride):
    """Replaces every ReadFromPubSub with a journaled read of its subscription, each with
    its own journal (``<journal_root>/<subscription>``) and plan."""

    def __init__(self, journal_root: Path, plans: dict[str, JournalPlan]) -> None:
        self._journal_root = journal_root
        self._plans = plans

    def matches(self, applied_ptransform) -> bool:
        return isinstance(applied_ptransform.transform, ReadFromPubSub)

    def get_replacement_transform_for_applied_ptransform(self, applied_ptransform):
        source = applied_ptransform.transform._source
        if source.full_subscription is None:
            raise ValueError("the local journaled read needs a subscription, not a topic")
        name = source.full_subscription.rsplit("/", 1)[-1]
        if name not in self._plans:
            raise ValueError(f"no journal plan for the subscription {name}")
        plan = self._plans[name]
        return JournaledPubSubRead(
            source.full_subscription,
            source.timestamp_attribute,
            source.with_attributes,
            self._journal_root / name,
            plan.keep_s,
            plan.replay_from,
        )


def hourly_journal_keep_s(settings: PipelineSettings) -> int:
    """The hourly journal keeps what rebuilds the per-pool state of hours: the history of
    the oldest hour that may still be replaced, and an hour more."""
    return (HISTORY_HOURS + settings.hourly_allowed_lateness_h + 1) * HOUR_S


def build_local_streaming_pipeline(
    settings: Settings, handler=None, hourly_handler=None
) -> beam.Pipeline:
    """The streaming pipeline for the local runner, reading through the journal and
    resuming where a previous run stopped. The hourly branch (pipeline.hourly) replays its
    whole journal into its state, and emits again only the rows of hours that end after the
    newest hour the previous run wrote of their pool."""
    from beam_pipelines.options import local_streaming_options
    from beam_pipelines.pipeline import build_streaming_pipeline

    journal_root = settings.local.state_dir / "journal" / settings.pubsub.project
    newest_chain, written_hours = _newest_written(settings)
    # Chain rows reach the end of the newest slice seen; a window's current part back is on
    # the safe side.
    resume = resume_point(
        settings.pipeline,
        None if newest_chain is None else newest_chain - _window_current_s(settings.pipeline),
    )
    if resume.final_before is not None:
        log.info(
            "resuming: replaying journaled events from %s; windows up to %s were final",
            rfc3339(resume.replay_from),
            rfc3339(resume.final_before),
        )
    pipeline = build_streaming_pipeline(
        settings,
        local_streaming_options(),
        handler=handler,
        final_before=resume.final_before,
        hourly_handler=hourly_handler,
        hours_final_before=written_hours,
    )
    plans = {
        PIPELINE_SUBSCRIPTION: JournalPlan(journal_keep_s(settings.pipeline), resume.replay_from)
    }
    if settings.pipeline.hourly:
        plans[POOL_HOURLY_SUBSCRIPTION] = JournalPlan(
            hourly_journal_keep_s(settings.pipeline), replay_from=0
        )
    pipeline.replace_all([_JournaledReadOverride(journal_root, plans)])
    return pipeline


def _window_current_s(settings: PipelineSettings) -> int:
    return settings.current_slices * settings.slice_s


def _newest_written(settings: Settings) -> tuple[int | None, dict[str, int]]:
    """The newest window end the last run wrote (unix s): of the chain windows, and of the
    hours per pool (chain_id:pool)."""
    from dexwatch.warehouse import open_warehouse

    if not settings.warehouse_path.exists():
        return None, {}
    warehouse = open_warehouse(settings)
    tables = warehouse.query(
        "select count(*) from information_schema.tables where table_name = 'pool_scores'"
    ).rows
    if not tables[0][0]:
        return None, {}
    newest = warehouse.query(
        "select source, chain_id, pool, max(epoch(window_end)) from pool_scores "
        "group by source, chain_id, pool"
    ).rows
    chain = [int(end) for source, _, _, end in newest if source == "chain"]
    hours = {f"{c}:{pool}": int(end) for source, c, pool, end in newest if source == "subgraph"}
    return max(chain, default=None), hours
