"""The loop that publishes complete subgraph hours to ``pool-hourly``.

A pass asks every subgraph how far it has indexed (``_meta.block``); an hour is complete
once every subgraph has indexed a block stamped at or after the hour's end. The complete
hours after the checkpoint are fetched for every followed pool (paged by cursor), turned
into PoolHour records (quiet hours, which subgraphs leave out, filled from the pool's
previous hour), published together, and only then checkpointed: an hour goes out whole for
all pools or not at all.

Run on its own, a pass starts at each time of the cron schedule; while the subgraphs lag
behind the hour that just ended, it looks again every ``lag_poll_s`` until the next time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from dexwatch.core.schemas.pool_event import rfc3339
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour
from dexwatch.core.schemas.topics import POOL_HOURLY
from dexwatch.core.settings import SubgraphSettings, SubgraphSource
from publishers.pubsub import Message, PublishError, Sink
from publishers.subgraph import entities
from publishers.subgraph.checkpoint import FileHourCheckpointStore, HourCheckpoint
from publishers.subgraph.errors import CheckpointError, SubgraphQueryError, SubgraphUnavailable
from publishers.subgraph.gateway import GraphQLClient

log = logging.getLogger("dexwatch.publisher.subgraph")

# Pools per aliased "latest row before" query.
_LOOKUP_CHUNK = 50


@dataclasses.dataclass
class HourlyStats:
    """What one run published."""

    batches: int = 0
    hours: int = 0
    records: int = 0
    filled: int = 0
    # Start of the last hour published (the checkpoint's next_hour - 1 h), None if none was.
    last_hour: int | None = None


@dataclasses.dataclass(frozen=True)
class IndexedBlock:
    number: int
    timestamp: int

    @property
    def complete_until(self) -> int:
        """End of the last hour this block proves fully indexed (blocks come in time order)."""
        return self.timestamp // HOUR_S * HOUR_S


def next_run(schedule: str, after: float) -> float:
    """Unix time of the schedule's next time strictly after ``after`` (cron, UTC)."""
    return croniter(schedule, datetime.fromtimestamp(after, UTC)).get_next(float)


class SubgraphPublisher:
    def __init__(
        self,
        client: GraphQLClient,
        sink: Sink,
        store: FileHourCheckpointStore,
        settings: SubgraphSettings,
        chain_id: int,
        clock: Callable[[], float] = time.time,
        hours: tuple[int, int] | None = None,
        on_batch: Callable[[HourlyStats], None] | None = None,
    ) -> None:
        """``hours`` (first, end), whole hours in unix s: publish only [first, end), from
        first on when there is no checkpoint (a backfill), else as far as is complete."""
        self._client = client
        self._sink = sink
        self._store = store
        self._settings = settings
        self._chain_id = chain_id
        self._clock = clock
        self._checkpoint: HourCheckpoint | None = None
        self._hours = hours
        self._on_batch = on_batch
        self.stats = HourlyStats()

    # --- running ----------------------------------------------------------------------------

    def run(self, once: bool = False, stop: threading.Event | None = None) -> HourlyStats:
        """With ``once``, publish every complete hour (waiting up to catch_up_wait_s for the
        subgraphs to index the hour that just ended) and return; else do so at every time
        of the schedule until ``stop`` is set."""
        stop = stop or threading.Event()
        self._checkpoint = self._load()
        if once:
            self._catch_up(stop, give_up_at=self._clock() + self._settings.catch_up_wait_s)
            return self.stats
        while not stop.is_set():
            upcoming = next_run(self._settings.schedule, self._clock())
            try:
                self._catch_up(stop, give_up_at=upcoming)
            except (SubgraphUnavailable, PublishError) as err:
                log.error("pass failed, trying again at the next scheduled time: %s", err)
            log.info("next pass at %s", rfc3339(int(upcoming)))
            # Not a moment early: the pass must see the hour that ends then as ended.
            while not stop.is_set() and self._clock() < upcoming:
                stop.wait(upcoming - self._clock())
        return self.stats

    def _load(self) -> HourCheckpoint | None:
        checkpoint = self._store.load()
        if checkpoint is not None and checkpoint.chain_id != self._chain_id:
            raise CheckpointError(
                f"the checkpoint {self._store.path} belongs to chain {checkpoint.chain_id}, not "
                f"to chain.chain_id={self._chain_id}: point subgraph.checkpoint_path elsewhere"
            )
        if checkpoint is not None:
            self.stats.last_hour = checkpoint.next_hour - HOUR_S
        return checkpoint

    def _catch_up(self, stop: threading.Event, give_up_at: float) -> None:
        """Publish what is complete; while the hour that ended last on the wall clock is not,
        look again every lag_poll_s until ``give_up_at``."""
        while True:
            self.publish_complete_hours()
            ended = int(self._clock()) // HOUR_S * HOUR_S
            if self._hours is not None:
                ended = min(ended, self._hours[1])
            published_until = self._checkpoint.next_hour if self._checkpoint else None
            if published_until is not None and published_until >= ended:
                return
            if self._clock() + self._settings.lag_poll_s > give_up_at:
                log.info(
                    "the subgraphs have not indexed past %s yet; published up to %s",
                    rfc3339(ended),
                    "nothing" if published_until is None else rfc3339(published_until),
                )
                return
            if stop.wait(self._settings.lag_poll_s):
                return

    # --- one pass ---------------------------------------------------------------------------

    def publish_complete_hours(self) -> int:
        """Publish every hour after the checkpoint that all subgraphs have indexed past;
        returns how many hours were published."""
        sources = self._settings.sources
        indexed = [self._indexed_block(source) for source in sources]
        complete_until = min(block.complete_until for block in indexed)
        if complete_until <= 0:
            log.info("a subgraph has not indexed any block yet")
            return 0
        if self._hours is not None:
            complete_until = min(complete_until, self._hours[1])
        first = (
            self._hours[0]
            if self._hours is not None
            else complete_until - self._settings.first_run_hours * HOUR_S
        )
        checkpoint = self._checkpoint or HourCheckpoint(self._chain_id, first)
        self._checkpoint = checkpoint
        if checkpoint.next_hour >= complete_until:
            return 0
        pools = [self._pools(source) for source in sources]
        published_hours = 0
        while checkpoint.next_hour < complete_until:
            start = checkpoint.next_hour
            end = min(complete_until, start + self._settings.hours_per_batch * HOUR_S)
            records: list[PoolHour] = []
            for source, source_pools, block in zip(sources, pools, indexed, strict=True):
                records += self._source_hours(
                    source, source_pools, start, end, block.number, checkpoint
                )
            self._sink.publish(POOL_HOURLY, [_message(record) for record in records])
            checkpoint = checkpoint.advanced(end, records)
            self._store.save(checkpoint)
            self._checkpoint = checkpoint
            self._count(start, end, records)
            if self._on_batch is not None:
                self._on_batch(self.stats)
            published_hours += (end - start) // HOUR_S
        return published_hours

    def _count(self, start: int, end: int, records: list[PoolHour]) -> None:
        filled = sum(record.filled for record in records)
        self.stats.batches += 1
        self.stats.hours += (end - start) // HOUR_S
        self.stats.records += len(records)
        self.stats.filled += filled
        self.stats.last_hour = end - HOUR_S
        log.info(
            "published hours %s to %s: %d records (%d filled) of %d pools",
            rfc3339(start),
            rfc3339(end),
            len(records),
            filled,
            len({record.pool for record in records}),
            extra={
                "from_hour": start,
                "to_hour": end,
                "records": len(records),
                "filled": filled,
            },
        )

    def _indexed_block(self, source: SubgraphSource) -> IndexedBlock:
        data = self._client.query(source, entities.META_QUERY, what="_meta")
        try:
            meta = data["_meta"]
            block = meta["block"]
            indexed = IndexedBlock(int(block["number"]), int(block["timestamp"]))
        except (KeyError, TypeError, ValueError) as err:
            raise SubgraphQueryError(
                f"{self._client.shown_url(source)}: _meta lacks block number or timestamp "
                f"({err!r}); graph-node 0.30 or later is needed"
            ) from None
        if meta.get("hasIndexingErrors"):
            log.warning(
                "%s reports indexing errors: it may have stopped at block %d",
                self._client.shown_url(source),
                indexed.number,
            )
        return indexed

    def _pools(self, source: SubgraphSource) -> list[str]:
        if source.pools:
            return sorted(source.pools)
        spec = entities.SPECS[source.protocol]
        data = self._client.query(
            source,
            entities.top_pools_query(spec),
            {"n": self._settings.top_n},
            what=f"top {self._settings.top_n} {spec.pools_collection}",
        )
        return sorted({str(pool["id"]).lower() for pool in data[spec.pools_collection]})

    def _source_hours(
        self,
        source: SubgraphSource,
        pools: Sequence[str],
        start: int,
        end: int,
        indexed_block: int,
        checkpoint: HourCheckpoint,
    ) -> list[PoolHour]:
        """The records of ``pools`` for the hours [start, end), quiet hours filled."""
        if not pools:
            return []
        spec = entities.SPECS[source.protocol]
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for row in self._rows(source, pools, start, end):
            rows[(entities.row_pool(spec, row), int(row[spec.hour_field]))] = row
        latest: dict[str, PoolHour | None] = {pool: checkpoint.latest.get(pool) for pool in pools}
        unknown = [pool for pool, record in latest.items() if record is None]
        latest.update(self._latest_before(source, unknown, start, indexed_block))
        records = []
        for hour in entities.hours(start, end):
            for pool in pools:
                row = rows.get((pool, hour))
                previous = latest[pool]
                if row is not None:
                    record = entities.to_pool_hour(source, row, self._chain_id, indexed_block)
                elif previous is not None:
                    record = entities.filled_hour(previous, hour, indexed_block)
                else:
                    continue  # nothing known of the pool yet: nothing to carry forward
                latest[pool] = record
                records.append(record)
        return records

    def _rows(
        self, source: SubgraphSource, pools: Sequence[str], start: int, end: int
    ) -> list[dict[str, Any]]:
        """Every row of ``pools`` in [start, end), page by page after the last id seen."""
        spec = entities.SPECS[source.protocol]
        variables = {"pools": list(pools), "from": start, "to": end}
        pages = self._client.query_pages(
            source, entities.rows_query(spec), variables, self._settings.page_size, spec.collection
        )
        return [row for page in pages for row in page]

    def _latest_before(
        self, source: SubgraphSource, pools: Sequence[str], before: int, indexed_block: int
    ) -> dict[str, PoolHour]:
        """Each pool's last row before hour ``before``, for pools the checkpoint knows
        nothing of (a first run, or a pool new in the top N)."""
        spec = entities.SPECS[source.protocol]
        found: dict[str, PoolHour] = {}
        for offset in range(0, len(pools), _LOOKUP_CHUNK):
            chunk = pools[offset : offset + _LOOKUP_CHUNK]
            variables: dict[str, Any] = {"before": before}
            variables.update({f"p{i}": pool for i, pool in enumerate(chunk)})
            data = self._client.query(
                source,
                entities.latest_rows_query(spec, len(chunk)),
                variables,
                what=f"latest {spec.collection}",
            )
            for i, pool in enumerate(chunk):
                for row in data.get(f"p{i}") or []:
                    found[pool] = entities.to_pool_hour(source, row, self._chain_id, indexed_block)
        return found


def _message(record: PoolHour) -> Message:
    return Message(record.to_json(), record.attributes(), f"{record.chain_id}:{record.pool}")
