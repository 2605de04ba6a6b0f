"""`dexwatch publish chain`: Uniswap V3 / V2 / SushiSwap pool events from a JSON-RPC node to
the ``pool-events`` Pub/Sub topic, exactly once modulo duplicates of the same event_id,
with retractions when a reorg orphans published blocks.

    from publishers.chain import run
    stats = run(settings, once=True)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from dexwatch.core.emulator import use_pubsub_emulator
from dexwatch.core.schemas.topics import POOL_EVENTS
from dexwatch.core.settings import Settings
from publishers.chain.checkpoint import FileCheckpointStore
from publishers.chain.errors import (
    ChainPublisherError,
    CheckpointError,
    PoolListError,
    ReorgTooDeepError,
    RpcError,
    RpcUnavailable,
)
from publishers.chain.follower import ChainFollower, PublishStats
from publishers.chain.pool_list import gate_from_settings
from publishers.chain.rpc import RpcClient
from publishers.pubsub import PubSubSink
from publishers.recording import RecordingSink

__all__ = [
    "ChainPublisherError",
    "CheckpointError",
    "PoolListError",
    "PublishStats",
    "ReorgTooDeepError",
    "RpcError",
    "RpcUnavailable",
    "run",
]


def run(
    settings: Settings,
    once: bool = False,
    stop: threading.Event | None = None,
    record_to: Path | None = None,
    until_block: int | None = None,
    on_batch: Callable[[PublishStats], None] | None = None,
) -> PublishStats:
    """Publish pool events to Pub/Sub (or record them as files under ``record_to``): with
    ``once`` up to the safe head (head minus chain.confirmations) or ``until_block`` and
    return, else follow the chain until ``stop`` is set. ``on_batch`` hears of each batch.

    Raises ChainPublisherError (and subclasses) with a message naming the cause; the
    checkpoint (settings.checkpoint_path) then still holds the last fully published batch.
    """
    use_pubsub_emulator(settings.pubsub.emulator_host, replace=False)
    if not settings.chain.factories:
        raise ChainPublisherError("chain.factories is empty: configure the factories to follow")
    followed = list(settings.chain.factories)
    with ExitStack() as resources:
        gate = gate_from_settings(settings, followed, resources)
        sink = resources.enter_context(
            RecordingSink(record_to)
            if record_to is not None
            else PubSubSink(settings.pubsub.project, settings.pubsub.publish_timeout_s)
        )
        rpc = resources.enter_context(RpcClient.from_settings(settings.chain))
        store = FileCheckpointStore(settings.checkpoint_path)
        # A recording is read back as the pool-events stream, whatever the chain's topic.
        topic = POOL_EVENTS if record_to is not None else settings.chain.events_topic
        follower = ChainFollower(rpc, sink, store, settings.chain, followed, gate, topic)
        return follower.run(once=once, stop=stop, until_block=until_block, on_batch=on_batch)
