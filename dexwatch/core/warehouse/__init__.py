"""Where results live, behind one interface: DuckDB locally, BigQuery in production.

``WarehouseTarget`` is all a process needs to reach the warehouse (no other setting, no
secret): the pipeline's sinks carry it to the workers instead of the settings. The backend
is chosen in one place, ``open_warehouse`` (``open_reader`` for readers). Every write is an
upsert on the table's natural key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dexwatch.core.errors import DexwatchError, UsageError
from dexwatch.core.schemas.tables import Table
from dexwatch.core.settings import Settings


class WarehouseError(DexwatchError, FileNotFoundError):
    """The warehouse cannot be read: it does not exist yet."""


def is_missing_table(err: Exception) -> bool:
    """Whether a query failed because a table or view it reads does not exist yet (DuckDB:
    "Table with name x does not exist", "View with name ..."; BigQuery: "Not found: Table")."""
    message = str(err)
    return ("with name" in message and "does not exist" in message) or (
        "Not found: Table" in message
    )


class QueryResult(Protocol):
    columns: list[str]
    rows: list[tuple[Any, ...]]


class WarehouseReader(Protocol):
    def query(self, sql: str) -> QueryResult:
        """Run a read-only SQL query."""


class Warehouse(WarehouseReader, Protocol):
    def upsert(self, table: Table, rows: Sequence[dict[str, Any]]) -> int:
        """Insert or replace ``rows`` by the table's natural key; returns the row count."""


@dataclass(frozen=True)
class WarehouseTarget:
    """The warehouse of a deployment: the local DuckDB file, or a BigQuery dataset."""

    backend: str
    path: Path
    bigquery_project: str = ""
    bigquery_dataset: str = ""

    @classmethod
    def of(cls, where: Settings | WarehouseTarget) -> WarehouseTarget:
        """The target of ``where``: settings, or a target already (returned as it is)."""
        if isinstance(where, WarehouseTarget):
            return where
        w = where.warehouse
        return cls(w.backend, where.warehouse_path, w.bigquery_project, w.bigquery_dataset)


def open_warehouse(where: Settings | WarehouseTarget) -> Warehouse:
    """The warehouse to write (and read) from this process: the local DuckDB file, or in
    production the BigQuery dataset, where only the few rows written outside the pipeline
    go this way (the Slack consumer's feedback); the pipeline writes through BigQueryIO."""
    target = WarehouseTarget.of(where)
    if target.backend == "duckdb":
        from dexwatch.core.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(target.path)
    if target.backend == "bigquery":
        from dexwatch.core.warehouse.bigquery import BigQueryWarehouse

        return BigQueryWarehouse(target.bigquery_project, target.bigquery_dataset)
    raise UsageError(f"warehouse.backend={target.backend!r}: duckdb or bigquery")


def open_reader(where: Settings | WarehouseTarget) -> WarehouseReader:
    """The warehouse to read from: the local file, or in production the BigQuery dataset
    (training runs and drift checks read it; only the pipeline writes it)."""
    target = WarehouseTarget.of(where)
    if target.backend == "bigquery":
        from dexwatch.core.warehouse.bigquery import BigQueryReader

        return BigQueryReader(target.bigquery_project, target.bigquery_dataset)
    return open_warehouse(target)
