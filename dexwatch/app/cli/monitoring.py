"""`dexwatch drift` and `dexwatch metrics`: drift of the production models and their metrics."""

from __future__ import annotations

from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    cli_settings,
    fail,
    use_local_emulator,
)
from infra.local.settings import LocalSettings

drift_app = typer.Typer(help="Feature drift of the production models.", no_args_is_help=True)
metrics_app = typer.Typer(help="The detector's metrics (Prometheus).", no_args_is_help=True)


def _snapshot(settings: LocalSettings):  # type: ignore[no-untyped-def]
    from dexwatch.core.warehouse import open_reader
    from model.monitoring import take_snapshot

    return take_snapshot(
        open_reader(settings),
        settings.registry_dir,
        settings.monitoring.drift_hours,
        settings.monitoring.anomaly_rate_hours,
    )


@drift_app.command("check")
def drift_check(
    threshold: Annotated[
        float | None,
        typer.Option(
            help="PSI above which a feature has drifted (default monitoring.psi_threshold)."
        ),
    ] = None,
) -> None:
    """PSI of each feature of each production model, its training data against the last
    monitoring.drift_hours of rows; publishes a feature-drift alert on the alerts topic
    for each model with a feature above the threshold. Exit code 3 when one did."""
    from dexwatch.core.schemas.topics import ALERTS
    from model.drift_alert import drift_alerts
    from publishers.pubsub import Message, PubSubSink

    settings = cli_settings()
    limit = threshold if threshold is not None else settings.monitoring.psi_threshold
    snapshot = _snapshot(settings)
    for model in snapshot.models:
        worst = sorted(model.psi.items(), key=lambda item: -item[1])[:3]
        typer.echo(
            f"{model.model_name} {model.version}: {model.recent_rows} recent rows; "
            + (", ".join(f"{n} PSI {v:.3f}" for n, v in worst) or "no feature bins")
        )
    # The models serve every chain; a drift alert goes out under the first one's id.
    alerts = drift_alerts(
        snapshot.models, limit, settings.chains[0].chain_id, settings.monitoring.drift_hours
    )
    if not alerts:
        typer.echo(f"no feature above PSI {limit:g}")
        return
    use_local_emulator(settings)
    with PubSubSink(settings.pubsub.project) as sink:
        sink.publish(ALERTS, [Message(a.to_json(), a.attributes()) for a in alerts])
    for alert in alerts:
        typer.echo(
            f"ALERT {alert.kind} {alert.alert_id}: "
            + ", ".join(f"{f.name} PSI {f.value:.3f}" for f in alert.top_features)
        )
    raise typer.Exit(3)


@metrics_app.command("serve")
def metrics_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port (default monitoring.metrics_port, 9464).")
    ] = None,
) -> None:
    """Serve GET /metrics in Prometheus format: per-feature PSI, the anomaly rate per source
    over the last monitoring.anomaly_rate_hours, and the model versions in production."""
    from model.monitoring import metrics_server

    settings = cli_settings()
    server = metrics_server(
        lambda: _snapshot(settings),
        host,
        settings.monitoring.metrics_port if port is None else port,
    )
    typer.echo(f"metrics on http://{host}:{server.server_address[1]}/metrics")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@metrics_app.command("export")
def metrics_export() -> None:
    """Production: write the same metrics once to Cloud Monitoring
    (monitoring.cloud_monitoring_project); schedule it like the drift check."""
    from model.monitoring import export_to_cloud_monitoring

    settings = cli_settings()
    project = settings.monitoring.cloud_monitoring_project
    if not project:
        fail("set monitoring.cloud_monitoring_project to export to Cloud Monitoring", code=2)
    written = export_to_cloud_monitoring(project, _snapshot(settings))
    typer.echo(f"wrote {written} time series to Cloud Monitoring ({project})")
