"""Where results live, behind one interface: DuckDB locally (BigQuery in production).

``open_warehouse(settings)`` returns the configured backend. Every write is an upsert on
the table's natural key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from dexwatch.contracts.tables import Table
from dexwatch.settings import Settings


class QueryResult(Protocol):
    columns: list[str]
    rows: list[tuple[Any, ...]]


class Warehouse(Protocol):
    def upsert(self, table: Table, rows: Sequence[dict[str, Any]]) -> int:
        """Insert or replace ``rows`` by the table's natural key; returns the row count."""

    def query(self, sql: str) -> QueryResult:
        """Run a read-only SQL query."""


def open_warehouse(settings: Settings) -> Warehouse:
    if settings.warehouse.backend == "duckdb":
        from dexwatch.warehouse.duckdb_backend import DuckDBWarehouse

        return DuckDBWarehouse(settings.warehouse_path)
    raise ValueError(
        f"warehouse.backend={settings.warehouse.backend!r} is written by the pipeline on "
        "Dataflow; query it with BigQuery (bq query), not from this machine"
    )


def open_reader(settings: Settings) -> Warehouse:
    """The warehouse to read from: the local file, or in production the BigQuery dataset
    (training runs and drift checks read it; only the pipeline writes it)."""
    if settings.warehouse.backend == "bigquery":
        from dexwatch.warehouse.bigquery_reader import BigQueryReader

        return BigQueryReader(  # type: ignore[return-value]
            settings.warehouse.bigquery_project, settings.warehouse.bigquery_dataset
        )
    return open_warehouse(settings)
