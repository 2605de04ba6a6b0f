"""`dexwatch serve`: the prediction server."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    cli_settings,
)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port (default: $AIP_HTTP_PORT, else 8080).")
    ] = None,
    threads: Annotated[int, typer.Option(help="Requests served at once.")] = 4,
) -> None:
    """Run the prediction server, a Vertex AI custom container: POST {"instances": [[...]]}
    to $AIP_PREDICT_ROUTE (/predict), GET $AIP_HEALTH_ROUTE (/health). Serves the production
    version of each registered model (from $AIP_STORAGE_URI on Vertex); instances of 9
    numbers go to chain-window, of 13 to the hourly model."""
    from model.serving.app import Routes, make_server, prediction_app
    from model.serving.models import ServedModels, artifact_models, registry_models

    settings = cli_settings()
    routes = Routes.from_environment()
    storage_uri = os.environ.get("AIP_STORAGE_URI")
    models = ServedModels(
        artifact_models(storage_uri) if storage_uri else registry_models(settings.registry_dir)
    )
    app_ = prediction_app(models, routes, settings.model.server_max_instances)
    server = make_server(app_, host, routes.port if port is None else port, threads)
    served = models.current()
    typer.echo(
        f"serving {', '.join(f'{n} {d.version}' for n, d in sorted(served.items())) or 'no model'}"
        f" on http://{host}:{server.effective_port}{routes.predict} "
        f"(health {routes.health})",
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
