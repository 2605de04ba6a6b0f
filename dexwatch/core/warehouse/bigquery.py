"""The production warehouse (BigQuery): queries for training and drift, with the dataset as
default so the same SQL names the tables as DuckDB does; and the few rows written outside
the pipeline (the Slack consumer's ``alert_feedback``), by streaming insert with the
natural key as insertId (BigQuery drops a retried row within its de-duplication window;
readers take one row per natural key). Not run here (no GCP access): the rows it sends are
tested, BigQuery's side is checked at deploy time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from dexwatch.core.schemas.tables import Table


@dataclass
class BigQueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


class BigQueryReader:
    def __init__(self, project: str, dataset: str) -> None:
        self.project = project
        self.dataset = dataset

    def query(self, sql: str) -> BigQueryResult:  # pragma: no cover - needs GCP
        from google.cloud import bigquery

        client = bigquery.Client(project=self.project)
        config = bigquery.QueryJobConfig(default_dataset=f"{self.project}.{self.dataset}")
        result = client.query(sql, job_config=config).result()
        return BigQueryResult([f.name for f in result.schema], [tuple(r.values()) for r in result])


class BigQueryWarehouse(BigQueryReader):
    def upsert(self, table: Table, rows: Sequence[dict[str, Any]]) -> int:  # pragma: no cover
        from google.cloud import bigquery

        client = bigquery.Client(project=self.project)
        errors = client.insert_rows_json(
            f"{self.project}.{self.dataset}.{table.name}",
            insert_rows(table, rows),
            row_ids=[":".join(str(row[k]) for k in table.natural_key) for row in rows],
        )
        if errors:
            raise RuntimeError(f"BigQuery refused rows of {table.name}: {errors[:3]}")
        return len(rows)


def insert_rows(table: Table, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` as the streaming API takes them: declared columns only, times in ISO 8601,
    JSON columns as JSON text."""
    types = {c.name: c.type for c in table.columns}
    out = []
    for row in rows:
        converted = {}
        for name, value in row.items():
            if name not in types or value is None:
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif types[name] == "JSON" and not isinstance(value, str):
                value = orjson.dumps(value).decode()
            converted[name] = value
        out.append(converted)
    return out
