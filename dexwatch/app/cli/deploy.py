"""`dexwatch deploy`: a release onto the GCP project Terraform made."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexwatch.app.cli.context import cli_settings


def deploy(
    tag: Annotated[str, typer.Option(help="Image tag of this release, e.g. the git tag.")],
    outputs: Annotated[
        Path | None,
        typer.Option(
            help="A saved `terraform output -json` (default: run it in infra/terraform).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print each step and its command; run nothing.")
    ] = False,
    skip_images: Annotated[
        bool, typer.Option("--skip-images", help="The images of TAG exist already.")
    ] = False,
    skip_models: Annotated[
        bool, typer.Option("--skip-models", help="Leave the Vertex AI endpoints as they are.")
    ] = False,
    hourly: Annotated[
        bool, typer.Option("--hourly", help="Also score pool-hourly (the pool-hour model).")
    ] = False,
    transform_name_mapping: Annotated[
        list[str] | None,
        typer.Option(
            help="old=new: a transform renamed since the running job (repeatable; see "
            "README, Deploy: updating the job)."
        ),
    ] = None,
) -> None:
    """Deploy a release: build and push the images (Cloud Build), write the Flex Template,
    deploy the production models to their Vertex AI endpoints, then launch the streaming
    job, or update the running one in place (--update keeps its state). Run `terraform
    apply` in infra/terraform first; each step is printed with its command."""
    from dexwatch.app.workflows.deploy import DeployOptions, deploy, read_outputs

    options = DeployOptions(
        tag=tag,
        build_images=not skip_images,
        promote_models=not skip_models,
        transform_name_mappings=tuple(transform_name_mapping or ()),
        hourly=hourly,
    )
    steps = deploy(cli_settings(), read_outputs(outputs), options, typer.echo, dry_run=dry_run)
    typer.echo(f"{'planned' if dry_run else 'done'}: {len(steps)} steps for {tag}")
