"""`dexwatch evaluate`: NAB and the injected incidents, beside baselines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    fail,
)


def evaluate(
    nab: Annotated[
        bool, typer.Option("--nab", help="Only the Numenta Anomaly Benchmark (bench/nab.py).")
    ] = False,
    incidents: Annotated[
        bool,
        typer.Option(
            "--incidents",
            help="Only the injected incidents on the local chain (bench/incidents.py).",
        ),
    ] = False,
    data: Annotated[
        Path | None, typer.Option(help="The NAB corpus (default: ../shared/data/nab).")
    ] = None,
    workers: Annotated[int, typer.Option(help="NAB: worker processes.")] = 2,
    model: Annotated[
        Path | None,
        typer.Option(help="Incidents: a saved chain detector (default: bootstrap a first one)."),
    ] = None,
) -> None:
    """Honest evaluation, each beside baselines in the same run: the Numenta Anomaly
    Benchmark and injected incidents on the local chain (both unless one is chosen); writes
    bench/results/nab.json and bench/results/incidents.json."""
    import subprocess

    # dexwatch/app/cli/evaluate.py: the checkout is four folders up.
    bench = Path(__file__).resolve().parents[3] / "bench"
    if not bench.is_dir():
        fail(f"{bench} not found: run from a checkout of dexwatch")
    runs = []
    if nab or not incidents:
        args = ["--workers", str(workers)] + ([] if data is None else ["--data", str(data)])
        runs.append([sys.executable, str(bench / "nab.py"), *args])
    if incidents or not nab:
        args = [] if model is None else ["--model", str(model.resolve())]
        runs.append([sys.executable, str(bench / "incidents.py"), *args])
    for args in runs:
        code = subprocess.call(args)
        if code:
            raise typer.Exit(code)
