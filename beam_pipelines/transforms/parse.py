"""Pool-event messages → PoolEvents, and everything unreadable to a dead-letter output."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.transforms.window import TimestampedValue

from dexwatch.contracts.features import check_args
from dexwatch.contracts.pool_event import PoolEvent

DEAD_LETTERS = "dead_letters"


def dead_letter_row(stage: str, reason: str, data: bytes, attributes: dict | None) -> dict:
    """A row of the dead_letters table; its id is stable, so a redelivery replaces it."""
    letter_id = hashlib.sha256(data + orjson.dumps(attributes or {})).hexdigest()[:32]
    return {
        "letter_id": letter_id,
        "stage": stage,
        "reason": reason,
        "payload": data.decode("utf-8", errors="replace"),
        "attributes": orjson.dumps(attributes or {}).decode(),
        "received_at": datetime.now(UTC),
    }


class _ParseFn(beam.DoFn):
    """Messages → what ``parse`` makes of them, stamped with their event time when asked;
    whatever ``parse`` rejects (ValueError, MessageError among them) → a dead letter."""

    def __init__(self, parse: Callable[[bytes], Any], event_time, stage: str, stamp: bool):
        # Messages read from files carry no event time yet; Pub/Sub sets it from the
        # event_time attribute.
        self._parse = parse
        self._event_time = event_time
        self._stage = stage
        self._stamp = stamp

    def process(self, message: PubsubMessage | bytes):
        data = message.data if isinstance(message, PubsubMessage) else message
        attributes = dict(message.attributes or {}) if isinstance(message, PubsubMessage) else None
        try:
            parsed = self._parse(data)
        except ValueError as err:  # MessageError is one
            beam.metrics.Metrics.counter("dexwatch", "dead_letters").inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, dead_letter_row(self._stage, str(err), data, attributes)
            )
            return
        yield TimestampedValue(parsed, self._event_time(parsed)) if self._stamp else parsed


class ParseMessages(beam.PTransform):
    """Messages → outputs ``main`` (parsed) and ``dead_letters`` (rows of the dead_letters
    table, with the stage and the reason)."""

    def __init__(self, parse, event_time, stage: str, stamp_event_time: bool = False) -> None:
        super().__init__()
        self._fn = _ParseFn(parse, event_time, stage, stamp_event_time)

    def expand(self, messages):
        return messages | beam.ParDo(self._fn).with_outputs(DEAD_LETTERS, main="main")


def _pool_event(data: bytes) -> PoolEvent:
    event = PoolEvent.from_json(data)
    check_args(event)
    return event


def _block_time(event: PoolEvent) -> int:
    return event.block_timestamp


class ParsePoolEvents(ParseMessages):
    """pool-events messages → ``main`` (PoolEvent) and ``dead_letters``."""

    def __init__(self, stamp_event_time: bool = False) -> None:
        super().__init__(_pool_event, _block_time, "parse", stamp_event_time)
