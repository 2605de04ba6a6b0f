"""`dexwatch simulate`: the simulated market and incident injection."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    cli_settings,
    fail,
    local_chain,
    local_deployment,
    stop_on_signals,
)
from dexwatch.core.schemas.labels import INCIDENT_KINDS

app = typer.Typer(
    help="The simulated market on the local chain, and incident injection.", no_args_is_help=True
)


@app.command("run")
def simulate_run(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
    chain: Annotated[
        str | None,
        typer.Option(help="The local chain to trade on (its name or id), when several run."),
    ] = None,
) -> None:
    """Keep the local pools busy: traders, liquidity providers and prices that wander,
    one block every simulator.block_interval_s (the chain's block time, if it has one),
    stamped with the wall clock."""
    from infra.local.market import MarketSimulator

    settings = local_chain(cli_settings(), chain)
    simulator = MarketSimulator(settings, local_deployment(settings))
    stop = stop_on_signals()
    simulator.run_live(stop, duration_s=duration)


@app.command("history")
def simulate_history(
    hours: Annotated[float, typer.Option(help="Simulated hours of trading to generate.")] = 24.0,
) -> None:
    """Generate a stretch of history as fast as the chain mines (block timestamps run
    ahead of the wall clock), for batch replay and training data."""
    from rich.progress import Progress

    from infra.local.market import MarketSimulator

    settings = cli_settings()
    simulator = MarketSimulator(settings, local_deployment(settings))
    with Progress(transient=not sys.stderr.isatty()) as progress:
        task = progress.add_task(f"mining {hours:g} simulated hours", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        first, last = simulator.generate_history(hours, progress=on_progress)
    typer.echo(f"mined blocks {first}..{last}")


@app.command("inject")
def simulate_inject(
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(INCIDENT_KINDS)}.")],
    pool: Annotated[
        str | None,
        typer.Option(
            help="Pool name (see `dexwatch local status`) or address; not for "
            "market-move, asset-move and depeg, which move the market's prices."
        ),
    ] = None,
    asset: Annotated[
        str | None,
        typer.Option(
            help="asset-move: the token that moves alone (default WBTC); depeg: the "
            "stablecoin that leaves its peg (default DAI)."
        ),
    ] = None,
) -> None:
    """Inject an incident into a pool, or into the market, and record its ground truth in
    incident_labels."""
    if kind not in INCIDENT_KINDS:
        fail(f"unknown incident kind {kind!r}; choose one of {', '.join(INCIDENT_KINDS)}", code=2)
    from dexwatch.core.schemas.tables import INCIDENT_LABELS
    from dexwatch.core.warehouse import open_warehouse
    from infra.local.incidents import inject
    from infra.local.market_events import MARKET_EVENT_KINDS, inject_market_event

    settings = cli_settings()
    deployment = local_deployment(settings)
    if kind in MARKET_EVENT_KINDS:
        if pool is not None:
            fail(f"{kind} moves the market's prices, not one pool: drop --pool", code=2)
        try:
            labels = inject_market_event(settings, deployment, kind, asset)
        except ValueError as err:
            fail(str(err), code=2)
        open_warehouse(settings).upsert(INCIDENT_LABELS, [label.model_dump() for label in labels])
        first = labels[0]
        typer.echo(
            f"{kind}: blocks {first.first_block}..{first.last_block} ({first.details}); "
            f"recorded as {', '.join(label.label_id for label in labels)}"
        )
        return
    if pool is None:
        fail(f"{kind} needs --pool", code=2)
    try:
        deployment.pool(pool)
    except KeyError as err:
        fail(str(err.args[0]), code=2)
    try:
        label = inject(settings, deployment, kind, pool)
    except ValueError as err:  # e.g. a quiet pool's drain beside a busy market
        fail(str(err))
    open_warehouse(settings).upsert(INCIDENT_LABELS, [label.model_dump()])
    # A fresh pool's rug names the pool it launched, which the deployment does not list.
    where = deployment.pool(pool).name if kind != "fresh-pool-rug" else label.pool
    typer.echo(
        f"{label.kind} on {where}: blocks {label.first_block}..{label.last_block}"
        f" ({label.details}); recorded as {label.label_id}"
    )
