"""`dexwatch pipeline`: the Beam pipeline on the local runner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    cli_settings,
    fail,
    require_model,
    use_local_emulator,
)

app = typer.Typer(
    help="The Beam pipeline: windows, features, scores, anomalies, alerts.", no_args_is_help=True
)


@app.command("run")
def pipeline_run() -> None:
    """Follow pool-events (Pub/Sub) with the streaming pipeline on the local runner: scores
    to pool_scores, anomalies to anomalies, alerts to the alerts topic. Runs until stopped;
    messages are journaled before they are acknowledged, and a restart resumes from the
    journal (in <state_dir>/journal)."""
    from beam_pipelines.local_runner import build_local_streaming_pipeline

    settings = cli_settings()
    use_local_emulator(settings)
    require_model(settings, hourly=settings.pipeline.hourly)
    build_local_streaming_pipeline(settings).run().wait_until_finish()


@app.command("replay")
def pipeline_replay(
    events: Annotated[Path, typer.Argument(help="Recorded pool events (JSON lines).")],
    hours: Annotated[
        Path | None,
        typer.Option(help="Recorded pool-hourly messages (JSON lines), for the hourly branch."),
    ] = None,
) -> None:
    """Replay a recorded stream through the same transforms in batch, into the same tables
    (upserts: replaying twice changes nothing). Record one with
    `dexwatch publish chain --once --record DIR`."""
    from beam_pipelines.options import batch_options
    from beam_pipelines.pipeline import build_replay_pipeline

    settings = cli_settings()
    for path in (events, hours):
        if path is not None and not path.is_file():
            fail(f"no recording at {path}")
    require_model(settings, hourly=hours is not None)
    build_replay_pipeline(
        settings, batch_options(), events, hours_file=hours
    ).run().wait_until_finish()
    typer.echo(f"replayed {events} into {settings.warehouse_path}")
