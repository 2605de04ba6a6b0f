"""`dexwatch local`: the embedded local stack."""

from __future__ import annotations

import typer

from dexwatch.app.cli.context import (
    cli_settings,
)

app = typer.Typer(
    help="The embedded local stack: Pub/Sub emulator and anvil with the real contracts.",
    no_args_is_help=True,
)


@app.command("up")
def local_up() -> None:
    """Start the Pub/Sub emulator and anvil, create the topics, deploy the contracts.

    Idempotent: what already runs is kept. A newly started anvil is a new chain, so the
    previous deployment, checkpoints and warehouse are cleared.
    """
    from infra.local import stack

    settings = cli_settings()
    chains = stack.up(settings)
    typer.echo(
        f"Pub/Sub emulator  {settings.local.emulator_host}  "
        f"(export PUBSUB_EMULATOR_HOST={settings.local.emulator_host})"
    )
    for chain in chains:
        local = chain.settings
        typer.echo(
            f"anvil             {local.local.rpc_url}  chain id {chain.deployment.chain_id}"
            + (f" ({chain.name})" if len(chains) > 1 else "")
        )
        typer.echo(f"deployment        {local.deployment_path}")
        for pool in chain.deployment.pools:
            typer.echo(f"  {pool.name:<28} {pool.address}")


@app.command("down")
def local_down() -> None:
    """Stop every process the local stack started (servers, simulator, publisher)."""
    from infra.local import stack

    stopped = stack.down(cli_settings())
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command("status")
def local_status() -> None:
    """Show which local processes run and what is deployed; exit 1 if the stack is down."""
    from infra.local import stack

    settings = cli_settings()
    chains = stack.status(settings)
    names = [f"anvil ({status.chain})" if len(chains) > 1 else "anvil" for status in chains]
    width = max(len("pubsub-emulator"), *map(len, names)) + 2
    emulator = chains[0].emulator_pid
    typer.echo(f"{'pubsub-emulator':<{width}}" + (f"pid {emulator}" if emulator else "stopped"))
    for name, status in zip(names, chains, strict=True):
        pid = status.anvil_pid
        typer.echo(f"{name:<{width}}" + (f"pid {pid}" if pid else "stopped"))
        if status.deployment:
            typer.echo(f"{'pools':<{width}}{len(status.deployment.pools)} deployed")
            for pool in status.deployment.pools:
                typer.echo(f"  {pool.name:<28} {pool.address}")
    if not all(status.running for status in chains):
        raise typer.Exit(1)
