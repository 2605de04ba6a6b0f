"""Messages → parsed records, and everything unreadable to a dead-letter output.

Parsing checks what every later step relies on (``PoolEvent.from_json``,
``PoolHour.from_json``), and, for Pub/Sub messages, that the ``event_time`` attribute the
read took as the message's event time is the record's own time. In live reads a record may
not be ahead of the reading clock by more than ``max_ahead_s``: a block from the future is
a forged or broken message, while history mining, bootstraps and replays legitimately carry
block times ahead of the wall clock and are read without that check.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from dexwatch.core.logs import scrub
from dexwatch.core.schemas.pool_event import EVENT_TIME_ATTRIBUTE, MessageError, PoolEvent

DEAD_LETTERS = "dead_letters"


def dead_letter_row(
    stage: str,
    reason: str,
    data: bytes,
    attributes: dict | None,
    message_id: str | None = None,
) -> dict:
    """A row of the dead_letters table. Its id is stable (the Pub/Sub message id when there
    is one, else a digest of stage and content), so a redelivery or a replay replaces it."""
    digest = hashlib.sha256(
        (message_id or "").encode() + stage.encode() + data + orjson.dumps(attributes or {})
    )
    return {
        "letter_id": digest.hexdigest()[:32],
        "stage": stage,
        "reason": scrub(reason),
        "payload": data.decode("utf-8", errors="replace"),
        "attributes": orjson.dumps(attributes or {}).decode(),
        "received_at": datetime.now(UTC),
    }


def element_dead_letter(stage: str, reason: str, element: Any) -> dict:
    """A dead_letters row for an element a later step could not handle: a parsed record or
    a feature row, kept as its JSON."""
    if hasattr(element, "to_json"):
        data = element.to_json()
    else:
        data = orjson.dumps(element, default=str, option=orjson.OPT_NON_STR_KEYS)
    beam.metrics.Metrics.counter("dexwatch", f"dead_letters_{stage}").inc()
    return dead_letter_row(stage, reason, data, None)


def dead_letter_of(stage: str, reason: str, element: Any) -> beam.pvalue.TaggedOutput:
    """``element_dead_letter`` on the ``dead_letters`` output of the step that yields it."""
    return beam.pvalue.TaggedOutput(DEAD_LETTERS, element_dead_letter(stage, reason, element))


def attribute_time(value: str) -> int:
    """An event_time attribute as unix seconds: milliseconds since the epoch or RFC 3339,
    as Beam's Pub/Sub read (and the local journaled read) take it."""
    try:
        return int(value) // 1000
    except ValueError:
        return Timestamp.from_rfc3339(value).micros // 1_000_000


class _ParseFn(beam.DoFn):
    """Messages → what ``parse`` makes of them, stamped with their event time when asked;
    whatever ``parse`` rejects, or whose times do not hold, → a dead letter."""

    def __init__(
        self,
        parse: Callable[[bytes], Any],
        event_time: Callable[[Any], int],
        stage: str,
        stamp: bool,
        max_ahead_s: int | None,
    ) -> None:
        # Messages read from files carry no event time yet; Pub/Sub sets it from the
        # event_time attribute.
        self._parse = parse
        self._event_time = event_time
        self._stage = stage
        self._stamp = stamp
        self._max_ahead_s = max_ahead_s

    def process(self, message: PubsubMessage | bytes | tuple[int, bytes]):
        # A recording's lines come numbered: (order, data) → (order, record).
        order, message = message if isinstance(message, tuple) else (None, message)
        if isinstance(message, PubsubMessage):
            data, attributes = message.data, dict(message.attributes or {})
            message_id = message.message_id
        else:
            data, attributes, message_id = message, None, None
        try:
            parsed = self._parse(data)
            when = self._event_time(parsed)
            if attributes is not None:
                self._check_attribute(attributes, when)
            if self._max_ahead_s is not None and when > time.time() + self._max_ahead_s:
                raise MessageError(
                    f"event time {when} is {when - time.time():.0f} s ahead of the clock "
                    f"(tolerance {self._max_ahead_s} s)"
                )
        except ValueError as err:  # MessageError is one
            beam.metrics.Metrics.counter("dexwatch", "dead_letters").inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                dead_letter_row(self._stage, str(err), data, attributes, message_id),
            )
            return
        value = parsed if order is None else (order, parsed)
        yield TimestampedValue(value, when) if self._stamp else value

    @staticmethod
    def _check_attribute(attributes: dict[str, str], when: int) -> None:
        value = attributes.get(EVENT_TIME_ATTRIBUTE)
        if value is None:
            raise MessageError(f"no {EVENT_TIME_ATTRIBUTE} attribute")
        try:
            claimed = attribute_time(value)
        except (ValueError, OverflowError):
            raise MessageError(
                f"unreadable {EVENT_TIME_ATTRIBUTE} attribute {value[:40]!r}"
            ) from None
        if claimed != when:
            raise MessageError(
                f"the {EVENT_TIME_ATTRIBUTE} attribute ({value[:40]}) is not the record's own "
                f"time ({when})"
            )


class ParseMessages(beam.PTransform):
    """Messages (Pub/Sub messages, bytes, or (order, bytes) pairs) → outputs ``main`` (the
    parsed records, or (order, record) pairs) and ``dead_letters`` (rows of the
    dead_letters table, with the stage and the reason).

    Args:
        parse: bytes → record; raises ValueError (MessageError) for what it rejects.
        event_time: record → its event time, unix seconds.
        stage: the dead letters' stage.
        stamp_event_time: set each record's timestamp (files carry none).
        max_ahead_s: live reads: reject records this far ahead of the clock (None: no check).
    """

    def __init__(
        self,
        parse: Callable[[bytes], Any],
        event_time: Callable[[Any], int],
        stage: str,
        stamp_event_time: bool = False,
        max_ahead_s: int | None = None,
    ) -> None:
        super().__init__()
        self._fn = _ParseFn(parse, event_time, stage, stamp_event_time, max_ahead_s)

    def expand(self, messages):
        return messages | beam.ParDo(self._fn).with_outputs(DEAD_LETTERS, main="main")


def _block_time(event: PoolEvent) -> int:
    return event.block_timestamp


class ParsePoolEvents(ParseMessages):
    """pool-events messages → ``main`` (PoolEvent) and ``dead_letters``."""

    def __init__(self, stamp_event_time: bool = False, max_ahead_s: int | None = None) -> None:
        super().__init__(PoolEvent.from_json, _block_time, "parse", stamp_event_time, max_ahead_s)
