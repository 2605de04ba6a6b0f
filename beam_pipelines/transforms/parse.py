"""Pool-event messages → PoolEvents, and everything unreadable to a dead-letter output."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import apache_beam as beam
import orjson
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.transforms.window import TimestampedValue

from dexwatch.contracts.features import check_args
from dexwatch.contracts.pool_event import MessageError, PoolEvent

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
    def __init__(self, stamp: bool) -> None:
        # Messages read from files carry no event time yet; Pub/Sub sets it from the
        # event_time attribute.
        self._stamp = stamp

    def process(self, message: PubsubMessage | bytes):
        data = message.data if isinstance(message, PubsubMessage) else message
        attributes = dict(message.attributes or {}) if isinstance(message, PubsubMessage) else None
        try:
            event = PoolEvent.from_json(data)
            check_args(event)
        except (MessageError, ValueError) as err:
            beam.metrics.Metrics.counter("dexwatch", "dead_letters").inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, dead_letter_row("parse", str(err), data, attributes)
            )
            return
        yield TimestampedValue(event, event.block_timestamp) if self._stamp else event


class ParsePoolEvents(beam.PTransform):
    """Outputs ``main`` (PoolEvent) and ``dead_letters`` (dead_letters table rows)."""

    def __init__(self, stamp_event_time: bool = False) -> None:
        super().__init__()
        self._stamp = stamp_event_time

    def expand(self, messages):
        return messages | beam.ParDo(_ParseFn(self._stamp)).with_outputs(DEAD_LETTERS, main="main")
