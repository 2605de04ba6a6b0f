"""The part of the Uniswap V3 and SushiSwap V2 subgraph schemas that dexwatch queries, served
by graphql-core with graph-node's query semantics.

Entities keep their real names, fields and types; BigInt and BigDecimal travel as strings,
as graph-node sends them. Collections take ``first`` (default 100, at most 1000), ``skip``
(at most 5000), ``orderBy`` / ``orderDirection`` (id ascending by default) and ``where``
with graph-node's operator suffixes (``_not``, ``_gt``, ``_gte``, ``_lt``, ``_lte``,
``_in``, ``_not_in``) on every scalar field and on relations by id. ``_meta`` tells the
block indexed so far. Validation errors read like graph-node's ("Type `PoolHourData` has no
field `x`").
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from graphql import GraphQLError, GraphQLSchema, build_schema, graphql_sync

MAX_FIRST = 1000
MAX_SKIP = 5000
_SCALAR_FILTERS = ("", "_not", "_gt", "_lt", "_gte", "_lte", "_in", "_not_in")


@dataclasses.dataclass(frozen=True)
class EntityType:
    name: str
    collection: str
    # field name -> GraphQL type name (ID, Int, BigInt, BigDecimal) or a related entity's name
    fields: Mapping[str, str]


_POOL = EntityType(
    "Pool",
    "pools",
    {
        "id": "ID",
        "totalValueLockedUSD": "BigDecimal",
        "liquidity": "BigInt",
        "volumeUSD": "BigDecimal",
        "txCount": "BigInt",
    },
)
_POOL_HOUR_DATA = EntityType(
    "PoolHourData",
    "poolHourDatas",
    {
        "id": "ID",
        "periodStartUnix": "Int",
        "pool": "Pool",
        "liquidity": "BigInt",
        "sqrtPrice": "BigInt",
        "token0Price": "BigDecimal",
        "token1Price": "BigDecimal",
        "tick": "BigInt",
        "tvlUSD": "BigDecimal",
        "volumeToken0": "BigDecimal",
        "volumeToken1": "BigDecimal",
        "volumeUSD": "BigDecimal",
        "feesUSD": "BigDecimal",
        "txCount": "BigInt",
        "open": "BigDecimal",
        "high": "BigDecimal",
        "low": "BigDecimal",
        "close": "BigDecimal",
    },
)
_PAIR = EntityType(
    "Pair",
    "pairs",
    {
        "id": "ID",
        "reserveUSD": "BigDecimal",
        "totalSupply": "BigDecimal",
        "volumeUSD": "BigDecimal",
        "txCount": "BigInt",
    },
)
_PAIR_HOUR_DATA = EntityType(
    "PairHourData",
    "pairHourDatas",
    {
        "id": "ID",
        "hourStartUnix": "Int",
        "pair": "Pair",
        "reserve0": "BigDecimal",
        "reserve1": "BigDecimal",
        "totalSupply": "BigDecimal",
        "reserveUSD": "BigDecimal",
        "hourlyVolumeToken0": "BigDecimal",
        "hourlyVolumeToken1": "BigDecimal",
        "hourlyVolumeUSD": "BigDecimal",
        "hourlyTxns": "BigInt",
    },
)
# protocol -> (pool entity, hour entity)
ENTITIES = {"v3": (_POOL, _POOL_HOUR_DATA), "v2": (_PAIR, _PAIR_HOUR_DATA)}
_SCALARS = {"ID", "Int", "BigInt", "BigDecimal"}


def _sort_value(kind: str, value: Any) -> Any:
    """A field's value as graph-node compares it: numbers numerically, ids as strings,
    relations by the related entity's id."""
    if value is None:
        return None
    if kind in ("Int", "BigInt"):
        return int(value)
    if kind == "BigDecimal":
        return Decimal(str(value))
    if kind == "ID":
        return str(value)
    return str(value["id"] if isinstance(value, Mapping) else value)  # a relation


def _matches(row: Mapping[str, Any], where: Mapping[str, Any], entity: EntityType) -> bool:
    for key, wanted in where.items():
        name, op = key, ""
        for suffix in sorted(_SCALAR_FILTERS, key=len, reverse=True):
            if suffix and key.endswith(suffix) and key[: -len(suffix)] in entity.fields:
                name, op = key[: -len(suffix)], suffix
                break
        kind = entity.fields[name]
        have = _sort_value(kind, row.get(name))
        if op in ("_in", "_not_in"):
            inside = have in {_sort_value(kind, w) for w in wanted}
            if inside != (op == "_in"):
                return False
            continue
        want = _sort_value(kind, wanted)
        if have is None:
            return False
        ok = {
            "": have == want,
            "_not": have != want,
            "_gt": have > want,
            "_lt": have < want,
            "_gte": have >= want,
            "_lte": have <= want,
        }[op]
        if not ok:
            return False
    return True


def _sdl(protocol: str, missing_fields: Iterable[str]) -> str:
    missing = set(missing_fields)
    lines = [
        "scalar BigInt",
        "scalar BigDecimal",
        "scalar Bytes",
        "enum OrderDirection { asc desc }",
        "type _Block_ { hash: Bytes number: Int! timestamp: Int }",
        "type _Meta_ { block: _Block_! deployment: String! hasIndexingErrors: Boolean! }",
    ]
    queries = ["_meta: _Meta_"]
    for entity in ENTITIES[protocol]:
        fields = {n: k for n, k in entity.fields.items() if n == "id" or n not in missing}
        body = " ".join(f"{n}: {k}!" for n, k in fields.items())
        lines.append(f"type {entity.name} {{ {body} }}")
        lines.append(f"enum {entity.name}_orderBy {{ {' '.join(fields)} }}")
        filters = []
        for name, kind in fields.items():
            arg_type = kind if kind in _SCALARS else "String"
            for suffix in _SCALAR_FILTERS:
                typed = f"[{arg_type}!]" if suffix.endswith("in") else arg_type
                filters.append(f"{name}{suffix}: {typed}")
        lines.append(f"input {entity.name}_filter {{ {' '.join(filters)} }}")
        single = entity.name[0].lower() + entity.name[1:]
        queries.append(f"{single}(id: ID!): {entity.name}")
        queries.append(
            f"{entity.collection}(skip: Int = 0, first: Int = 100, "
            f"orderBy: {entity.name}_orderBy, orderDirection: OrderDirection, "
            f"where: {entity.name}_filter): [{entity.name}!]!"
        )
    lines.append(f"type Query {{ {' '.join(queries)} }}")
    return "\n".join(lines)


_GRAPHQL_JS_MISSING_FIELD = re.compile(r"Cannot query field '(\w+)' on type '(\w+)'")


class StandInSubgraph:
    """One subgraph: its protocol's schema, its entities (in graph-node's output form: an
    id per row, relations as ``{"id": ...}``, BigInt/BigDecimal as strings) and the block
    indexed so far. Thread-safe: an indexer may write while queries read."""

    def __init__(
        self,
        protocol: str,
        hour_rows: Iterable[Mapping[str, Any]] = (),
        pools: Iterable[Mapping[str, Any]] = (),
        block: tuple[int, int] = (0, 0),
        missing_fields: Iterable[str] = (),
        deployment: str = "QmStandIn",
    ) -> None:
        self.protocol = protocol
        self.pool_entity, self.hour_entity = ENTITIES[protocol]
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, dict[str, Any]]] = {
            self.pool_entity.collection: {},
            self.hour_entity.collection: {},
        }
        self._block = block
        self._has_indexing_errors = False
        self._deployment = deployment
        self.update(hour_rows, pools, block)
        self.set_missing_fields(missing_fields)

    # --- data ---------------------------------------------------------------------------------

    def update(
        self,
        hour_rows: Iterable[Mapping[str, Any]],
        pools: Iterable[Mapping[str, Any]],
        block: tuple[int, int],
    ) -> None:
        """Insert or replace rows by id and move the indexed block, in one step: a query
        never sees rows of blocks the _meta block does not cover."""
        with self._lock:
            for row in hour_rows:
                self._rows[self.hour_entity.collection][row["id"]] = dict(row)
            for row in pools:
                self._rows[self.pool_entity.collection][row["id"]] = dict(row)
            self._block = block

    def set_indexed(self, number: int, timestamp: int, has_errors: bool = False) -> None:
        """Where _meta says indexing stands (tests move it back and forth to mimic lag)."""
        with self._lock:
            self._block = (number, timestamp)
            self._has_indexing_errors = has_errors

    @property
    def indexed_block(self) -> tuple[int, int]:
        with self._lock:
            return self._block

    def hour_rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._rows[self.hour_entity.collection].values()]

    def set_missing_fields(self, fields: Iterable[str]) -> None:
        """Serve a schema without these fields (an older or different subgraph version)."""
        self._schema = self._build_schema(fields)

    # --- queries ------------------------------------------------------------------------------

    def execute(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON answer to a GraphQL request, as graph-node would give it."""
        result = graphql_sync(self._schema, query, variable_values=dict(variables or {}))
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [{"message": _graph_node_message(e.message)} for e in result.errors]
        return answer

    def _build_schema(self, missing_fields: Iterable[str]) -> GraphQLSchema:
        schema = build_schema(_sdl(self.protocol, missing_fields))
        fields = schema.query_type.fields  # type: ignore[union-attr]
        fields["_meta"].resolve = lambda *_: self._meta()
        for entity in (self.pool_entity, self.hour_entity):
            fields[entity.collection].resolve = self._collection_resolver(entity)
            single = entity.name[0].lower() + entity.name[1:]
            fields[single].resolve = self._single_resolver(entity)
        return schema

    def _meta(self) -> dict[str, Any]:
        with self._lock:
            number, timestamp = self._block
            errors = self._has_indexing_errors
        return {
            "block": {"number": number, "timestamp": timestamp, "hash": None},
            "deployment": self._deployment,
            "hasIndexingErrors": errors,
        }

    def _single_resolver(self, entity: EntityType):  # type: ignore[no-untyped-def]
        def resolve(_root: Any, _info: Any, id: str) -> dict[str, Any] | None:  # noqa: A002
            with self._lock:
                return self._rows[entity.collection].get(id)

        return resolve

    def _collection_resolver(self, entity: EntityType):  # type: ignore[no-untyped-def]
        def resolve(
            _root: Any,
            _info: Any,
            skip: int = 0,
            first: int = 100,
            orderBy: str | None = None,  # noqa: N803 (GraphQL argument names)
            orderDirection: str | None = None,  # noqa: N803
            where: Mapping[str, Any] | None = None,
        ) -> list[dict[str, Any]]:
            if not 0 <= first <= MAX_FIRST:
                raise GraphQLError(
                    f"The `first` argument must be between 0 and {MAX_FIRST}, but is {first}"
                )
            if not 0 <= skip <= MAX_SKIP:
                raise GraphQLError(
                    f"The `skip` argument must be between 0 and {MAX_SKIP}, but is {skip}"
                )
            with self._lock:
                rows = list(self._rows[entity.collection].values())
            if where:
                rows = [row for row in rows if _matches(row, where, entity)]
            key = orderBy or "id"
            kind = entity.fields[key]
            rows.sort(
                key=lambda row: (_sort_value(kind, row.get(key)), row["id"]),
                reverse=orderDirection == "desc",
            )
            return rows[skip : skip + first]

        return resolve


def _graph_node_message(message: str) -> str:
    """graph-node words a query of a field the schema lacks its own way."""
    found = _GRAPHQL_JS_MISSING_FIELD.match(message)
    if found:
        return f"Type `{found[2]}` has no field `{found[1]}`"
    return message
