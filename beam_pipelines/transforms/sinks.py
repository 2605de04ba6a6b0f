"""Where the pipeline's results go: warehouse tables and the alert topic (threads: threads.py)."""

from __future__ import annotations

from datetime import datetime

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage

from dexwatch.core.schemas.alert import V1_COPY_ATTRIBUTE, Alert
from dexwatch.core.schemas.tables import Table
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import WarehouseTarget, open_warehouse


class _UpsertFn(beam.DoFn):
    """Buffers a bundle's rows and upserts them at once: one transaction per bundle."""

    def __init__(self, target: WarehouseTarget, table: Table) -> None:
        # The target, not the settings: this is pickled to the workers, secrets must not be.
        self._target = target
        self._table = table

    def setup(self) -> None:
        self._warehouse = open_warehouse(self._target)

    def start_bundle(self) -> None:
        self._rows: list[dict] = []

    def process(self, row: dict) -> None:
        self._rows.append(row)

    def finish_bundle(self) -> None:
        if self._rows:
            self._warehouse.upsert(self._table, self._rows)
            beam.metrics.Metrics.counter("dexwatch", f"rows_{self._table.name}").inc(
                len(self._rows)
            )
        self._rows = []


class WriteTable(beam.PTransform):
    """Upsert rows into a warehouse table by its natural key (DuckDB locally)."""

    def __init__(self, settings: Settings, table: Table) -> None:
        super().__init__()
        self._target = WarehouseTarget.of(settings)
        self._table = table

    def expand(self, rows):
        warehouse = self._target
        if warehouse.backend == "bigquery":
            # Appends: BigQuery has no upsert on streaming inserts. Readers take the latest
            # row per natural key (the views Terraform creates do), so replays stay harmless.
            return (
                rows
                | f"ToBigQueryRow{self._table.name}" >> beam.Map(_bigquery_row)
                | f"Append{self._table.name}"
                >> beam.io.WriteToBigQuery(
                    table=f"{warehouse.bigquery_project}:{warehouse.bigquery_dataset}."
                    f"{self._table.name}",
                    schema=self._table.bigquery_schema(),
                    create_disposition=beam.io.BigQueryDisposition.CREATE_NEVER,
                    write_disposition=beam.io.BigQueryDisposition.WRITE_APPEND,
                )
            )
        return rows | f"Upsert{self._table.name}" >> beam.ParDo(
            _UpsertFn(self._target, self._table)
        )


def _bigquery_row(row: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def alert_messages(alert: Alert, v1_until: datetime | None = None) -> list[PubsubMessage]:
    """The alert's message, and during a migration to version 2 (until ``v1_until``) a v1
    copy of each opening one-pool alert for subscribers that still read version 1."""
    messages = [PubsubMessage(alert.to_json(), alert.attributes())]
    if (
        v1_until is not None
        and alert.detected_at < v1_until
        and alert.revision == 0
        and alert.scope == "pool"
    ):
        v1 = alert.to_v1()
        messages.append(PubsubMessage(v1.to_json(), {**v1.attributes(), V1_COPY_ATTRIBUTE: "1"}))
    return messages
