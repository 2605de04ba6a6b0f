"""Where the pipeline's results go: warehouse tables, anomaly threads and the alert topic."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import apache_beam as beam
import orjson
from apache_beam.coders import PickleCoder
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from dexwatch.core.features.chain import HORIZON_OF_FEATURE
from dexwatch.core.features.kinds import by_top_feature, classify
from dexwatch.core.schemas.alert import (
    SEVERITY_RANK,
    V1_COPY_ATTRIBUTE,
    Alert,
    PoolRef,
    TopFeature,
)
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


@dataclasses.dataclass
class _Thread:
    """An alert thread of one pool: its id, span (unix s) and what it has said so far."""

    alert_id: str
    start: int
    end: int
    revision: int = 0
    severity: int = 0  # the highest SEVERITY_RANK published
    kinds: frozenset[str] = frozenset()
    # How long after its end it takes a pool's anomalies: the horizon of the slow views that
    # flagged it (HORIZON_OF_FEATURE), else the cooldown.
    reach_s: int = 0


# Kinds whose pool's remains are the incident's aftermath (kept in its thread).
DRAINS = frozenset({"liquidity-drain", "rug-pull"})


class AlertThreads:
    """One pool's alert threads, both sources together: an anomaly joins the latest recent
    thread it overlaps or comes within ``cooldown_s`` of event time of (before its start or
    after its end); otherwise it opens a thread of its own, and an alert. A chain window is
    shorter than the cooldown, so in order only the cooldown decides between chain windows;
    an hourly row overlaps the chain windows of its hour and touches the previous hour, so
    an incident both paths flag, or a run of anomalous hours, is one thread, while an hour
    an hour late still finds the thread of its own time.

    An anomaly that joins a thread with a kind the thread has not shown, or a higher
    severity than it has published, escalates it: the thread's next revision is published,
    so a real incident is never swallowed by an earlier alert of the same pool.

    A thread that has shown a liquidity drain takes every later anomaly of its pool while
    it is kept (``KEEP_S``): a drained pool's remains get one alert, not a stream. A thread
    with a window flagged chiefly for a slow view (its top feature measures an hour or a day:
    ``HORIZON_OF_FEATURE``) takes the pool's anomalies for that long after its end: a drift
    that crosses its limit, falls back and crosses again within its hour is one incident.

    Args:
        cooldown_s: how near in event time an anomaly must come to join a thread.
        threads: the pool's threads so far (from state), if any.
    """

    # Threads this much older than the pool's newest are forgotten: beyond any lateness.
    KEEP_S = 2 * 86400

    def __init__(self, cooldown_s: int, threads: list[_Thread] | None = None) -> None:
        self._cooldown_s = cooldown_s
        self.threads: list[_Thread] = threads or []

    def add(self, row: dict) -> tuple[dict, Alert | None]:
        """The anomaly row with its severity, kind and thread, and the alert to publish if
        it opens or escalates a thread."""
        start, end = int(row["window_start"].timestamp()), int(row["window_end"].timestamp())
        top = [TopFeature(**t) for t in orjson.loads(row["top_features"])]
        found = (
            classify(row, top, row["score"])
            if row["source"] == "chain"
            else by_top_feature(top, row["score"])
        )
        kind, severity = found.kind, found.severity
        thread = self._thread_of(start, end)
        publish = thread is None
        if thread is None:
            thread = _Thread(f"{row['chain_id']}:{row['pool']}:{end}", start, end)
            self.threads.append(thread)
        else:
            thread.start, thread.end = min(thread.start, start), max(thread.end, end)
            if kind not in thread.kinds or SEVERITY_RANK[severity] > thread.severity:
                thread.revision += 1
                publish = True
        if top:
            thread.reach_s = max(thread.reach_s, HORIZON_OF_FEATURE.get(top[0].name, 0))
        if publish:
            thread.kinds |= {kind}
            thread.severity = max(thread.severity, SEVERITY_RANK[severity])
        newest = max(t.end for t in self.threads)
        self.threads = [t for t in self.threads if t.end >= newest - self.KEEP_S]
        anomaly = {
            **row,
            "severity": severity,
            "kind": kind,
            "confidence": found.confidence,
            "alert_id": thread.alert_id,
        }
        return anomaly, _alert(anomaly, top, thread.revision, found.evidence) if publish else None

    def _thread_of(self, start: int, end: int) -> _Thread | None:
        """The latest thread the window [start, end] belongs to, if any."""
        for thread in sorted(self.threads, key=lambda t: t.end, reverse=True):
            overlaps = start <= thread.end and end >= thread.start
            # What a drain leaves of a pool (every swap now moves its price far) is the
            # drain's aftermath: its thread's, revised on a new kind, not a stream of alerts.
            reach = self.KEEP_S if DRAINS & thread.kinds else max(self._cooldown_s, thread.reach_s)
            near = thread.start - self._cooldown_s <= end <= thread.end + reach
            if overlaps or near:
                return thread
        return None


def _time_order(row: dict) -> tuple:
    return row["window_end"], row["window_start"], row["source"], row["window_id"]


class _AlertThreadsFn(beam.DoFn):
    """Streaming: each pool's anomalies threaded as they arrive (windows fire in event-time
    order, so arrival is about time order), the threads kept in state."""

    THREADS = ReadModifyWriteStateSpec("threads", PickleCoder())

    def __init__(self, cooldown_s: int) -> None:
        self._cooldown_s = cooldown_s

    def process(self, element, threads_state=beam.DoFn.StateParam(THREADS)):
        _, row = element
        threads = AlertThreads(self._cooldown_s, threads_state.read())
        anomaly, alert = threads.add(row)
        threads_state.write(threads.threads)
        yield anomaly
        if alert is not None:
            yield beam.pvalue.TaggedOutput("alerts", alert)


class _SortedAlertThreadsFn(beam.DoFn):
    """Batch: each pool's anomalies, all of them, threaded in event-time order, so that
    the threads do not depend on the order in which the runner hands rows over."""

    def __init__(self, cooldown_s: int) -> None:
        self._cooldown_s = cooldown_s

    def process(self, element):
        _, rows = element
        threads = AlertThreads(self._cooldown_s)
        for row in sorted(rows, key=_time_order):
            anomaly, alert = threads.add(row)
            yield anomaly
            if alert is not None:
                yield beam.pvalue.TaggedOutput("alerts", alert)


def _alert(anomaly: dict, top: list[TopFeature], revision: int, evidence: list[str]) -> Alert:
    return Alert(
        alert_id=anomaly["alert_id"],
        revision=revision,
        window_id=anomaly["window_id"],
        chain_id=anomaly["chain_id"],
        pools=[PoolRef(dex=anomaly["dex"], pool=anomaly["pool"])],
        source=anomaly["source"],
        kind=anomaly["kind"],
        confidence=anomaly["confidence"],
        severity=anomaly["severity"],
        score=anomaly["score"],
        window_start=anomaly["window_start"],
        window_end=anomaly["window_end"],
        top_features=top,
        evidence=evidence,
        model_version=anomaly["model_version"],
        detected_at=datetime.now(UTC),
    )


class ThreadAnomalies(beam.PTransform):
    """Scored rows of either source (in the global window: threads span windows) → outputs
    ``anomalies`` (rows with severity, kind and thread) and ``alerts`` (each opening and
    escalating revision), threads keyed by chain and pool whatever the source
    (``AlertThreads``).

    Args:
        cooldown_s: how near in event time an anomaly must come to join a thread.
        streaming: thread as rows arrive (with state); in batch, each pool's rows are
            threaded together in event-time order: the same threads whatever the runner.
    """

    def __init__(self, cooldown_s: int, streaming: bool = True) -> None:
        super().__init__()
        self._cooldown_s = cooldown_s
        self._streaming = streaming

    def expand(self, scored):
        keyed = (
            scored
            | "OnlyAnomalies" >> beam.Filter(lambda row: row["is_anomaly"])
            | "KeyByPool" >> beam.Map(lambda row: (f"{row['chain_id']}:{row['pool']}", row))
        )
        if self._streaming:
            threads = beam.ParDo(_AlertThreadsFn(self._cooldown_s))
        else:
            keyed = keyed | "GroupByPool" >> beam.GroupByKey()
            threads = beam.ParDo(_SortedAlertThreadsFn(self._cooldown_s))
        return keyed | "Threads" >> threads.with_outputs("alerts", main="anomalies")


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
