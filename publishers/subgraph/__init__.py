"""`dexwatch publish subgraph`: hourly pool statistics from The Graph (Uniswap V3
``poolHourDatas``, SushiSwap / Uniswap V2 ``pairHourDatas``), normalised into PoolHour
records on the ``pool-hourly`` Pub/Sub topic, one per pool and complete hour.

    from publishers.subgraph import run
    stats = run(settings, once=True)
"""

from __future__ import annotations

import os
import threading

from dexwatch.settings import Settings
from publishers.pubsub import PubSubSink
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
    settings: Settings, once: bool = False, stop: threading.Event | None = None
) -> HourlyStats:
    """Publish complete subgraph hours to Pub/Sub: with ``once`` catch up and return, else
    at every time of subgraph.schedule until ``stop`` is set.

    Raises SubgraphPublisherError (and subclasses) with a message naming the cause; the
    checkpoint (settings.subgraph_checkpoint_path) then still holds the last published hour.
    """
    if settings.pubsub.emulator_host:
        # The google-cloud-pubsub clients find the emulator only through this variable.
        os.environ.setdefault("PUBSUB_EMULATOR_HOST", settings.pubsub.emulator_host)
    store = FileHourCheckpointStore(settings.subgraph_checkpoint_path)
    with (
        GraphQLClient.from_settings(settings.subgraph) as client,
        PubSubSink(settings.pubsub.project, settings.pubsub.publish_timeout_s) as sink,
    ):
        publisher = SubgraphPublisher(
            client, sink, store, settings.subgraph, settings.chain.chain_id
        )
        return publisher.run(once=once, stop=stop)
