"""The pools the subgraphs list above chain.pool_filter's thresholds, and the gate that
decides, with the rest of chain.pool_filter, which of the factories' pools are followed.

With ``min_tvl_usd`` or ``min_volume_usd_24h`` set, the publisher asks the subgraphs of its
factories' dexes (subgraph.sources), through the subgraph publisher's gateway client (its
retries, its rate-limit handling, its API key), for

- the pools (V2: pairs) whose ``totalValueLockedUSD`` (``reserveUSD``) is at least
  ``min_tvl_usd``;
- the pools whose hour rows (``poolHourDatas`` / ``pairHourDatas``) starting in the 24 hours
  before the subgraph's indexed block (``_meta``) add up to at least ``min_volume_usd_24h``
  of ``volumeUSD`` (``hourlyVolumeUSD``);

each paged by id after the last one seen, subgraph.page_size (The Graph: at most 1000) at a
time. With both thresholds a pool must pass both; the lists of several subgraphs are joined.

The list is read at start and every ``pool_filter.refresh_s`` (hourly). ``PoolGate`` then
follows a pool the factories create when it passes ``deny`` and ``tokens`` and is allowed
(``allow``, whatever its figures) or listed. A pool that is left out only for want of a
listing (a new pool the subgraphs have not indexed yet has no TVL) waits, its address and
creation block kept in memory, until a refresh lists it: then it is followed from the next
batch on (announced first; its events before that are not published). A followed pool that
falls below a threshold stays followed: unfollowing it would leave the pipeline a pool
that went silent. A refresh that lists pools the gate never saw (they crossed a threshold
while the publisher was stopped, or before it started) has the follower read every pool
creation of the factories once, as a first start does.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any, Protocol

from dexwatch.core.schemas.pool_hour import HOUR_S
from dexwatch.core.settings import FactoryConfig, PoolFilter, Settings, SubgraphSource
from publishers.chain.errors import PoolListError
from publishers.chain.events import Pool
from publishers.subgraph import entities
from publishers.subgraph.entities import EntitySpec
from publishers.subgraph.errors import (
    SubgraphPublisherError,
    SubgraphQueryError,
    SubgraphUnavailable,
)
from publishers.subgraph.gateway import GraphQLClient

log = logging.getLogger("dexwatch.publisher.chain.pool_list")

_DAY_S = 24 * HOUR_S


def gate_from_settings(
    settings: Settings, factories: Sequence[FactoryConfig], resources: ExitStack
) -> PoolGate:
    """The gate of chain.pool_filter for ``factories``; with a threshold, reading the pool
    lists of their dexes' subgraphs (subgraph.sources) through a gateway client that
    ``resources`` closes. Raises ChainPublisherError when a dex has no subgraph."""
    pool_filter = settings.chain.pool_filter
    if not pool_filter.thresholds:
        return PoolGate(pool_filter)
    problem = pool_filter.missing_subgraphs(factories, settings.subgraph.sources)
    if problem:
        raise PoolListError(problem)
    kinds = {(factory.dex, factory.protocol) for factory in factories}
    sources = [s for s in settings.subgraph.sources if (s.dex, s.protocol) in kinds]
    client = resources.enter_context(GraphQLClient.from_settings(settings.subgraph))
    pool_list = SubgraphPoolList(client, sources, pool_filter, settings.subgraph.page_size)
    return PoolGate(pool_filter, pool_list)


class PoolList(Protocol):
    def read(self) -> frozenset[str]:
        """The pool addresses listed now (lower case). Raises SubgraphUnavailable when the
        subgraphs do not answer, SubgraphQueryError when they refuse the queries."""
        ...


def tvl_query(spec: EntitySpec) -> str:
    """One page of the pools with at least $min of TVL, after id $after."""
    return (
        "query PoolsByTvl($min: BigDecimal!, $after: ID!, $first: Int!) "
        f"{{ rows: {spec.pools_collection}(first: $first, orderBy: id, orderDirection: asc, "
        f"where: {{{spec.pools_tvl_field}_gte: $min, id_gt: $after}}) {{ id }} }}"
    )


def volume_query(spec: EntitySpec) -> str:
    """One page of the hour rows with volume that start at $from or later, after id $after."""
    where = f'{spec.hour_field}_gte: $from, {spec.volume_field}_gt: "0", id_gt: $after'
    return (
        "query HourVolumes($from: Int!, $after: ID!, $first: Int!) "
        f"{{ rows: {spec.collection}(first: $first, orderBy: id, orderDirection: asc, "
        f"where: {{{where}}}) {{ id {spec.pool_field} {{ id }} {spec.volume_field} }} }}"
    )


class SubgraphPoolList:
    """The pools ``sources`` list above ``pool_filter``'s thresholds."""

    def __init__(
        self,
        client: GraphQLClient,
        sources: Sequence[SubgraphSource],
        pool_filter: PoolFilter,
        page_size: int = 1000,
    ) -> None:
        if not sources:
            raise PoolListError("chain.pool_filter has a threshold but no subgraph to ask")
        self._client = client
        self._sources = list(sources)
        self._filter = pool_filter
        self._page_size = page_size

    def read(self) -> frozenset[str]:
        listed: set[str] = set()
        for source in self._sources:
            listed |= self._source_pools(source)
        return frozenset(listed)

    def _source_pools(self, source: SubgraphSource) -> set[str]:
        spec = entities.SPECS[source.protocol]
        found: set[str] | None = None
        if self._filter.min_tvl_usd is not None:
            variables = {"min": _decimal(self._filter.min_tvl_usd)}
            found = {
                str(row["id"]).lower()
                for page in self._pages(source, tvl_query(spec), variables, "pools by TVL")
                for row in page
            }
        if self._filter.min_volume_usd_24h is not None:
            volumes = self._volumes(source, spec)
            above = {pool for pool, v in volumes.items() if v >= self._filter.min_volume_usd_24h}
            found = above if found is None else found & above
        return found or set()

    def _volumes(self, source: SubgraphSource, spec: EntitySpec) -> dict[str, float]:
        """Each pool's swap volume (USD) in the hour rows of the 24 hours before the block the
        subgraph has indexed."""
        data = self._client.query(source, entities.META_QUERY, what="_meta")
        try:
            indexed_at = int(data["_meta"]["block"]["timestamp"])
        except (KeyError, TypeError, ValueError) as err:
            raise SubgraphQueryError(
                f"{self._client.shown_url(source)}: _meta lacks the block timestamp ({err!r})"
            ) from None
        volumes: dict[str, float] = defaultdict(float)
        variables = {"from": indexed_at - _DAY_S}
        for page in self._pages(source, volume_query(spec), variables, "hour volumes"):
            for row in page:
                try:
                    volumes[entities.row_pool(spec, row)] += float(row[spec.volume_field])
                except (KeyError, TypeError, ValueError) as err:
                    raise SubgraphQueryError(
                        f"malformed {spec.entity} row {row.get('id')!r}: {err!r}"
                    ) from None
        return volumes

    def _pages(
        self, source: SubgraphSource, query: str, variables: dict[str, Any], what: str
    ) -> Iterator[list[dict[str, Any]]]:
        return self._client.query_pages(
            source, query, variables, self._page_size, f"pool list: {what}"
        )


def _decimal(value: float) -> str:
    """A BigDecimal argument as graph-node takes it: plain notation."""
    return format(value, "f")


# ``created(blocks, last)``: the pools (each through ``PoolGate.follows``, as the factories'
# logs are read) created in ``blocks``, or with None in any block up to ``last``.
Created = Callable[[Sequence[int] | None, int], Iterable[Pool]]


class PoolGate:
    """Which of the pools the factories create are followed: chain.pool_filter, and with a
    threshold the pool list (read at ``start``, and by ``newly_listed`` every refresh_s),
    with the pools that wait for a listing (see the module's doc)."""

    def __init__(
        self,
        pool_filter: PoolFilter,
        pool_list: PoolList | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if pool_filter.thresholds and pool_list is None:
            raise PoolListError("chain.pool_filter has a threshold but no pool list to read")
        self._filter = pool_filter
        self._list = pool_list if pool_filter.thresholds else None
        self._clock = clock
        self._listed: frozenset[str] = frozenset()
        self._next_read = float("-inf")
        # A list was read whose pools may not all be followed yet.
        self._pending = False
        # Left out for want of a listing: address -> creation block.
        self._waiting: dict[str, int] = {}
        # Whether every pool created so far went through ``follows``.
        self._scanned = False

    @property
    def listed(self) -> frozenset[str]:
        return self._listed

    def follows(self, pool: Pool) -> bool:
        """Whether ``pool``, found by its factory, is followed; remembers it if it waits for
        a listing."""
        if self._filter.follows(pool.address, pool.token0, pool.token1, self._listed):
            return True
        if self._list is not None and self._filter.eligible(pool.address, pool.token0, pool.token1):
            self._waiting[pool.address] = pool.created_block
        return False

    def start(self, first_start: bool) -> None:
        """Read the list as the publisher starts. A first start (no checkpoint), which
        discovers every pool created before its start block, cannot go on without it:
        PoolListError; a later one goes on with the pools followed so far. A subgraph that
        refuses the queries (a wrong id, a bad key) is a PoolListError either way."""
        if self._list is None:
            return
        self._scanned = first_start
        try:
            self._read()
        except SubgraphQueryError as err:
            raise PoolListError(f"chain.pool_filter's pool list: {err}") from None
        except SubgraphUnavailable as err:
            if first_start:
                raise PoolListError(
                    f"chain.pool_filter's pool list cannot be read, and a first start (no "
                    f"checkpoint) needs it to choose the pools to follow: {err}"
                ) from None
            log.warning(
                "the pool list cannot be read: following the pools followed so far, reading "
                "it again in %g s: %s",
                self._filter.refresh_s,
                err,
            )

    def newly_listed(
        self, checkpoint_block: int, followed: Container[str], created: Created
    ) -> list[Pool]:
        """The pools created up to ``checkpoint_block``, not ``followed``, that the list
        names now: to follow from the next batch on. Reads the list again when refresh_s
        has passed (a failed read keeps the last list). Until a batch has followed them,
        each call finds them again (a batch read again after the chain moved)."""
        if self._list is not None and self._clock() >= self._next_read:
            try:
                self._read()
            except SubgraphPublisherError as err:
                log.warning("the pool list cannot be read, keeping the last one: %s", err)
        if not self._pending:
            return []
        if self._unseen(followed):
            # Once: every creation so far (the waiting pools are recorded on the way).
            new = [p for p in created(None, checkpoint_block) if p.address not in followed]
        else:
            for address in [a for a in self._waiting if a in followed]:
                del self._waiting[address]
            wanted = {a: b for a, b in self._waiting.items() if a in self._listed}
            blocks = sorted({block for block in wanted.values() if block <= checkpoint_block})
            new = [p for p in created(blocks, checkpoint_block) if p.address in wanted]
        # Until followed, they wait: a batch read again finds them again.
        self._waiting.update((pool.address, pool.created_block) for pool in new)
        self._pending = bool(new)
        if new:
            log.info(
                "following %d more pools the subgraphs list now, from block %d on",
                len(new),
                checkpoint_block + 1,
                extra={"pools": len(new), "from_block": checkpoint_block + 1},
            )
        return new

    def _unseen(self, followed: Container[str]) -> bool:
        """Whether the list names pools neither followed nor waiting while not every pool
        creation has been read: True once, the caller then reads them all."""
        if self._scanned:
            return False
        self._scanned = any(
            pool not in followed and pool not in self._waiting for pool in self._listed
        )
        return self._scanned

    def _read(self) -> None:
        assert self._list is not None
        self._next_read = self._clock() + self._filter.refresh_s
        self._listed = self._list.read()
        self._pending = True
        log.info(
            "the subgraphs list %d pools above chain.pool_filter's thresholds; %d found pools "
            "wait for a listing",
            len(self._listed),
            len(self._waiting),
            extra={"listed_pools": len(self._listed), "waiting_pools": len(self._waiting)},
        )
