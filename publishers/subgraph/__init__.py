"""`dexwatch publish subgraph`: hourly pool statistics from The Graph (Uniswap V3
``poolHourDatas``, SushiSwap / Uniswap V2 ``pairHourDatas``), normalised into PoolHour
records on the ``pool-hourly`` Pub/Sub topic, one per pool and complete hour.

    from publishers.subgraph import run
    stats = run(settings, once=True)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from dexwatch.core.emulator import use_pubsub_emulator
from dexwatch.core.settings import Settings
from publishers.pubsub import PubSubSink
from publishers.recording import RecordingSink
from publishers.subgraph.checkpoint import FileHourCheckpointStore
from publishers.subgraph.errors import (
    CheckpointError,
    SubgraphPublisherError,
    SubgraphQueryError,
    SubgraphSchemaError,
    SubgraphUnavailable,
)
from publishers.subgraph.gateway import GraphQLClient
from publishers.subgraph.publisher import HourlyStats, SubgraphPublisher

__all__ = [
    "CheckpointError",
    "HourlyStats",
    "SubgraphPublisherError",
    "SubgraphQueryError",
    "SubgraphSchemaError",
    "SubgraphUnavailable",
    "run",
]


def run(
    settings: Settings,
    once: bool = False,
    stop: threading.Event | None = None,
    record_to: Path | None = None,
    hours: tuple[int, int] | None = None,
    on_batch: Callable[[HourlyStats], None] | None = None,
) -> HourlyStats:
    """Publish complete subgraph hours to Pub/Sub (or record them as files under
    ``record_to``): with ``once`` catch up and return, else at every time of
    subgraph.schedule until ``stop`` is set. ``hours`` (first, end) bounds what is published
    to [first, end) (a backfill); ``on_batch`` hears of each published batch.

    Raises SubgraphPublisherError (and subclasses) with a message naming the cause; the
    checkpoint (settings.subgraph_checkpoint_path) then still holds the last published hour.
    """
    use_pubsub_emulator(settings.pubsub.emulator_host, replace=False)
    store = FileHourCheckpointStore(settings.subgraph_checkpoint_path)
    sink = (
        RecordingSink(record_to)
        if record_to is not None
        else PubSubSink(settings.pubsub.project, settings.pubsub.publish_timeout_s)
    )
    with GraphQLClient.from_settings(settings.subgraph) as client, sink:
        publisher = SubgraphPublisher(
            client, sink, store, settings.subgraph, settings.chain.chain_id,
            hours=hours, on_batch=on_batch,
        )  # fmt: skip
        return publisher.run(once=once, stop=stop)
