"""What the model's warehouse readers share: times as SQL literals that DuckDB and BigQuery
both read, and queries over tables that may not exist yet (nothing written to them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dexwatch.core.warehouse import is_missing_table


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC (a naive one is taken to be UTC already, as DuckDB returns them)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sql_time(moment: datetime) -> str:
    return f"TIMESTAMP '{utc(moment).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def rows_if_tables_exist(warehouse: Any, sql: str) -> list[tuple[Any, ...]]:
    """The query's rows; none when a table it reads does not exist yet."""
    try:
        return warehouse.query(sql).rows
    except Exception as err:
        if is_missing_table(err):
            return []
        raise
