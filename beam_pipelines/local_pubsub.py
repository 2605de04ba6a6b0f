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
messages that overtake each other, each message counting at most the wall-clock time at
which it was read (a real event was mined before it was read): one message stamped a day
ahead must not move the watermark a day, making every real event after it late. It does
not advance while nothing arrives, so a publisher that was down publishes its backlog on
time rather than late. For the subscription's ack deadline after start it stays put:
messages the previous run pulled but had not journaled come back only then, and must not
count as late.

Journal segments are deleted only when no restart could need them: when every record in
them is older than both the journal's own horizon (the watermark less what a resume
replays) and the replay start a restart would compute now from the rows the pipeline has
written (``restart_needs``). Pool announcements are also kept in a file of their own that
never expires, and a restart replays them first: the pipeline scores announced pools only,
and a pool announced long ago is still a pool.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
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
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Timestamp

from dexwatch.contracts.hourly_features import HISTORY_HOURS
from dexwatch.contracts.pool_event import ANNOUNCEMENTS, rfc3339
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
_ANNOUNCEMENTS_FILE = "announcements.jsonl"
_ANNOUNCEMENT_NAMES = frozenset(ANNOUNCEMENTS.values())


@dataclass(frozen=True)
class ResumePoint:
    """Where a restart picks up: journaled messages with event time >= replay_from (unix s)
    are replayed; a pool's windows ending at or before its ``final_before`` (by
    ``chain_id:pool``) were final and written."""

    replay_from: int
    final_before: dict[str, int] | None


def resume_point(settings: PipelineSettings, written: dict[str, int]) -> ResumePoint:
    """``written``: per pool (chain_id:pool), the newest window end the previous run wrote
    (empty: nothing written, so the whole journal is replayed).

    Pools are processed side by side and one may lag another, so each pool resumes from its
    own progress: its rows reach the end of the newest slice it had processed, a window's
    current part back is on the safe side, and a window that far behind by the lag and the
    allowed lateness could take no more updates. The replay covers the span of every window
    after the earliest of those. A pool whose newest row is older than the journal keeps
    has been quiet (or gone) for longer than any replay could reach: its rows are final."""
    if not written:
        return ResumePoint(replay_from=0, final_before=None)
    newest = max(written.values())
    settled = _window_current_s(settings) + WATERMARK_LAG_S + settings.allowed_lateness_s
    final_before = {
        pool: end if end < newest - journal_keep_s(settings) else end - settled
        for pool, end in written.items()
    }
    active = [end - settled for end in written.values() if end >= newest - journal_keep_s(settings)]
    return ResumePoint(replay_from=min(active) - _span_s(settings), final_before=final_before)


def journal_keep_s(settings: PipelineSettings) -> int:
    """How much event time the journal keeps: what a resume replays, and a slice more."""
    return WATERMARK_LAG_S + settings.allowed_lateness_s + _span_s(settings) + settings.slice_s


def _span_s(settings: PipelineSettings) -> int:
    return (settings.current_slices + settings.baseline_slices) * settings.slice_s


def effective_time_us(record: dict) -> int:
    """A record's event time, but never later than the wall clock when it was journaled:
    what the watermark and the journal's expiry rely on. A real event was mined before it
    was read; a message claiming a later time (refused by the parse step if it is more than
    ``pipeline.max_event_ahead_s`` ahead) moves neither."""
    journaled_ms = record.get("w")
    if journaled_ms is None:
        return record["t"]
    return min(record["t"], journaled_ms * 1000)


class Journal:
    """Append-only files of journaled messages, one per minute of wall time, and a file of
    pool announcements that never expires.

    Each line is a JSON record: event time (µs), journaling wall time (ms), message id,
    attributes, and data (text, or base64 when the bytes are not UTF-8). A line cut short
    by a crash is skipped on reading.

    Args:
        directory: where the files are.
        keep_s: event time kept behind the watermark.
        restart_needs: the event time (unix s) from which a restart would replay now, or
            None when it cannot be told (then nothing is deleted).
    """

    def __init__(
        self,
        directory: Path,
        keep_s: int,
        restart_needs: Callable[[], int | None] | None = None,
    ) -> None:
        self.directory = directory
        self.keep_s = keep_s
        self._restart_needs = restart_needs
        directory.mkdir(parents=True, exist_ok=True)
        self._file = None
        self._file_started = 0.0
        self._newest_us = 0

    # --- reading back ---------------------------------------------------------------

    def _segments(self) -> list[Path]:
        return sorted(
            (p for p in self.directory.glob("*.jsonl") if p.stem.isdigit()),
            key=lambda p: int(p.stem),
        )

    def records(self) -> list[dict]:
        """Every complete record, in the order they were journaled."""
        return [r for segment in self._segments() for r in _read_records(segment)]

    def announcements(self) -> list[dict]:
        """Every pool announcement ever journaled, in order."""
        return _read_records(self.directory / _ANNOUNCEMENTS_FILE)

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
        announcements = [r for r in records if r["a"].get("event") in _ANNOUNCEMENT_NAMES]
        if announcements:
            with (self.directory / _ANNOUNCEMENTS_FILE).open("ab") as out:
                out.write(b"".join(orjson.dumps(r) + b"\n" for r in announcements))
                out.flush()
                os.fsync(out.fileno())
        self._newest_us = max(self._newest_us, max(effective_time_us(r) for r in records))

    def _rotate(self, now: float) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(self.directory / f"{int(now * 1000)}.jsonl", "ab")  # noqa: SIM115
        self._file_started = now
        self._drop_expired()

    def _drop_expired(self) -> None:
        """Deletes whole segments whose every record is older than keep_s behind the newest
        record and older than what a restart would replay now."""
        horizon_us = self._newest_us - self.keep_s * 1_000_000
        if self._restart_needs is not None:
            try:
                needed = self._restart_needs()
            except Exception as err:  # noqa: BLE001 - unknown: keep everything this time
                log.warning("journal expiry skipped: %s", err)
                return
            if needed is None:
                return
            horizon_us = min(horizon_us, needed * 1_000_000)
        for segment in self._segments()[:-1]:
            times = [effective_time_us(r) for r in _read_records(segment)]
            if times and max(times) < horizon_us:
                segment.unlink()


def _read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.warning("skipping a journal line cut short in %s", path.name)
    return records


def journal_record(message, timestamp_attribute: str | None) -> dict:
    """A pulled google.cloud.pubsub message → a journal record (event time in µs, the wall
    time of journaling in ms, the message id)."""
    attributes = dict(message.attributes)
    event_us = _event_time_us(attributes.get(timestamp_attribute or ""), message.publish_time)
    record: dict = {"t": event_us, "w": int(time.time() * 1000), "a": attributes}
    if message.message_id:
        record["m"] = message.message_id
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
            return _bounded_us(int(value) * 1000)
        except ValueError:
            try:
                return _bounded_us(Timestamp.from_rfc3339(value).micros)
            except (ValueError, OverflowError):
                pass
    return Timestamp.from_utc_datetime(publish_time).micros


def _bounded_us(micros: int) -> int:
    # A Beam timestamp holds about ±290,000 years; anything outside is unusable as one.
    if not MIN_TIMESTAMP.micros < micros < MAX_TIMESTAMP.micros:
        raise ValueError("event time out of range")
    return micros


def _element(record: dict, with_attributes: bool):
    data = record["d"].encode() if "d" in record else base64.b64decode(record["b"])
    value = (
        PubsubMessage(data, record["a"], message_id=record.get("m")) if with_attributes else data
    )
    return GlobalWindows.windowed_value(value, timestamp=Timestamp(micros=record["t"]))


class _Reader:
    """Replays the journal's tail, then pulls, journals and acknowledges in a thread."""

    def __init__(self, read: JournaledPubSubRead) -> None:
        from google.cloud import pubsub

        self._read = read
        self._journal = Journal(read.journal_dir, read.keep_s, read.restart_needs)
        replay_from_us = read.replay_from * 1_000_000
        # Every pool announcement first: the replayed events' pools must be known.
        replay = self._journal.announcements()
        replay += [r for r in self._journal.records() if r["t"] >= replay_from_us]
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
            self._newest_us = max(self._newest_us, max(effective_time_us(r) for r in taken))
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
        restart_needs: Callable[[], int | None] | None = None,
    ) -> None:
        super().__init__()
        self.subscription = subscription
        self.timestamp_attribute = timestamp_attribute
        self.with_attributes = with_attributes
        self.journal_dir = journal_dir
        self.keep_s = keep_s
        self.replay_from = replay_from
        self.restart_needs = restart_needs

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
    """How one subscription's journal is kept and replayed (event time, unix s): see
    Journal for ``restart_needs``."""

    keep_s: int
    replay_from: int
    restart_needs: Callable[[], int | None] | None = None


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
            plan.restart_needs,
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
    written_chain, written_hours = _newest_written(settings)
    resume = resume_point(settings.pipeline, written_chain)
    if resume.final_before is not None:
        log.info(
            "resuming: replaying journaled events from %s; windows up to %s were final",
            rfc3339(resume.replay_from),
            rfc3339(max(resume.final_before.values())),
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
        PIPELINE_SUBSCRIPTION: JournalPlan(
            journal_keep_s(settings.pipeline), resume.replay_from, _RestartNeeds(settings)
        )
    }
    if settings.pipeline.hourly:
        plans[POOL_HOURLY_SUBSCRIPTION] = JournalPlan(
            hourly_journal_keep_s(settings.pipeline), replay_from=0
        )
    pipeline.replace_all([_JournaledReadOverride(journal_root, plans)])
    return pipeline


class _RestartNeeds:
    """Where a restart of the chain path would replay from now, from what the pipeline has
    written (None while it has written nothing: a restart would replay everything)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __call__(self) -> int | None:
        written_chain, _ = _newest_written(self._settings, beside_writer=True)
        if not written_chain:
            return None
        return resume_point(self._settings.pipeline, written_chain).replay_from


def _window_current_s(settings: PipelineSettings) -> int:
    return settings.current_slices * settings.slice_s


def _newest_written(
    settings: Settings, beside_writer: bool = False
) -> tuple[dict[str, int], dict[str, int]]:
    """The newest window end written (unix s) per pool (chain_id:pool): of the chain windows,
    and of the hours. ``beside_writer``: asked from inside the running pipeline."""
    from dexwatch.warehouse.duckdb_backend import DuckDBWarehouse

    if not settings.warehouse_path.exists():
        return {}, {}
    warehouse = DuckDBWarehouse(settings.warehouse_path)
    tables = warehouse.query(
        "select count(*) from information_schema.tables where table_name = 'pool_scores'",
        beside_writer,
    ).rows
    if not tables[0][0]:
        return {}, {}
    newest = warehouse.query(
        "select source, chain_id, pool, max(epoch(window_end)) from pool_scores "
        "group by source, chain_id, pool",
        beside_writer,
    ).rows
    by_source: dict[str, dict[str, int]] = {"chain": {}, "subgraph": {}}
    for source, chain_id, pool, end in newest:
        by_source.setdefault(source, {})[f"{chain_id}:{pool}"] = int(end)
    return by_source["chain"], by_source["subgraph"]
