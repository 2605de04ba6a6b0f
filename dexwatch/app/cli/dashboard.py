"""`dexwatch dashboard`: the local web page over the warehouse."""

from __future__ import annotations

from typing import Annotated

import typer

from dexwatch.app.cli.context import cli_settings, fail, stop_on_signals


def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(help="Port (default 8050; 0: a free one).")] = None,
) -> None:
    """Serve the dashboard over the local warehouse until Ctrl-C: the pools, the alerts
    (live), one pool over time, the models' health. It reads while the pipeline writes.
    `dexwatch run` serves one too; this one reads any local warehouse."""
    from dexwatch.app.dashboard import DEFAULT_PORT, DashboardServer

    settings = cli_settings()
    try:
        server = DashboardServer(settings, host, DEFAULT_PORT if port is None else port)
    except OSError as err:
        fail(f"cannot listen on {host}:{port or DEFAULT_PORT}: {err.strerror}; try --port 0")
    stop = stop_on_signals()
    with server:
        typer.echo(f"dashboard on {server.url} (Ctrl-C stops)")
        stop.wait()
