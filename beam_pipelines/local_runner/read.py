"""The journaled Pub/Sub read of the local runner: a background pull thread, the journal,
and an event-time watermark that follows the data (see beam_pipelines.local_runner)."""

from __future__ import annotations

import base64
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
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

from beam_pipelines.local_runner.journal import (
    WATERMARK_LAG_S,
    Journal,
    effective_time_us,
    journal_record,
)

log = logging.getLogger("dexwatch.pipeline.local_read")


_PULL_MAX_MESSAGES = 1000


_MAX_WAITING = 20_000  # pulled but not yet taken by the runner: flow control


_BUNDLE_MAX = 5_000


_GATHER_S = 0.1


_REDELIVERY_MARGIN_S = 5


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


class JournaledReadOverride(PTransformOverride):
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
