"""`dexwatch backfill` and `dexwatch query`: the warehouse's past and present."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    DATE_FORMATS,
    cli_settings,
    fail,
    one_chain,
    stage_progress,
)
from dexwatch.core.errors import DexwatchError


def backfill(
    source: Annotated[
        str,
        typer.Option(
            help="chain: pool events from the RPC node; subgraph: pool hours from the subgraphs."
        ),
    ],
    start: Annotated[
        datetime, typer.Option("--from", help="Start of the range (UTC).", formats=DATE_FORMATS)
    ],
    end: Annotated[
        datetime, typer.Option("--to", help="End of the range (UTC).", formats=DATE_FORMATS)
    ],
    restart: Annotated[
        bool, typer.Option(help="Start over instead of resuming an interrupted run.")
    ] = False,
    chain: Annotated[
        str | None,
        typer.Option(help="The chain (its name or id), when several are configured."),
    ] = None,
) -> None:
    """Score a past range through the pipeline's own transforms in batch, into the same
    tables (upserts: a second run changes nothing). An interrupted run of the same range
    resumes where it stopped."""
    from dexwatch.app.workflows.backfill import backfill_chain, backfill_subgraph

    runs = {"chain": (backfill_chain, "events"), "subgraph": (backfill_subgraph, "pool hours")}
    if source not in runs:
        fail(f"unknown --source {source!r}: chain or subgraph")
    backfill_source, items = runs[source]
    settings = cli_settings()
    if source == "chain" and (chain is not None or len(settings.chains) > 1):
        settings = one_chain(settings, chain)
    start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    with stage_progress() as on_progress:
        result = backfill_source(settings, start, end, on_progress, restart)
    typer.echo(
        f"{'resumed and ' if result.resumed else ''}backfilled {source} "
        f"{start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}: {result.items} {items} read, "
        f"{result.rows} rows of this source in pool_scores, {result.seconds:.1f} s"
    )


def query(sql: Annotated[str, typer.Argument(help="SQL to run against the warehouse.")]) -> None:
    """Query the warehouse while the detector runs: the local DuckDB file, or BigQuery with
    warehouse.backend: bigquery. Both have the anomaly views (README, Deploy to GCP)."""
    from rich.console import Console
    from rich.table import Table

    from dexwatch.core.warehouse import open_warehouse

    settings = cli_settings()
    try:
        result = open_warehouse(settings).query(sql)
    except DexwatchError:
        raise
    except Exception as err:  # noqa: BLE001 - SQL errors are the user's to read
        fail(str(err).splitlines()[0], code=2)
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(width=200 if not sys.stdout.isatty() else None).print(table)
