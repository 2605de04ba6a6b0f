"""The ``dexwatch`` command line: one entry point for the local stack, the simulator,
the publishers and the whole detector; one module per command group.

Commands import their component lazily so ``--help`` stays fast and a command only needs
the dependencies it uses. ``main`` is the console script: a DexwatchError ends a command
with its one line and exit code; any other exception keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dexwatch.app.cli import (
    alerts,
    dashboard,
    data,
    deploy,
    evaluate,
    local,
    model,
    monitoring,
    pipeline,
    publish,
    run,
    serve,
    simulate,
    slack,
    train,
)
from dexwatch.app.cli.context import State, cli_settings, report
from dexwatch.core import logs
from dexwatch.core.errors import DexwatchError
from dexwatch.core.settings import redact_url

app = typer.Typer(
    name="dexwatch",
    help="Detect abnormal liquidity on Uniswap V3 and SushiSwap pools, as a stream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def options(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML settings file (default: $DEXWATCH_CONFIG or ./dexwatch.yaml).",
        ),
    ] = None,
) -> None:
    """Settings come from the YAML file and DEXWATCH_* environment variables (nested keys
    joined by __, e.g. DEXWATCH_CHAIN__CONFIRMATIONS=5); unknown keys are errors."""
    logs.install_excepthooks()
    State.config = config


@app.command("config")
def show_config() -> None:
    """Print the effective settings as YAML (RPC URLs reduced to scheme://host:port, other
    secrets as ***)."""
    import yaml

    settings = cli_settings()
    data = settings.model_dump(mode="json")
    for shown, chain in zip(data["chains"], settings.chains, strict=True):
        shown["rpc_urls"] = [redact_url(u) for u in chain.rpc_urls]
    typer.echo(logs.scrub(yaml.safe_dump(data, sort_keys=False)))


app.add_typer(local.app, name="local")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(model.app, name="model")
app.add_typer(alerts.app, name="alerts")
app.add_typer(simulate.app, name="simulate")
app.add_typer(publish.app, name="publish")
app.add_typer(slack.app, name="slack")
app.command("serve")(serve.serve)
app.command("backfill")(data.backfill)
app.command("evaluate")(evaluate.evaluate)
app.command("query")(data.query)
app.command("run")(run.run)
app.command("dashboard")(dashboard.dashboard)
app.add_typer(monitoring.drift_app, name="drift")
app.add_typer(monitoring.metrics_app, name="metrics")
app.command("train")(train.train)
app.command("deploy")(deploy.deploy)


def main() -> None:
    """The console script (and ``python -m dexwatch``)."""
    try:
        app(prog_name="dexwatch")
    except DexwatchError as err:
        report(str(err))
        sys.exit(err.exit_code)
