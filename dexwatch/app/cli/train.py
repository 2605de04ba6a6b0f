"""`dexwatch train`: training runs, once, on a schedule or on Vertex AI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    cli_settings,
    fail,
    moment,
    stop_on_signals,
)


def train(
    params_file: Annotated[
        Path | None, typer.Option("--params", help="A YAML file of training parameters.")
    ] = None,
    path: Annotated[str | None, typer.Option(help="chain or hourly.")] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Data window start (window_end, UTC).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Data window end (default now).")] = None,
    days: Annotated[float | None, typer.Option(help="Data window: the N days before --to.")] = None,
    n_estimators: Annotated[int | None, typer.Option(help="Trees in the forest.")] = None,
    max_samples: Annotated[int | None, typer.Option(help="Rows per tree.")] = None,
    threshold_rule: Annotated[
        str | None, typer.Option(help="quantile (with margin) or contamination.")
    ] = None,
    threshold_quantile: Annotated[float | None, typer.Option()] = None,
    threshold_margin: Annotated[float | None, typer.Option()] = None,
    contamination: Annotated[float | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of the forest.")] = None,
    holdout_share: Annotated[
        float | None, typer.Option(help="Latest share of the window kept for evaluation.")
    ] = None,
    include_incidents: Annotated[
        bool, typer.Option("--include-incidents", help="Train on labelled incident rows too.")
    ] = False,
    schedule: Annotated[
        str | None,
        typer.Option(
            help='Run at every time of this cron (UTC), e.g. "0 3 * * 1", until Ctrl-C; '
            '"default": monitoring.training_schedule (weekly).'
        ),
    ] = None,
    submit: Annotated[
        str | None, typer.Option(help="vertex: submit the run as a Vertex AI CustomJob.")
    ] = None,
) -> None:
    """Train a detector on the warehouse's feature rows, evaluate it, register it as a new
    version (not promoted) and write its HTML report beside it."""
    from pydantic import ValidationError

    from model.train_run import load_run_params, run_training

    settings = cli_settings()
    overrides = {
        "path": path, "from": moment(start, "--from"), "to": moment(end, "--to"), "days": days,
        "n_estimators": n_estimators, "max_samples": max_samples,
        "threshold_rule": threshold_rule, "threshold_quantile": threshold_quantile,
        "threshold_margin": threshold_margin, "contamination": contamination, "seed": seed,
        "holdout_share": holdout_share, "exclude_incidents": False if include_incidents else None,
    }  # fmt: skip
    try:
        params = load_run_params(params_file, overrides)
    except (ValidationError, ValueError, OSError) as err:
        fail(f"training parameters: {err}", code=2)

    if submit is not None:
        from model.train_schedule import custom_job_spec, submit_custom_job

        if submit != "vertex":
            fail(f"--submit: only vertex is known, not {submit!r}", code=2)
        spec = custom_job_spec(settings.model, params.cli_args(), f"dexwatch-train-{params.path}")
        typer.echo(f"submitted Vertex AI job {submit_custom_job(settings.model, spec)}")
        return

    def train_once() -> None:
        from dexwatch.core.warehouse import open_reader

        try:
            run = run_training(open_reader(settings), settings.registry_dir, params)
        except (ValueError, FileNotFoundError) as err:
            fail(str(err))
        metrics = run.evaluation
        typer.echo(
            f"{run.spec.model_name} {run.version}: trained on {len(run.train):,} rows, "
            f"held-out anomaly rate {100 * metrics.held_out_anomaly_rate:.2f} %"
            + (f", incident recall {100 * metrics.recall:.0f} %" if metrics.recall is not None
               else "")
            + "; registered, not promoted (`dexwatch model promote "
            f"{run.version}`)\nreport: {run.directory / 'report.html'}"
        )  # fmt: skip
        if run.feedback.given:
            verdicts = ", ".join(f"{n} {v}" for v, n in sorted(run.feedback.alerts.items()))
            typer.echo(f"operator feedback: {verdicts} alerts. {run.feedback.summary()}")

    if schedule is None:
        train_once()
        return
    from croniter import croniter

    from model.train_schedule import run_on_schedule

    if schedule == "default":
        schedule = settings.monitoring.training_schedule
    if not croniter.is_valid(schedule):
        fail(f"--schedule: not a cron expression: {schedule!r}", code=2)

    run_on_schedule(
        schedule,
        train_once,
        stop_on_signals(),
        on_wait=lambda due: typer.echo(f"next training run at {due:%Y-%m-%d %H:%M} UTC"),
    )
