"""Warehouse table schemas, declared once for every backend (DuckDB here, BigQuery in production).

Column types are BigQuery's standard SQL names; each backend maps them. Every table has a
natural key: writes are upserts on it, so replays and restarts never duplicate a row.
"""

from __future__ import annotations

from dataclasses import dataclass

COLUMN_TYPES = ("STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "JSON")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str = ""
    required: bool = True

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type}")


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    natural_key: tuple[str, ...]
    partition_by: str | None = None  # a TIMESTAMP column; BigQuery partitions by day
    cluster_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = {c.name for c in self.columns}
        missing = [k for k in (*self.natural_key, *self.cluster_by) if k not in names]
        if missing:
            raise ValueError(f"table {self.name}: unknown key columns {missing}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


INCIDENT_LABELS = Table(
    name="incident_labels",
    description="Ground truth of incidents injected into the local market (simulate inject).",
    columns=(
        Column("label_id", "STRING", "chain_id:pool:kind:first_block"),
        Column("chain_id", "INT64"),
        Column("dex", "STRING"),
        Column("pool", "STRING", "Pool or pair address, lower-case hex"),
        Column("kind", "STRING", "liquidity-drain | rug-pull | price-manipulation | wash-trading"),
        Column("first_block", "INT64"),
        Column("last_block", "INT64"),
        Column("first_timestamp", "TIMESTAMP"),
        Column("last_timestamp", "TIMESTAMP"),
        Column("injected_at", "TIMESTAMP"),
        Column("details", "STRING", "What the injector did"),
    ),
    natural_key=("label_id",),
    partition_by="first_timestamp",
    cluster_by=("pool",),
)

TABLES: dict[str, Table] = {t.name: t for t in (INCIDENT_LABELS,)}
