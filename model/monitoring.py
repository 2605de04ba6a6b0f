"""What the running detector looks like from outside: per-feature drift of each production
model, the live anomaly rate per source and the model versions in use, as one snapshot;
served to Prometheus (locally) or written to Cloud Monitoring (production).

The snapshot is read from the registry and the warehouse at each scrape: no state here.
prometheus_client does the rest: a custom collector turns each snapshot into gauge families,
its exposition writes the text format (and negotiates OpenMetrics) and its WSGI app answers
the scrape, served by the standard library's wsgiref.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, ThreadingWSGIServer

from model.drift import psi_per_feature, recent_feature_values
from model.registry import ModelRegistry as _Registry
from model.registry import RegistryError, registered_model_names
from model.warehouse_sql import sql_time

# Which pool_scores source each registered model scores.
SOURCE_OF_MODEL = {"chain-window": "chain", "pool-hour": "subgraph"}
# What a scraper asking for plain text (or anything) gets; OpenMetrics when it asks for it.
PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


@dataclasses.dataclass(frozen=True)
class ModelDrift:
    model_name: str
    version: str
    source: str
    psi: dict[str, float]  # feature -> PSI against its training data
    recent_rows: int


@dataclasses.dataclass(frozen=True)
class MonitoringSnapshot:
    taken_at: datetime
    models: list[ModelDrift]
    anomaly_rate: dict[str, float]  # source -> share of rows flagged
    scored_rows: dict[str, int]  # source -> rows in the rate's period


def model_drift(warehouse: Any, registry_dir: Path, since: datetime) -> list[ModelDrift]:
    """PSI per feature of each production model against the rows since ``since``."""
    found = []
    for name in registered_model_names(registry_dir):
        registry = _Registry(registry_dir, name)
        version = registry.aliases().production
        if version is None:
            continue
        try:
            metadata = registry.get(version).metadata
        except RegistryError:
            continue
        source = SOURCE_OF_MODEL.get(name, "chain")
        bins = metadata.get("feature_bins") or {}
        recent = (
            recent_feature_values(warehouse, source, list(bins), sql_time(since)) if bins else {}
        )
        rows = max((len(v) for v in recent.values()), default=0)
        # A version trained before drift existed (bootstrap) has no bins: version only.
        found.append(ModelDrift(name, version, source, psi_per_feature(bins, recent), rows))
    return found


def anomaly_rates(warehouse: Any, since: datetime) -> tuple[dict[str, float], dict[str, int]]:
    result = warehouse.query(
        "select source, count(*), avg(case when is_anomaly then 1.0 else 0.0 end) "
        f"from pool_scores where window_end >= {sql_time(since)} group by source"
    )
    rates = {source: float(rate) for source, _, rate in result.rows}
    counts = {source: int(count) for source, count, _ in result.rows}
    for source in ("chain", "subgraph"):
        rates.setdefault(source, 0.0)
        counts.setdefault(source, 0)
    return rates, counts


def take_snapshot(
    warehouse: Any,
    registry_dir: Path,
    drift_hours: float,
    anomaly_rate_hours: float,
    now: datetime | None = None,
) -> MonitoringSnapshot:
    now = now or datetime.now(UTC)
    try:
        rates, counts = anomaly_rates(warehouse, now - timedelta(hours=anomaly_rate_hours))
        models = model_drift(warehouse, registry_dir, now - timedelta(hours=drift_hours))
    except FileNotFoundError:  # no warehouse yet: versions only
        rates, counts = {"chain": 0.0, "subgraph": 0.0}, {"chain": 0, "subgraph": 0}
        models = [
            ModelDrift(name, v, SOURCE_OF_MODEL.get(name, "chain"), {}, 0)
            for name in registered_model_names(registry_dir)
            if (v := _Registry(registry_dir, name).aliases().production)
        ]
    return MonitoringSnapshot(now, models, rates, counts)


def _round(value: float) -> float:
    """Six significant digits, as the gauges have always been published."""
    return float(f"{value:.6g}")


def _families(snapshot: MonitoringSnapshot) -> list[GaugeMetricFamily]:
    """The snapshot as Prometheus gauges, in a fixed order (sorted features and sources)."""
    info = GaugeMetricFamily(
        "dexwatch_model_info",
        "The model version in production (value always 1).",
        labels=["model", "version", "source"],
    )
    psi = GaugeMetricFamily(
        "dexwatch_feature_psi",
        "Population Stability Index of a feature: production's training data vs recent rows.",
        labels=["model", "feature"],
    )
    rows = GaugeMetricFamily(
        "dexwatch_drift_rows", "Recent rows the PSI is computed on.", labels=["model"]
    )
    for m in snapshot.models:
        info.add_metric([m.model_name, m.version, m.source], 1)
        for feature, value in sorted(m.psi.items()):
            psi.add_metric([m.model_name, feature], _round(value))
        rows.add_metric([m.model_name], m.recent_rows)
    rate = GaugeMetricFamily(
        "dexwatch_anomaly_rate",
        "Share of scored rows flagged as anomalies, recent period.",
        labels=["source"],
    )
    for source, value in sorted(snapshot.anomaly_rate.items()):
        rate.add_metric([source], _round(value))
    scored = GaugeMetricFamily(
        "dexwatch_scored_rows", "Scored rows in the anomaly rate's period.", labels=["source"]
    )
    for source, count in sorted(snapshot.scored_rows.items()):
        scored.add_metric([source], count)
    return [info, psi, rows, rate, scored]


class SnapshotCollector:
    """A prometheus_client collector: a fresh snapshot (``take()``) at each collect."""

    def __init__(self, take: Callable[[], MonitoringSnapshot]) -> None:
        self._take = take

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from _families(self._take())


def snapshot_registry(take: Callable[[], MonitoringSnapshot]) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding only the snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(take))
    return registry


def prometheus_text(snapshot: MonitoringSnapshot) -> str:
    """The snapshot in Prometheus' text exposition format (version 0.0.4)."""
    return generate_latest(snapshot_registry(lambda: snapshot)).decode()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *_: object) -> None:  # scrapes every few seconds: quiet
        pass


def metrics_server(take: Callable[[], MonitoringSnapshot], host: str, port: int) -> WSGIServer:
    """An HTTP server answering GET /metrics with a fresh snapshot (``take()``), other paths
    with 404; not yet serving (``serve_forever()`` or ``serve_in_background``)."""
    metrics = make_wsgi_app(snapshot_registry(take))

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"only /metrics here\n"]
        return metrics(environ, start_response)

    return make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)


def serve_in_background(server: WSGIServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="metrics")
    thread.start()
    return thread


def export_to_cloud_monitoring(project: str, snapshot: MonitoringSnapshot) -> int:
    """Production: the same gauges as custom metrics (custom.googleapis.com/dexwatch/...).
    Not run here (no GCP); returns the time series written."""
    from google.cloud import monitoring_v3  # type: ignore[attr-defined]

    client = monitoring_v3.MetricServiceClient()
    seconds = int(snapshot.taken_at.timestamp())
    interval = monitoring_v3.TimeInterval({"end_time": {"seconds": seconds}})

    def series(kind: str, labels: dict[str, str], value: float) -> Any:
        ts = monitoring_v3.TimeSeries()
        ts.metric.type = f"custom.googleapis.com/dexwatch/{kind}"
        ts.metric.labels.update(labels)
        ts.resource.type = "global"
        ts.points = [monitoring_v3.Point({"interval": interval, "value": {"double_value": value}})]
        return ts

    written = [
        *(series("feature_psi", {"model": m.model_name, "feature": f, "version": m.version}, v)
          for m in snapshot.models for f, v in m.psi.items()),
        *(series("anomaly_rate", {"source": s}, r) for s, r in snapshot.anomaly_rate.items()),
    ]  # fmt: skip
    client.create_time_series(name=f"projects/{project}", time_series=written)
    return len(written)
