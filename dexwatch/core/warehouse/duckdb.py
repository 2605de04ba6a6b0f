"""The local warehouse: one DuckDB file.

DuckDB lets one process hold a file for writing, and a reader in another process cannot
open it meanwhile. So every call opens the file, does its work in one transaction and
closes it, retrying briefly while another process holds the lock: writers (pipeline,
injector) and ``dexwatch query`` take turns instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from dexwatch.core.schemas.tables import TABLES, Table
from dexwatch.core.warehouse import WarehouseError, views

_DUCKDB_TYPES = {
    "STRING": "VARCHAR",
    "INT64": "BIGINT",
    "FLOAT64": "DOUBLE",
    "BOOL": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMPTZ",
    "JSON": "JSON",
}
_LOCK_WAIT_S = 30.0


@dataclass
class DuckDBResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def create_table_sql(table: Table) -> str:
    columns = ",\n  ".join(
        f'"{c.name}" {_DUCKDB_TYPES[c.type]}{" NOT NULL" if c.required else ""}'
        for c in table.columns
    )
    key = ", ".join(f'"{k}"' for k in table.natural_key)
    return f'CREATE TABLE IF NOT EXISTS "{table.name}" (\n  {columns},\n  PRIMARY KEY ({key})\n)'


def migrate_table(conn: duckdb.DuckDBPyConnection, table: Table) -> None:
    """Creates the table, or brings a file written with an older declaration up to it: adds
    the columns it lacks and drops NOT NULL where a column became nullable or is no longer
    declared. Only such compatible changes are made; anything else is left for a person to
    decide."""
    conn.execute(create_table_sql(table))
    existing = dict(
        conn.execute(
            "select column_name, is_nullable from information_schema.columns "
            "where table_name = ? and table_schema = current_schema()",
            [table.name],
        ).fetchall()
    )
    declared = set(table.column_names)
    for name, nullable in existing.items():
        if name not in declared and nullable == "NO":
            # A column an older declaration had: rows written now leave it empty.
            conn.execute(f'ALTER TABLE "{table.name}" ALTER COLUMN "{name}" DROP NOT NULL')
    for column in table.columns:
        if column.name not in existing:
            conn.execute(
                f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" '
                f"{_DUCKDB_TYPES[column.type]}"
            )
        elif not column.required and existing[column.name] == "NO":
            conn.execute(f'ALTER TABLE "{table.name}" ALTER COLUMN "{column.name}" DROP NOT NULL')


def create_views(conn: duckdb.DuckDBPyConnection, table: Table) -> None:
    """(Re)creates the views (dexwatch.core.warehouse.views) as BigQuery has them, now that
    ``table`` exists: every view whose tables all exist. DuckDB checks a view against its
    tables when it is created, so the tables a view of ``table`` reads are made first, empty
    if missing (an empty table reads as no table does), and every table a view reads is
    brought up to its declaration (``migrate_table``: a file of an older version)."""
    migrated = {table.name}
    for name in views.view_names():
        if table.name in views.view_tables(name):
            for other in sorted(views.view_tables(name) - migrated):
                migrate_table(conn, TABLES[other])
                migrated.add(other)
    existing = {
        name
        for (name,) in conn.execute(
            "select table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and table_schema = current_schema()"
        ).fetchall()
    }
    for name in views.view_names():
        tables = views.view_tables(name)
        if tables <= existing:
            for other in sorted(tables - migrated):
                migrate_table(conn, TABLES[other])
                migrated.add(other)
            conn.execute(f'CREATE OR REPLACE VIEW "{name}" AS {views.duckdb_view_sql(name)}')


class DuckDBWarehouse:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._migrated: set[str] = set()  # tables checked against their declaration

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only and not self.path.exists():
            raise WarehouseError(f"no warehouse at {self.path} yet: nothing has been written")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                conn = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as err:
                if "lock" not in str(err).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        try:
            # After connecting: the connect-time config would try to fetch an extension.
            conn.execute("SET TimeZone = 'UTC'")
            yield conn
        finally:
            conn.close()

    def upsert(self, table: Table, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        # Within one batch the last row of a key wins, as it would over separate upserts.
        latest = {tuple(row[k] for k in table.natural_key): row for row in rows}
        batch = pa.Table.from_pylist(
            [{name: row.get(name) for name in table.column_names} for row in latest.values()]
        )
        with self._connect(read_only=False) as conn:
            conn.execute(create_table_sql(table))
            if table.name not in self._migrated:  # once per process: a catalog query
                migrate_table(conn, table)
                create_views(conn, table)
                self._migrated.add(table.name)
            conn.register("incoming", batch)
            columns = ", ".join(f'"{c}"' for c in table.column_names)
            conn.execute(
                f'INSERT OR REPLACE INTO "{table.name}" ({columns}) SELECT {columns} FROM incoming'
            )
        return len(rows)

    def query(self, sql: str, beside_writer: bool = False) -> DuckDBResult:
        """Run a read-only query. ``beside_writer``: the caller's process also writes the file
        (the pipeline's own journal asking what it wrote): DuckDB lets one process hold a
        file only in one mode, so the query connects as the writer does."""
        with self._connect(read_only=not beside_writer) as conn:
            cursor = conn.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            return DuckDBResult(columns, cursor.fetchall())
