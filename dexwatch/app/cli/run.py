"""`dexwatch run`: the whole detector on the local stack."""

from __future__ import annotations

from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    State,
    cli_settings,
    stop_on_signals,
)


def run(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
) -> None:
    """Run dexwatch on the local stack: start what is not running, the market simulator and
    the chain publisher, show a live per-pool summary, and stop everything it started."""
    from dexwatch.app.workflows.local_run import run_local

    settings = cli_settings()
    stop = stop_on_signals()
    run_local(settings, stop, duration_s=duration, config=State.config)
