"""Reading what really arrived on a Pub/Sub (emulator) subscription, for assertions."""

from __future__ import annotations

import time

from google.cloud import pubsub_v1

from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.schemas.topics import subscription_path


def drain(project: str, subscription: str, idle_s: float = 3.0, limit_s: float = 120.0) -> list:
    """Pull and ack until nothing new arrives for ``idle_s``; returns the received messages."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscription_path(project, subscription)
    received: list = []
    last_seen = started = time.monotonic()
    try:
        while time.monotonic() - last_seen < idle_s and time.monotonic() - started < limit_s:
            response = subscriber.pull(
                request={"subscription": path, "max_messages": 1000}, timeout=10
            )
            if response.received_messages:
                received += [m.message for m in response.received_messages]
                subscriber.acknowledge(
                    request={
                        "subscription": path,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    }
                )
                last_seen = time.monotonic()
    finally:
        subscriber.close()
    return received


def pool_events(messages: list) -> list[PoolEvent]:
    """The pool events among ``messages``, without the pools' announcements."""
    events = [PoolEvent.from_json(m.data) for m in messages]
    return [event for event in events if not event.is_announcement]
