"""What the running detector looks like from outside: per-feature drift of each production
model, the live anomaly rate per source and the model versions in use, as one snapshot;
rendered as Prometheus text (locally) or written to Cloud Monitoring (production).

The snapshot is read from the registry and the warehouse at each scrape: no state here.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from model.drift import psi_per_feature, recent_feature_values
from model.registry import ModelRegistry as _Registry
from model.registry import RegistryError, registered_model_names

# Which pool_scores source each registered model scores.
SOURCE_OF_MODEL = {"chain-window": "chain", "pool-hour": "subgraph"}
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


def _sql_time(moment: datetime) -> str:
    return f"TIMESTAMP '{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


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
            recent_feature_values(warehouse, source, list(bins), _sql_time(since)) if bins else {}
        )
        rows = max((len(v) for v in recent.values()), default=0)
        # A version trained before drift existed (bootstrap) has no bins: version only.
        found.append(ModelDrift(name, version, source, psi_per_feature(bins, recent), rows))
    return found


def anomaly_rates(warehouse: Any, since: datetime) -> tuple[dict[str, float], dict[str, int]]:
    result = warehouse.query(
        "select source, count(*), avg(case when is_anomaly then 1.0 else 0.0 end) "
        f"from pool_scores where window_end >= {_sql_time(since)} group by source"
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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(snapshot: MonitoringSnapshot) -> str:
    """The snapshot in Prometheus' text exposition format (version 0.0.4)."""
    lines = [
        "# HELP dexwatch_model_info The model version in production (value always 1).",
        "# TYPE dexwatch_model_info gauge",
        *(
            f'dexwatch_model_info{{model="{_label(m.model_name)}",version="{_label(m.version)}",'
            f'source="{m.source}"}} 1'
            for m in snapshot.models
        ),
        "# HELP dexwatch_feature_psi Population Stability Index of a feature: production's "
        "training data vs recent rows.",
        "# TYPE dexwatch_feature_psi gauge",
        *(
            f'dexwatch_feature_psi{{model="{_label(m.model_name)}",feature="{_label(f)}"}} '
            f"{value:.6g}"
            for m in snapshot.models
            for f, value in sorted(m.psi.items())
        ),
        "# HELP dexwatch_drift_rows Recent rows the PSI is computed on.",
        "# TYPE dexwatch_drift_rows gauge",
        *(
            f'dexwatch_drift_rows{{model="{_label(m.model_name)}"}} {m.recent_rows}'
            for m in snapshot.models
        ),
        "# HELP dexwatch_anomaly_rate Share of scored rows flagged as anomalies, recent period.",
        "# TYPE dexwatch_anomaly_rate gauge",
        *(
            f'dexwatch_anomaly_rate{{source="{s}"}} {rate:.6g}'
            for s, rate in sorted(snapshot.anomaly_rate.items())
        ),
        "# HELP dexwatch_scored_rows Scored rows in the anomaly rate's period.",
        "# TYPE dexwatch_scored_rows gauge",
        *(
            f'dexwatch_scored_rows{{source="{s}"}} {count}'
            for s, count in sorted(snapshot.scored_rows.items())
        ),
    ]
    return "\n".join(lines) + "\n"


def metrics_server(take: Any, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering GET /metrics with a fresh snapshot (``take()``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics here")
                return
            body = prometheus_text(take()).encode()
            self.send_response(200)
            self.send_header("Content-Type", PROMETHEUS_CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # scrapes every few seconds: quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
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
