"""`dexwatch alerts tail`: the alerts topic, one readable line per alert revision (either
version of the alert contract)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from google.cloud import pubsub_v1

from dexwatch.core.schemas.alert import V1_COPY_ATTRIBUTE, Alert, parse_alert
from dexwatch.core.schemas.topics import ALERTS_SUBSCRIPTION, subscription_path
from dexwatch.core.settings import Settings


def describe(alert: Alert) -> str:
    """One line: severity, kind, scope, score, window, top features, thread and revision."""
    top = ", ".join(f"{t.name}={t.value:.3g} ({t.deviation:+.1f}σ)" for t in alert.top_features)
    if alert.scope == "pool":
        where = f"{alert.dex} pool {alert.pool}"
    else:
        where = f"{alert.scope}: " + ", ".join(f"{p.dex} {p.pool}" for p in alert.pools)
    update = f" (update {alert.revision})" if alert.revision else ""
    return (
        f"{alert.detected_at:%H:%M:%S} {alert.severity.upper():6} {alert.kind:18} "
        f"{where} score {alert.score:.3f} "
        f"window {alert.window_start:%H:%M:%S}-{alert.window_end:%H:%M:%S} | {top} "
        f"| alert_id={alert.alert_id}{update}"
    )


def tail(
    settings: Settings, stop: threading.Event, count: int | None, out: Callable[[str], None]
) -> int:
    """Print alerts until ``stop`` is set or ``count`` have arrived; returns how many did."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscription_path(settings.pubsub.project, ALERTS_SUBSCRIPTION)
    seen = 0
    lock = threading.Lock()

    def on_message(message) -> None:  # noqa: ANN001 - pubsub's Message
        nonlocal seen
        if V1_COPY_ATTRIBUTE in message.attributes:  # the v2 original is printed
            message.ack()
            return
        try:
            line = describe(parse_alert(message.data))
        except ValueError as err:
            line = f"unreadable alert ({err})"
        with lock:
            out(line)
            seen += 1
            if count is not None and seen >= count:
                stop.set()
        message.ack()

    future = subscriber.subscribe(path, on_message)
    try:
        stop.wait()
    finally:
        future.cancel()
        subscriber.close()
    return seen
