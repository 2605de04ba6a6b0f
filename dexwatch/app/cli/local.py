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
    deployment = stack.up(settings)
    typer.echo(
        f"Pub/Sub emulator  {settings.local.emulator_host}  "
        f"(export PUBSUB_EMULATOR_HOST={settings.local.emulator_host})"
    )
    typer.echo(f"anvil             {settings.local.rpc_url}  chain id {deployment.chain_id}")
    typer.echo(f"deployment        {settings.deployment_path}")
    for pool in deployment.pools:
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
    status = stack.status(settings)
    typer.echo(
        "pubsub-emulator  " + (f"pid {status.emulator_pid}" if status.emulator_pid else "stopped")
    )
    typer.echo(
        f"anvil            {'pid ' + str(status.anvil_pid) if status.anvil_pid else 'stopped'}"
    )
    if status.deployment:
        typer.echo(f"pools            {len(status.deployment.pools)} deployed")
        for pool in status.deployment.pools:
            typer.echo(f"  {pool.name:<28} {pool.address}")
    if not status.running:
        raise typer.Exit(1)
