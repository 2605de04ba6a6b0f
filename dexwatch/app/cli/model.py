"""`dexwatch model`: bootstraps, the registry, promotion and rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexwatch.app.cli.context import (
    cli_settings,
    fail,
    stage_progress,
)

app = typer.Typer(
    help="The detector's models: training, the registry, promotion and rollback.",
    no_args_is_help=True,
)


# For a real pool's first model: the simulator calibrated against one (README, Real traffic).
MARKET_OPTION = typer.Option(
    "--market",
    help="Mine the market of this file's simulator section (over the config's); for a "
    "real chain: infra/local/markets/polygon-busy-pool.yaml (calibrated against a real pool).",
    exists=True,
    dir_okay=False,
)


@app.command("bootstrap")
def model_bootstrap(
    hours: Annotated[float, typer.Option(help="Simulated hours of normal traffic to learn.")] = 4.0,
    market: Annotated[Path | None, MARKET_OPTION] = None,
) -> None:
    """Train the first detector on the simulator's normal traffic (no injections), mined on
    a private chain and run through the real publisher and pipeline; registers it and
    promotes it to production, where the pipeline loads it (model.path)."""
    from dexwatch.app.workflows.bootstrap import bootstrap_model

    settings = cli_settings(market)
    with stage_progress() as on_progress:
        detector = bootstrap_model(settings, hours, on_progress)
    typer.echo(
        f"model {detector.version}: trained on {detector.training_rows} windows of "
        f"{hours:g} simulated hours; registered and promoted, loaded from {settings.model_path}"
    )


@app.command("bootstrap-hourly")
def model_bootstrap_hourly(
    hours: Annotated[
        int | None,
        typer.Option(
            help="Simulated hours to mine (default model.hourly_bootstrap_hours); each pool's "
            "first 24 are history only."
        ),
    ] = None,
    market: Annotated[Path | None, MARKET_OPTION] = None,
) -> None:
    """Train the first hourly model (the pool-hourly branch's) on the simulator's normal
    traffic: mined on a private chain, recorded by the real publisher, aggregated into
    PoolHours as a subgraph would; saves it at model.hourly_path."""
    from dexwatch.app.workflows.bootstrap import bootstrap_hourly_model

    settings = cli_settings(market)
    hours = hours or settings.model.hourly_bootstrap_hours
    with stage_progress() as on_progress:
        detector, _ = bootstrap_hourly_model(settings, hours, on_progress)
    typer.echo(
        f"hourly model {detector.version}: trained on {detector.training_rows} pool hours of "
        f"{hours} simulated hours; saved to {settings.hourly_model_path}"
    )


@app.command("list")
def model_list(
    model: Annotated[
        str | None, typer.Option(help="Only this model (chain-window, pool-hour).")
    ] = None,
) -> None:
    """List the registered versions of each model; production and previous are marked."""
    from model.registry import ModelRegistry, registered_model_names

    settings = cli_settings()
    names = [model] if model else registered_model_names(settings.registry_dir)
    if not names:
        fail(f"no models in {settings.registry_dir}: run `dexwatch model bootstrap` first")
    for name in names:
        registry = ModelRegistry(settings.registry_dir, name)
        versions = registry.versions()
        aliases = registry.aliases()
        typer.echo(f"{name}  ({len(versions)} versions, {registry.directory})")
        for v in versions:
            mark = {aliases.production: "production", aliases.previous: "previous"}.get(
                v.version, ""
            )
            meta = v.metadata
            typer.echo(
                f"  {mark:<10}  {v.version:<24}  trained {meta.get('trained_at', '?')[:19]}  "
                f"{meta.get('training_rows', '?')} rows  features v{meta.get('features_version')}"
                f"  code {meta.get('code_version', '?')}"
            )


def _change_production(model_name: str | None, version: str | None, rollback: bool) -> None:
    from dexwatch.app.workflows.promotion import change_production

    promotion = change_production(cli_settings(), model_name, version, rollback)
    if (deployed := promotion.vertex) is not None:
        typer.echo(
            f"Vertex AI: {deployed.model_resource_name} "
            f"({'uploaded to ' + deployed.artifact_uri if deployed.uploaded else 'reused'})"
            f" deployed to endpoint {deployed.endpoint_id} with all the traffic"
        )
    registry = promotion.registry
    aliases = registry.aliases()
    typer.echo(
        f"{registry.model_name}: production is now {aliases.production}"
        + (f" (previous {aliases.previous})" if aliases.previous else "")
        + f"; the pipeline loads {registry.production_path()}"
    )


@app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="A version from `dexwatch model list`.")],
    model: Annotated[
        str | None, typer.Option(help="The model, when a version name is ambiguous.")
    ] = None,
) -> None:
    """Make VERSION the production model. A running local pipeline and `dexwatch serve`
    use it from their next batch or request. With GCP configured (model.vertex_project),
    it is also uploaded to the Vertex AI Model Registry and deployed to its endpoint."""
    _change_production(model, version, rollback=False)


@app.command("rollback")
def model_rollback(
    model: Annotated[str, typer.Option(help="chain-window or pool-hour.")] = "chain-window",
) -> None:
    """Return production to the version promoted before the current one (on Vertex AI too
    when GCP is configured)."""
    _change_production(model, None, rollback=True)
