"""Reading the production warehouse (BigQuery) for training and drift: queries only, with
the dataset as default so the same SQL names the tables as DuckDB does. Not run here (no
GCP access)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
