"""`dexwatch publish`: the publishers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    cli_settings,
    one_chain,
    stop_on_signals,
    use_local_emulator,
)

app = typer.Typer(
    help="Publishers that feed the pool-events and pool-hourly topics.", no_args_is_help=True
)


@app.command("chain")
def publish_chain(
    once: Annotated[
        bool, typer.Option("--once", help="Catch up to the safe head and exit (a Cloud Run Job).")
    ] = False,
    record: Annotated[
        Path | None,
        typer.Option(help="Record to JSON lines in this directory instead of Pub/Sub."),
    ] = None,
    chain: Annotated[
        str | None,
        typer.Option(help="The chain to publish (its name or id), when several are configured."),
    ] = None,
    start_block: Annotated[
        int | None,
        typer.Option(help="Where a new checkpoint starts (default: the chain's start_block)."),
    ] = None,
) -> None:
    """Publish pool events read from chain RPC (eth_getLogs) to the pool-events topic,
    following the chain by default. One process per chain: each has its own node, pace and
    checkpoint."""
    from publishers.chain import run

    settings = cli_settings()
    if chain is not None or len(settings.chains) > 1:
        settings = one_chain(settings, chain)
    if start_block is not None:
        settings = settings.with_sections(chain={"start_block": start_block})
    use_local_emulator(settings)
    stop = stop_on_signals()
    run(settings, once=once, stop=stop, record_to=record)


@app.command("subgraph")
def publish_subgraph(
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Publish every complete hour and exit (Cloud Scheduler + Cloud Run Job)."
        ),
    ] = False,
    chain: Annotated[
        str | None,
        typer.Option(help="The chain whose subgraphs to publish, when several are configured."),
    ] = None,
) -> None:
    """Publish hourly pool statistics from The Graph (Uniswap V3 poolHourDatas, SushiSwap
    pairHourDatas) to the pool-hourly topic, one record per pool and complete hour, at every
    time of subgraph.schedule (hourly by default)."""
    from publishers.subgraph import run

    settings = cli_settings()
    if chain is not None or len(settings.chains) > 1:
        settings = one_chain(settings, chain)
    use_local_emulator(settings)
    stop = stop_on_signals()
    run(settings, once=once, stop=stop)
