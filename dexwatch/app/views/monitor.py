"""A live per-pool summary of what arrives on the ``pool-events`` topic.

Reads its own subscription (``pool-events-monitor``), so it shows what subscribers really
receive: events per kind, the last block, and the lag from the block's timestamp to now.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.table import Table

from dexwatch.core.schemas.alert import V1_COPY_ATTRIBUTE, Alert, parse_alert
from dexwatch.core.schemas.pool_event import EVENT_NAMES
from dexwatch.core.schemas.pool_hour import PoolHour

_WIDTH = {"pool": 42}  # a chain name and a pool name


@dataclass
class PoolStats:
    events: Counter[str] = field(default_factory=Counter)
    retractions: int = 0
    last_block: int = 0
    last_block_time: float = 0.0


def pool_key(chain_id: int | str, pool: str) -> str:
    """A pool's key in the summary: pools on several chains may share an address."""
    return f"{chain_id}:{pool}"


class PoolEventSummary:
    """Thread-safe counters fed by the subscriber callback, per pool (``pool_key``)."""

    def __init__(self, pool_names: dict[str, str] | None = None) -> None:
        self._pool_names = pool_names or {}
        self._pools: dict[str, PoolStats] = defaultdict(PoolStats)
        self._lock = threading.Lock()
        self.total = 0

    def record(self, attributes: dict[str, str], block_number: int, block_time: float) -> None:
        with self._lock:
            key = pool_key(attributes.get("chain_id", "?"), attributes.get("pool", "?"))
            stats = self._pools[key]
            if attributes.get("kind") == "retraction":
                stats.retractions += 1
            else:
                stats.events[attributes.get("event", "?")] += 1
            if block_number >= stats.last_block:
                stats.last_block = block_number
                stats.last_block_time = block_time
            self.total += 1

    def snapshot(self) -> dict[str, PoolStats]:
        with self._lock:
            return {
                pool: PoolStats(Counter(s.events), s.retractions, s.last_block, s.last_block_time)
                for pool, s in self._pools.items()
            }

    def name(self, pool: str) -> str:
        return self._pool_names.get(pool, pool)

    def table(self, now: float | None = None) -> Table:
        now = time.time() if now is None else now
        table = Table(title=f"pool-events: {self.total} messages", expand=False)
        table.add_column("pool", max_width=_WIDTH["pool"])
        for name in EVENT_NAMES:
            table.add_column(name, justify="right")
        table.add_column("retracted", justify="right")
        table.add_column("last block", justify="right")
        table.add_column("lag s", justify="right")
        for pool, stats in sorted(self.snapshot().items(), key=lambda kv: self.name(kv[0])):
            table.add_row(
                self.name(pool),
                *(str(stats.events.get(name, 0)) for name in EVENT_NAMES),
                str(stats.retractions),
                str(stats.last_block),
                f"{max(0.0, now - stats.last_block_time):.1f}",
            )
        return table

    def lines(self, now: float | None = None) -> list[str]:
        """A plain-text form for logs and non-interactive terminals."""
        now = time.time() if now is None else now
        out = []
        for pool, stats in sorted(self.snapshot().items(), key=lambda kv: self.name(kv[0])):
            kinds = " ".join(f"{k}={v}" for k, v in sorted(stats.events.items()))
            out.append(
                f"{self.name(pool)}: {kinds} retracted={stats.retractions} "
                f"last_block={stats.last_block} lag={max(0.0, now - stats.last_block_time):.1f}s"
            )
        return out


def _pull(
    project: str, subscription: str, handle: Callable[[bytes, dict[str, str]], None]
) -> Callable[[], None]:
    """Start a streaming pull calling ``handle(data, attributes)`` per message; returns a
    function that stops it. Every message is acked: these are read-only views."""
    from google.cloud import pubsub_v1

    from dexwatch.core.schemas.topics import subscription_path

    subscriber = pubsub_v1.SubscriberClient()

    def on_message(message) -> None:  # type: ignore[no-untyped-def]
        try:
            handle(message.data, dict(message.attributes))
        except ValueError:
            pass  # unreadable: the pipeline dead-letters it with the reason; a view skips it
        finally:
            message.ack()

    future = subscriber.subscribe(subscription_path(project, subscription), on_message)

    def stop() -> None:
        future.cancel()
        try:
            future.result(timeout=5)
        except Exception:  # noqa: BLE001 - a cancelled pull ends with an exception by design
            pass
        subscriber.close()

    return stop


def subscribe(project: str, subscription: str, summary: PoolEventSummary) -> Callable[[], None]:
    """Feed ``summary`` from a pool-events subscription; returns the function that stops it."""
    from dexwatch.core.schemas.pool_event import PoolEvent

    def record(data: bytes, attributes: dict[str, str]) -> None:
        event = PoolEvent.from_json(data)
        if not event.is_announcement:
            summary.record(attributes, event.block_number, event.block_timestamp)

    return _pull(project, subscription, record)


def subscribe_hourly(project: str, on_record: Callable[[PoolHour], None]) -> Callable[[], None]:
    """Call ``on_record`` for each pool-hourly record (pool-hourly-monitor subscription);
    returns its stop."""
    from dexwatch.core.schemas.topics import HOURLY_MONITOR_SUBSCRIPTION

    return _pull(
        project, HOURLY_MONITOR_SUBSCRIPTION, lambda data, _: on_record(PoolHour.from_json(data))
    )


def describe_hour(record: PoolHour, name: str) -> str:
    """One line for a pool-hourly record."""
    start = datetime.fromtimestamp(record.hour_start, UTC).strftime("%Y-%m-%d %H:%M")
    line = (
        f"{name} {start} UTC: volume ${record.volume_usd:,.0f}, TVL ${record.tvl_usd:,.0f}, "
        f"{record.tx_count} tx"
    )
    return line + (" (quiet hour, filled)" if record.filled else "")


def subscribe_alerts(project: str, on_alert: Callable[[Alert], None]) -> Callable[[], None]:
    """Call ``on_alert`` for each alert (alerts-monitor subscription); returns its stop."""
    from dexwatch.core.schemas.topics import ALERTS_MONITOR_SUBSCRIPTION

    def handle(data: bytes, attributes: dict[str, str]) -> None:
        if V1_COPY_ATTRIBUTE not in attributes:  # a migration's v1 copy of a v2 alert
            on_alert(parse_alert(data))

    return _pull(project, ALERTS_MONITOR_SUBSCRIPTION, handle)
