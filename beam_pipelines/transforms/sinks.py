"""Where the pipeline's results go: warehouse tables, anomaly threads and the alert topic."""

from __future__ import annotations

from datetime import UTC, datetime

import apache_beam as beam
import orjson
from apache_beam.coders import PickleCoder
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from dexwatch.contracts.alert import Alert, TopFeature, deviation_of, severity_of
from dexwatch.contracts.tables import Table
from dexwatch.settings import Settings


class _UpsertFn(beam.DoFn):
    """Buffers a bundle's rows and upserts them at once: one transaction per bundle."""

    def __init__(self, settings: Settings, table: Table) -> None:
        self._settings = settings
        self._table = table

    def setup(self) -> None:
        from dexwatch.warehouse import open_warehouse

        self._warehouse = open_warehouse(self._settings)

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
        self._settings = settings
        self._table = table

    def expand(self, rows):
        warehouse = self._settings.warehouse
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
            _UpsertFn(self._settings, self._table)
        )


def _bigquery_row(row: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


class _AlertThreadsFn(beam.DoFn):
    """Per pool, both sources together: an anomaly joins the latest recent thread it
    overlaps or comes within ``cooldown_s`` of event time of (before its start or after its
    end); otherwise it opens a thread of its own, and an alert. A chain window is shorter
    than the cooldown, so in order only the cooldown decides between chain windows, as it
    always did; an hourly row overlaps the chain windows of its hour and touches the
    previous hour, so an incident both paths flag, or a run of anomalous hours, is one
    thread, while an hour an hour late still finds the thread of its own time."""

    # [alert_id, first window start, last window end] per thread, unix s.
    THREADS = ReadModifyWriteStateSpec("threads", PickleCoder())
    # Threads this much older than the pool's newest are forgotten: beyond any lateness.
    KEEP_S = 2 * 86400

    def __init__(self, cooldown_s: int) -> None:
        self._cooldown_s = cooldown_s

    def process(self, element, threads_state=beam.DoFn.StateParam(THREADS)):
        _, row = element
        start, end = int(row["window_start"].timestamp()), int(row["window_end"].timestamp())
        threads: list[list] = threads_state.read() or []
        thread = self._thread_of(threads, start, end)
        new_thread = thread is None
        if thread is None:
            thread = [f"{row['chain_id']}:{row['pool']}:{end}", start, end]
            threads.append(thread)
        else:
            thread[1], thread[2] = min(thread[1], start), max(thread[2], end)
        newest = max(t[2] for t in threads)
        threads_state.write([t for t in threads if t[2] >= newest - self.KEEP_S])
        alert_id = thread[0]
        top = orjson.loads(row["top_features"])
        anomaly = {
            **row,
            "severity": severity_of(row["score"]),
            "deviation": (
                deviation_of(top[0]["name"], top[0]["value"], top[0]["deviation"])
                if top
                else "other"
            ),
            "alert_id": alert_id,
        }
        yield anomaly
        if new_thread:
            yield beam.pvalue.TaggedOutput("alerts", _alert(anomaly, top))

    def _thread_of(self, threads: list[list], start: int, end: int) -> list | None:
        """The latest thread the window [start, end] belongs to, if any."""
        for thread in sorted(threads, key=lambda t: t[2], reverse=True):
            _, first_start, last_end = thread
            overlaps = start <= last_end and end >= first_start
            if overlaps or first_start - self._cooldown_s <= end <= last_end + self._cooldown_s:
                return thread
        return None


def _alert(anomaly: dict, top: list[dict]) -> Alert:
    return Alert(
        alert_id=anomaly["alert_id"],
        window_id=anomaly["window_id"],
        chain_id=anomaly["chain_id"],
        dex=anomaly["dex"],
        pool=anomaly["pool"],
        source=anomaly["source"],
        severity=anomaly["severity"],
        deviation=anomaly["deviation"],
        score=anomaly["score"],
        window_start=anomaly["window_start"],
        window_end=anomaly["window_end"],
        top_features=[TopFeature(**t) for t in top],
        model_version=anomaly["model_version"],
        detected_at=datetime.now(UTC),
    )


class ThreadAnomalies(beam.PTransform):
    """Scored rows of either source (in the global window: threads span windows) → outputs
    ``anomalies`` (rows with severity and thread) and ``alerts``, threads keyed by chain and
    pool whatever the source."""

    def __init__(self, cooldown_s: int) -> None:
        super().__init__()
        self._cooldown_s = cooldown_s

    def expand(self, scored):
        return (
            scored
            | "OnlyAnomalies" >> beam.Filter(lambda row: row["is_anomaly"])
            | "KeyByPool" >> beam.Map(lambda row: (f"{row['chain_id']}:{row['pool']}", row))
            | "Threads"
            >> beam.ParDo(_AlertThreadsFn(self._cooldown_s)).with_outputs(
                "alerts", main="anomalies"
            )
        )


def alert_message(alert: Alert) -> PubsubMessage:
    return PubsubMessage(alert.to_json(), alert.attributes())
