"""The loop that follows the chain and publishes pool events, batch by batch.

Per batch: read the headers, check that the first block extends the checkpointed one (else
walk back to the fork point and retract what the orphaned blocks published), discover new
pools from factory logs, read the pool logs, check every log belongs to the headers read,
publish, wait for all acks, and only then save the checkpoint. Only blocks at least
``confirmations`` deep are published.

Each pool is announced (its factory's creation log, as a pool event of the pool, under the
pool's ordering key) before any event of it: the pipeline scores announced pools only.
After a start, each pool followed so far is announced again before its first event, so a
pipeline started afresh knows it before it scores it; the pipeline drops the repeats as
duplicates. (Announcing every pool at start instead cost a start of 10,000 pools a quarter
of a second here, and 855,000 pools a backlog of minutes: most pools are quiet.)
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.schemas.topics import POOL_EVENTS, POOL_EVENTS_DLQ
from dexwatch.core.settings import ChainSettings, FactoryConfig
from publishers.chain.abi import LogDecodeError
from publishers.chain.checkpoint import Checkpoint, CheckpointStore
from publishers.chain.errors import (
    ChainPublisherError,
    CheckpointError,
    ReorgTooDeepError,
)
from publishers.chain.events import (
    POOL_CREATED_TOPICS,
    POOL_EVENT_TOPICS,
    Pool,
    announced,
    decode_pool_created,
    decode_pool_logs,
    raw_event_id,
)
from publishers.chain.pool_list import PoolGate
from publishers.chain.rpc import BlockHeader, RpcClient
from publishers.chain.senders import SenderReader
from publishers.chain.tokens import TokenDecimals
from publishers.pubsub import Message, Sink, dead_letter

log = logging.getLogger("dexwatch.publisher.chain")


@dataclasses.dataclass
class PublishStats:
    """What one run published."""

    batches: int = 0
    events: int = 0
    # Pool announcements sent (repeats at a start included).
    announcements: int = 0
    retractions: int = 0
    rejected: int = 0
    # Pools created by the factories that chain.pool_filter leaves out.
    pools_filtered: int = 0
    # Logs of the pool events' topics from contracts not followed (reading by topic).
    foreign_logs: int = 0
    # Tokens of followed pools whose decimals() gave no answer (their decimals are None).
    tokens_without_decimals: int = 0
    # Transactions whose senders came with their blocks' receipts (chain.receipts_min_share).
    senders_from_receipts: int = 0
    # Last block published (the checkpoint's), None if nothing was.
    last_block: int | None = None


class _ChainMoved(Exception):
    """The chain changed while a batch was being read: read it again."""


@dataclasses.dataclass(frozen=True)
class _Batch:
    first: int
    last: int
    headers: Mapping[int, BlockHeader]
    new_pools: list[Pool]
    events: list[PoolEvent]
    rejected: list[tuple[dict[str, Any], str]]


class ChainFollower:
    """Follows one chain's factories and their pools, publishing their events to ``topic``
    (retractions after a reorg too; undecodable logs to the dead-letter topic)."""

    def __init__(
        self,
        rpc: RpcClient,
        sink: Sink,
        store: CheckpointStore,
        chain: ChainSettings,
        factories: Sequence[FactoryConfig],
        gate: PoolGate | None = None,
        topic: str = POOL_EVENTS,
    ) -> None:
        if not factories:
            raise ChainPublisherError("no factories to follow: set chain.factories")
        self._rpc = rpc
        self._sink = sink
        self._topic = topic
        self._store = store
        self._chain = chain
        self._factories = {factory.address: factory for factory in factories}
        self._senders = SenderReader(rpc, chain)
        # Pools followed before this start that have not been announced again since.
        self._not_announced_yet: set[str] = set()
        self._decimals = TokenDecimals(rpc)
        self._gate = gate or PoolGate(chain.pool_filter)  # chain.pool_filter, its pool list
        self.stats = PublishStats()

    @property
    def start_block(self) -> int:
        earliest_factory = min(factory.start_block for factory in self._factories.values())
        return max(self._chain.start_block, earliest_factory)

    def run(
        self,
        once: bool = False,
        stop: threading.Event | None = None,
        until_block: int | None = None,
        on_batch: Callable[[PublishStats], None] | None = None,
    ) -> PublishStats:
        """Publish up to the safe head (or ``until_block``, if earlier); with ``once`` return
        then, else follow the chain until ``stop`` is set. ``on_batch`` hears of every
        published batch. Raises ChainPublisherError subclasses with a clear message."""
        stop = stop or threading.Event()
        self._until_block = until_block
        self._on_batch = on_batch
        node_chain_id = self._rpc.chain_id()
        if node_chain_id != self._chain.chain_id:
            raise ChainPublisherError(
                f"the RPC node serves chain {node_chain_id}, settings say chain.chain_id="
                f"{self._chain.chain_id}"
            )
        self._checkpoint = self._load()
        while not stop.is_set():
            if not self._step():
                if once:
                    break
                stop.wait(self._chain.poll_interval_s)
        return self.stats

    def _load(self) -> Checkpoint:
        checkpoint = self._store.load()
        self._gate.start(first_start=checkpoint is None)
        if checkpoint is None:
            pools = self._with_decimals(self._pools_before(self.start_block).values())
            checkpoint = Checkpoint(self._chain.chain_id, self.start_block - 1, None, pools=pools)
        elif checkpoint.chain_id != self._chain.chain_id:
            raise CheckpointError(
                f"the checkpoint belongs to chain {checkpoint.chain_id}, not to chain.chain_id="
                f"{self._chain.chain_id}: point chain.checkpoint_path elsewhere"
            )
        else:
            self.stats.last_block = checkpoint.block_number
            pools = self._with_announcements(checkpoint.pools)
            checkpoint = dataclasses.replace(checkpoint, pools=self._with_decimals(pools.values()))
            if any(not pool.decimals_read for pool in pools.values()):
                self._store.save(checkpoint)  # lines from before decimals were kept: once
        self._not_announced_yet = set(checkpoint.pools)
        return checkpoint

    def _with_announcements(self, pools: Mapping[str, Pool]) -> dict[str, Pool]:
        """``pools`` with their announcements: a checkpoint written before announcements
        existed has none, so their creation logs are read again."""
        missing = sorted({p.created_block for p in pools.values() if p.announcement is None})
        if not missing:
            return dict(pools)
        found: dict[str, Pool] = {}
        for block in missing:
            rejected: list[tuple[dict[str, Any], str]] = []
            found.update((p.address, p) for p in self._discover_pools(block, block, rejected))
            self._dead_letter(rejected)
        return {address: found.get(address, pool) for address, pool in pools.items()}

    def _with_decimals(self, pools: Iterable[Pool]) -> dict[str, Pool]:
        """``pools`` by address, with their tokens' decimals (read once per token)."""
        filled, unreadable = self._decimals.fill(pools)
        self.stats.tokens_without_decimals += unreadable
        return {pool.address: pool for pool in filled}

    def _announced_again(self, events: Iterable[PoolEvent]) -> list[PoolEvent]:
        """The announcements of the pools of ``events`` not announced since the start."""
        pools = {event.pool for event in events} & self._not_announced_yet
        self._not_announced_yet -= pools
        known = [self._checkpoint.pools.get(pool) for pool in sorted(pools)]
        return [pool.announcement for pool in known if pool and pool.announcement]

    def _pools_before(self, block: int) -> dict[str, Pool]:
        """Pools the factories created before ``block``: when chain.start_block is later than
        a factory's start_block, publishing starts there but the older pools are followed too."""
        earliest_factory = min(factory.start_block for factory in self._factories.values())
        if earliest_factory >= block:
            return {}
        rejected: list[tuple[dict[str, Any], str]] = []
        for _ in range(self._chain.retry.attempts):
            try:
                pools = self._discover_pools(earliest_factory, block - 1, rejected)
                break
            except _ChainMoved as moved:
                rejected.clear()
                log.warning("chain moved while reading pool creations: %s", moved)
        else:
            raise ChainPublisherError(
                f"the chain kept changing while pool creations before block {block} were read"
            )
        self._dead_letter(rejected)
        log.info(
            "found %d pools created before block %d",
            len(pools),
            block,
            extra={"pools": len(pools), "start_block": block},
        )
        return {pool.address: pool for pool in pools}

    def _step(self) -> bool:
        """Publish one batch or handle a reorg; False when there is nothing to do yet."""
        head = self._rpc.block_number()
        first = self._checkpoint.block_number + 1
        last = min(first + self._chain.batch_blocks - 1, head - self._chain.confirmations)
        if self._until_block is not None:
            last = min(last, self._until_block)
        if first > last:
            return self._check_tip()
        for _ in range(self._chain.retry.attempts):
            try:
                batch = self._read(first, last)
                break
            except _ChainMoved as moved:
                log.warning("chain moved while reading blocks %d-%d: %s", first, last, moved)
        else:
            raise ChainPublisherError(
                f"the chain kept changing while blocks {first}-{last} were read "
                f"({self._chain.retry.attempts} tries): is chain.confirmations too low?"
            )
        if batch is None:
            self._rewind()
        else:
            self._publish(batch, head)
            if self._on_batch is not None:
                self._on_batch(self.stats)
        return True

    def _check_tip(self) -> bool:
        """When caught up: a reorg may have replaced the checkpointed block without adding one."""
        number, expected = self._checkpoint.block_number, self._checkpoint.block_hash
        if expected is None:
            return False
        header = self._rpc.get_headers([number])[number]
        if header is not None and header.hash == expected:
            return False
        self._rewind()
        return True

    def _read(self, first: int, last: int) -> _Batch | None:
        """The batch [first, last], or None if ``first`` does not extend the checkpoint."""
        tail = range(max(first, last - self._chain.reorg_window + 1), last + 1)
        headers = self._headers({first, *tail})
        for number in tail[1:]:
            if headers[number].parent_hash != headers[number - 1].hash:
                raise _ChainMoved(f"block {number} does not extend block {number - 1}")
        expected_parent = self._checkpoint.block_hash
        if expected_parent is not None and headers[first].parent_hash != expected_parent:
            return None

        rejected: list[tuple[dict[str, Any], str]] = []
        found = self._discover_pools(first, last, rejected, headers)
        found += self._gate.newly_listed(first - 1, self._checkpoint.pools, self._created)
        new_pools = list(self._with_decimals(found).values())
        pools = {**self._checkpoint.pools, **{pool.address: pool for pool in new_pools}}
        logs = self._consistent(self._pool_logs(first, last, pools), headers, rejected)
        decoded = decode_pool_logs(
            logs, self._chain.chain_id, pools, {n: h.timestamp for n, h in headers.items()}
        )
        events = self._senders.with_senders(decoded.events, headers)
        self.stats.senders_from_receipts = self._senders.from_receipts
        return _Batch(first, last, headers, new_pools, events, rejected + decoded.rejected)

    def _pool_logs(self, first: int, last: int, pools: Mapping[str, Pool]) -> list[dict[str, Any]]:
        """The followed pools' event logs in [first, last]: asked by address for a few pools,
        by topic for many (an address list of thousands is refused or slow)."""
        if not pools:
            return []
        if len(pools) <= self._chain.max_log_addresses:
            return self._rpc.get_logs(first, last, sorted(pools), [POOL_EVENT_TOPICS])
        logs = self._rpc.get_logs(first, last, None, [POOL_EVENT_TOPICS])
        followed = [raw for raw in logs if str(raw.get("address", "")).lower() in pools]
        self.stats.foreign_logs += len(logs) - len(followed)
        return followed

    def _headers(self, numbers: Iterable[int]) -> dict[int, BlockHeader]:
        headers = self._rpc.get_headers(numbers)
        gone = sorted(n for n, header in headers.items() if header is None)
        if gone:
            raise _ChainMoved(f"the node no longer has block(s) {gone}")
        return headers  # type: ignore[return-value]  # no None left

    def _created(self, blocks: Sequence[int] | None, last: int) -> list[Pool]:
        """The pools followed of those created in ``blocks`` (None: up to ``last``)."""
        if blocks is None:
            return list(self._pools_before(last + 1).values())
        return [pool for block in blocks for pool in self._discover_pools(block, block, [])]

    def _discover_pools(
        self,
        first: int,
        last: int,
        rejected: list[tuple[dict[str, Any], str]],
        headers: dict[int, BlockHeader] | None = None,
    ) -> list[Pool]:
        """The pools created in [first, last], each with its announcement (``headers`` gains
        the headers of their blocks; a creation log of another version of its block means
        the chain moved)."""
        factories = [f.address for f in self._factories.values() if f.start_block <= last]
        if not factories:
            return []
        logs = self._rpc.get_logs(first, last, factories, [POOL_CREATED_TOPICS])
        found = []
        for raw in logs:
            factory = self._factories.get(str(raw.get("address", "")).lower())
            try:
                if factory is None:
                    raise LogDecodeError(f"not from a followed factory: {raw.get('address')!r}")
                pool = decode_pool_created(raw, factory)
            except (LogDecodeError, KeyError, TypeError, ValueError) as err:
                rejected.append((raw, f"pool creation log: {err}"))
                continue
            if pool.created_block < factory.start_block:
                continue
            if self._gate.follows(pool):
                found.append((pool, raw))
            else:
                self.stats.pools_filtered += 1
        if not found:
            return []
        headers = {} if headers is None else headers
        missing = {pool.created_block for pool, _ in found} - headers.keys()
        if missing:
            headers.update(self._headers(missing))
        pools = []
        for pool, raw in found:
            header = headers[pool.created_block]
            if str(raw.get("blockHash", "")).lower() != header.hash:
                raise _ChainMoved(f"a log of block {pool.created_block} is from another version")
            try:
                pools.append(announced(pool, raw, self._chain.chain_id, header.timestamp))
            except LogDecodeError as err:
                rejected.append((raw, str(err)))
        return pools

    def _consistent(
        self,
        logs: list[dict[str, Any]],
        headers: dict[int, BlockHeader],
        rejected: list[tuple[dict[str, Any], str]],
    ) -> list[dict[str, Any]]:
        """``logs`` after checking each belongs to the block hashes read (``headers`` gains the
        headers of their blocks); logs without a readable block are rejected."""
        located: list[tuple[int, dict[str, Any]]] = []
        for raw in logs:
            try:
                located.append((int(raw["blockNumber"], 16), raw))
            except (KeyError, TypeError, ValueError) as err:
                rejected.append((raw, f"malformed log: {err!r}"))
        missing = {number for number, _ in located} - headers.keys()
        if missing:
            headers.update(self._headers(missing))
        for number, raw in located:
            if str(raw.get("blockHash", "")).lower() != headers[number].hash:
                raise _ChainMoved(f"a log of block {number} is from another version of it")
        return [raw for _, raw in located]

    def _publish(self, batch: _Batch, head: int) -> None:
        announcements = [pool.announcement for pool in batch.new_pools if pool.announcement]
        again = self._announced_again(batch.events)
        # Announcements go first: a pool's events follow under the same ordering key.
        self._sink.publish(
            self._topic, [_message(event) for event in (*again, *announcements, *batch.events)]
        )
        self.stats.announcements += len(again) + len(announcements)
        self._dead_letter(batch.rejected)
        hashes = {n: h.hash for n, h in batch.headers.items()}
        if self._checkpoint.block_hash is None and batch.first > 0:
            # Lets a fork right below the first block be found too.
            hashes[batch.first - 1] = batch.headers[batch.first].parent_hash
        self._checkpoint = self._checkpoint.advanced(
            batch.last,
            batch.headers[batch.last].hash,
            hashes,
            [*announcements, *batch.events],
            batch.new_pools,
            self._chain.reorg_window,
        )
        self._store.save(self._checkpoint)
        self.stats.batches += 1
        self.stats.events += len(batch.events)
        self.stats.rejected += len(batch.rejected)
        self.stats.last_block = batch.last
        log.info(
            "published blocks %d-%d: %d events, %d rejected, %d new pools, %d blocks behind head",
            batch.first,
            batch.last,
            len(batch.events),
            len(batch.rejected),
            len(batch.new_pools),
            head - batch.last,
            extra={
                "from_block": batch.first,
                "to_block": batch.last,
                "events": len(batch.events),
                "rejected": len(batch.rejected),
                "lag_blocks": head - batch.last,
            },
        )

    def _dead_letter(self, rejected: list[tuple[dict[str, Any], str]]) -> None:
        """Log each rejected log once and publish it with its reason to the dead-letter topic."""
        if not rejected:
            return
        chain_id = self._chain.chain_id
        letters = []
        for raw, reason in rejected:
            event_id = raw_event_id(chain_id, raw)
            log.warning("rejected log %s: %s", event_id, reason, extra={"event_id": event_id})
            attributes = {"event_id": event_id, "chain_id": str(chain_id)}
            letters.append(dead_letter({"log": raw}, reason, attributes))
        self._sink.publish(POOL_EVENTS_DLQ, letters)

    def _rewind(self) -> None:
        """Walk back to the fork point, retract the orphaned blocks' events, then checkpoint
        the fork point."""
        kept = self._checkpoint.recent_hashes
        numbers = sorted(kept, reverse=True)
        canonical = self._rpc.get_headers(numbers)
        fork = next(
            (n for n in numbers if (h := canonical[n]) is not None and h.hash == kept[n]), None
        )
        if fork is None:
            raise ReorgTooDeepError(
                f"the chain forked below block {min(numbers, default=0)}, the oldest of the "
                f"{len(numbers)} block hashes kept (chain.reorg_window="
                f"{self._chain.reorg_window}): events published from there on may be orphaned; "
                "republish from an older chain.start_block with a fresh checkpoint"
            )
        orphaned = self._checkpoint.orphaned_events(fork)
        self._sink.publish(self._topic, [_message(event.retraction()) for event in orphaned])
        log.warning(
            "reorg: blocks %d-%d left the chain, retracted %d events",
            fork + 1,
            self._checkpoint.block_number,
            len(orphaned),
            extra={"fork_block": fork, "retractions": len(orphaned)},
        )
        self._checkpoint = self._checkpoint.rewound(fork)
        self._store.save(self._checkpoint)
        self.stats.retractions += len(orphaned)
        self.stats.last_block = fork


def _message(event: PoolEvent) -> Message:
    return Message(event.to_json(), event.attributes(), event.ordering_key)
