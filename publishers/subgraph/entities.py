"""What the publisher reads from each kind of subgraph, the queries, and the normalisation of
both protocols' hour rows into the one ``PoolHour`` record.

Uniswap V3 subgraphs have ``poolHourDatas`` (PoolHourData); Uniswap V2 and SushiSwap V2
subgraphs have ``pairHourDatas`` (PairHourData). The Graph returns BigDecimal and BigInt
values as strings. Rows are paged by ``id`` (``<pool>-<hourIndex>``, unique), ascending
with an ``id_gt`` cursor: the hour field is shared by every pool's row of an hour, so an
``_gt`` cursor on it would skip the rest of an hour cut by a page boundary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour
from dexwatch.core.settings import SubgraphSource
from publishers.subgraph.errors import SubgraphQueryError


@dataclasses.dataclass(frozen=True)
class EntitySpec:
    collection: str  # the query field, e.g. poolHourDatas
    entity: str  # its type, e.g. PoolHourData
    hour_field: str  # the hour's start, unix seconds (Int)
    pool_field: str  # the pool (pair) relation
    value_fields: tuple[str, ...]
    pools_collection: str  # pools / pairs, for the top N by TVL
    pools_tvl_field: str
    volume_field: str  # the hour row's swap volume in USD

    @property
    def selection(self) -> str:
        return " ".join(("id", self.hour_field, f"{self.pool_field} {{ id }}", *self.value_fields))


V3_POOL_HOUR = EntitySpec(
    collection="poolHourDatas",
    entity="PoolHourData",
    hour_field="periodStartUnix",
    pool_field="pool",
    value_fields=(
        "liquidity",
        "token0Price",
        "token1Price",
        "tvlUSD",
        "volumeUSD",
        "feesUSD",
        "txCount",
    ),
    pools_collection="pools",
    pools_tvl_field="totalValueLockedUSD",
    volume_field="volumeUSD",
)
V2_PAIR_HOUR = EntitySpec(
    collection="pairHourDatas",
    entity="PairHourData",
    hour_field="hourStartUnix",
    pool_field="pair",
    value_fields=(
        "reserve0",
        "reserve1",
        "totalSupply",
        "reserveUSD",
        "hourlyVolumeUSD",
        "hourlyTxns",
    ),
    pools_collection="pairs",
    pools_tvl_field="reserveUSD",
    volume_field="hourlyVolumeUSD",
)
SPECS = {"v3": V3_POOL_HOUR, "v2": V2_PAIR_HOUR}

META_QUERY = "{ _meta { block { number timestamp } hasIndexingErrors } }"


def top_pools_query(spec: EntitySpec) -> str:
    return (
        f"query TopPools($n: Int!) {{ {spec.pools_collection}(first: $n, "
        f"orderBy: {spec.pools_tvl_field}, orderDirection: desc) {{ id }} }}"
    )


def rows_query(spec: EntitySpec) -> str:
    """One page of the rows of ``$pools`` with hour in [$from, $to), after id $after."""
    where = (
        f"{spec.pool_field}_in: $pools, {spec.hour_field}_gte: $from, "
        f"{spec.hour_field}_lt: $to, id_gt: $after"
    )
    return (
        "query HourRows($pools: [String!]!, $from: Int!, $to: Int!, $after: ID!, $first: Int!) "
        f"{{ rows: {spec.collection}(first: $first, orderBy: id, orderDirection: asc, "
        f"where: {{{where}}}) {{ {spec.selection} }} }}"
    )


def latest_rows_query(spec: EntitySpec, count: int) -> str:
    """Each of ``count`` pools' ($p0, $p1, ...) latest row before hour $before, one alias each."""
    variables = ", ".join(f"$p{i}: String!" for i in range(count))
    aliases = " ".join(
        f"p{i}: {spec.collection}(first: 1, orderBy: {spec.hour_field}, orderDirection: desc, "
        f"where: {{{spec.pool_field}: $p{i}, {spec.hour_field}_lt: $before}}) "
        f"{{ {spec.selection} }}"
        for i in range(count)
    )
    return f"query LatestRows($before: Int!, {variables}) {{ {aliases} }}"


def row_pool(spec: EntitySpec, row: Mapping[str, Any]) -> str:
    try:
        return str(row[spec.pool_field]["id"]).lower()
    except (KeyError, TypeError) as err:
        raise SubgraphQueryError(
            f"{spec.entity} row without {spec.pool_field} id: {err!r}"
        ) from None


def to_pool_hour(
    source: SubgraphSource, row: Mapping[str, Any], chain_id: int, indexed_block: int
) -> PoolHour:
    """A subgraph hour row as a PoolHour. Raises SubgraphQueryError for a malformed row."""
    spec = SPECS[source.protocol]
    try:
        if source.protocol == "v3":
            values = _v3_values(row)
        else:
            values = _v2_values(row, source.swap_fee)
        return PoolHour(
            chain_id=chain_id,
            dex=source.dex,
            pool=row_pool(spec, row),
            hour_start=int(row[spec.hour_field]),
            indexed_block=indexed_block,
            **values,
        )
    except (KeyError, TypeError, ValueError, ValidationError) as err:
        raise SubgraphQueryError(
            f"malformed {spec.entity} row {row.get('id')!r}: {err}".splitlines()[0]
        ) from None


def _v3_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "volume_usd": _amount(row["volumeUSD"]),
        "tvl_usd": _amount(row["tvlUSD"]),
        "liquidity": _amount(row["liquidity"]),
        "fees_usd": _amount(row["feesUSD"]),
        "tx_count": int(row["txCount"]),
        # The V3 subgraph's token1Price is token1 per token0, i.e. token0 priced in token1
        # units: PoolHour's token0_price. Its token0Price is the inverse.
        "token0_price": _amount(row["token1Price"]),
        "token1_price": _amount(row["token0Price"]),
    }


def _v2_values(row: Mapping[str, Any], swap_fee: float) -> dict[str, Any]:
    reserve0, reserve1 = float(row["reserve0"]), float(row["reserve1"])
    volume = _amount(row["hourlyVolumeUSD"])
    return {
        "volume_usd": volume,
        "tvl_usd": _amount(row["reserveUSD"]),
        "liquidity": _amount(row["totalSupply"]),
        "fees_usd": volume * swap_fee,
        "tx_count": int(row["hourlyTxns"]),
        # Reserves are decimal-adjusted: reserve1 / reserve0 is token0 in token1 units.
        "token0_price": reserve1 / reserve0 if reserve0 > 0 else 0.0,
        "token1_price": reserve0 / reserve1 if reserve1 > 0 else 0.0,
    }


def _amount(value: Any) -> float:
    """A BigDecimal/BigInt string as a float. Subgraphs are known to carry slightly negative
    totals in broken pools (rounding of tracked amounts): those count as zero."""
    return max(0.0, float(value))


def filled_hour(previous: PoolHour, hour_start: int, indexed_block: int) -> PoolHour:
    """The record of an hour the subgraph has no row for (nothing happened in the pool):
    the previous hour's state carried forward, with no volume, fees or transactions."""
    return PoolHour(
        chain_id=previous.chain_id,
        dex=previous.dex,
        pool=previous.pool,
        hour_start=hour_start,
        volume_usd=0.0,
        tvl_usd=previous.tvl_usd,
        liquidity=previous.liquidity,
        fees_usd=0.0,
        tx_count=0,
        token0_price=previous.token0_price,
        token1_price=previous.token1_price,
        filled=True,
        indexed_block=indexed_block,
    )


def hours(start: int, end: int) -> Sequence[int]:
    """The hour starts in [start, end)."""
    return range(start, end, HOUR_S)
