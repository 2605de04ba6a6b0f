"""The Pub/Sub sink shared by dexwatch's publishers.

``publish`` sends a batch and returns only when Pub/Sub acknowledged every message, so a
publisher can then move its checkpoint. Message ordering is on: messages with the same
ordering key reach ordered subscriptions in publish order. The emulator is used when
PUBSUB_EMULATOR_HOST is set, as by every google-cloud-pubsub client.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson
from google.cloud import pubsub_v1

from dexwatch.core.errors import DexwatchError
from dexwatch.core.schemas.topics import topic_path

log = logging.getLogger("dexwatch.publisher.pubsub")

# With ordering, each key has one batch in flight at a time: larger batches, fewer round trips.
_BATCH_SETTINGS = pubsub_v1.types.BatchSettings(
    max_messages=1000, max_bytes=5 * 1024 * 1024, max_latency=0.01
)


class PublishError(DexwatchError, RuntimeError):
    """Some messages of a batch were not acknowledged; the batch must be published again."""


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    data: bytes
    attributes: Mapping[str, str]
    ordering_key: str = ""


class Sink(Protocol):
    """Where a publisher's messages go: Pub/Sub, or a recording (publishers.recording)."""

    def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Deliver ``messages`` to ``topic``; when this returns they are durable."""
        ...


def dead_letter(rejected: Mapping[str, Any], reason: str, attributes: Mapping[str, str]) -> Message:
    """A dead-letter message: the rejected input as JSON with the reason, and the reason as an
    attribute next to ``attributes`` (e.g. the event id)."""
    return Message(
        data=orjson.dumps({**rejected, "reason": reason}),
        attributes={**attributes, "reason": reason},
    )


class PubSubSink:
    def __init__(self, project: str, publish_timeout_s: float = 60.0) -> None:
        self.project = project
        self._timeout_s = publish_timeout_s
        self._client = pubsub_v1.PublisherClient(
            batch_settings=_BATCH_SETTINGS,
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        )

    def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Publish ``messages`` to ``topic`` in order and wait until all are acknowledged.

        Raises PublishError if any failed; their ordering keys are resumed first, so the
        caller can publish the batch again.
        """
        path = topic_path(self.project, topic)
        futures = [
            (
                message.ordering_key,
                self._client.publish(
                    path, message.data, ordering_key=message.ordering_key, **message.attributes
                ),
            )
            for message in messages
        ]
        failed_keys: set[str] = set()
        first_error: BaseException | None = None
        for ordering_key, future in futures:
            try:
                future.result(timeout=self._timeout_s)
            except Exception as err:  # each failure type the client raises means "not acked"
                failed_keys.add(ordering_key)
                first_error = first_error or err
        if first_error is None:
            return
        # A failed publish pauses its ordering key: later publishes with it fail until resumed.
        for ordering_key in failed_keys - {""}:
            self._client.resume_publish(path, ordering_key)
        raise PublishError(
            f"{topic}: messages of {len(failed_keys)} ordering key(s) were not acknowledged: "
            f"{type(first_error).__name__}: {first_error}"
        ) from first_error

    def close(self) -> None:
        self._client.stop()
        self._client.transport.close()

    def __enter__(self) -> PubSubSink:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
