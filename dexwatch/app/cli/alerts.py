"""`dexwatch alerts`: the alerts topic."""

from __future__ import annotations

from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    cli_settings,
    stop_on_signals,
    use_local_emulator,
)

app = typer.Typer(help="The alerts topic.", no_args_is_help=True)


@app.command("tail")
def alerts_tail(
    count: Annotated[int | None, typer.Option(help="Exit after this many alerts.")] = None,
) -> None:
    """Print each alert as it arrives on the alerts topic."""
    from dexwatch.app.views.alerts_tail import tail

    settings = cli_settings()
    use_local_emulator(settings)
    tail(settings, stop_on_signals(), count, typer.echo)
