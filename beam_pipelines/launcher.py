"""Entry point of the Dataflow Flex Template (and of `python -m beam_pipelines.launcher`).

Only parses options and submits the streaming pipeline; it does not wait for the job, as
Flex Template launchers must not. Its own options (``TEMPLATE_OPTIONS``) are exactly the
template's parameters (``beam_pipelines/template/metadata.json``; a test keeps the two
equal): the settings file baked into the image and the few values that differ per
deployment, which Terraform outputs. Every other flag goes to Beam (``--runner
DataflowRunner --project ...``); the GCP project of Pub/Sub, BigQuery and Vertex AI is
Beam's ``--project``.

With ``--setup_file``, Beam builds the package the workers install from setup.py; the
launcher asks for the workers' cut of it (setup.py's ``DATAFLOW_WORKER_PACKAGE``; not a
``DEXWATCH_`` name, which the settings would take for one of theirs): the pipeline
and the core, not the CLI, the publishers, the model tooling or the local stack. The Flex
Template image has that cut installed already and is the workers' container too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from beam_pipelines.pipeline import build_streaming_pipeline
from dexwatch.core.config import load_settings
from dexwatch.core.settings import Settings

WORKER_PACKAGE_VARIABLE = "DATAFLOW_WORKER_PACKAGE"
# The production settings in the template image (beam_pipelines/template/dexwatch.yaml).
IMAGE_CONFIG = Path("/template/dexwatch.yaml")


def _flag(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def template_options() -> argparse.ArgumentParser:
    """The launcher's own options: the Flex Template's parameters."""
    parser = argparse.ArgumentParser(description=__doc__, add_help=False)
    parser.add_argument(
        "--dexwatch_config",
        type=Path,
        default=None,
        help=f"dexwatch settings file (default: {IMAGE_CONFIG} when it exists, in the image)",
    )
    parser.add_argument("--bigquery_dataset", default=None, help="BigQuery dataset of the tables")
    parser.add_argument(
        "--vertex_endpoint_id", default=None, help="Vertex AI endpoint of the chain-window model"
    )
    parser.add_argument(
        "--hourly_vertex_endpoint_id",
        default=None,
        help="Vertex AI endpoint of the pool-hour model (with --hourly true)",
    )
    parser.add_argument("--vertex_location", default=None, help="Region of the Vertex endpoints")
    parser.add_argument(
        "--hourly", type=_flag, default=None, help="Also score pool-hourly (true or false)"
    )
    parser.add_argument(
        "--chains",
        type=_chains,
        default=None,
        help="The chains scored, a JSON list of chain settings (their names, block times, "
        "market assets and own topics)",
    )
    return parser


def _chains(value: str) -> list[dict[str, Any]]:
    try:
        chains = json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"chains is not JSON: {err}") from None
    if not isinstance(chains, list) or not all(isinstance(c, dict) for c in chains):
        raise argparse.ArgumentTypeError("chains must be a JSON list of objects")
    return chains


def production_settings(known: argparse.Namespace, project: str | None) -> Settings:
    """The settings file with the template's parameters and Beam's project laid over it."""
    overrides: dict[str, Any] = {"pubsub": {}, "warehouse": {}, "model": {}}
    if project:
        overrides["pubsub"]["project"] = project
        overrides["warehouse"]["bigquery_project"] = project
        overrides["model"]["vertex_project"] = project
    if known.bigquery_dataset:
        overrides["warehouse"]["bigquery_dataset"] = known.bigquery_dataset
    for option in ("vertex_endpoint_id", "hourly_vertex_endpoint_id", "vertex_location"):
        if getattr(known, option):
            overrides["model"][option] = getattr(known, option)
    if known.hourly is not None:
        overrides["pipeline"] = {"hourly": known.hourly}
    if known.chains:
        overrides["chains"] = known.chains
    config = known.dexwatch_config
    if config is None and IMAGE_CONFIG.is_file():
        config = IMAGE_CONFIG
    return load_settings(config, **{k: v for k, v in overrides.items() if v})


@contextlib.contextmanager
def _workers_package() -> Iterator[None]:
    """setup.py builds the workers' cut while this is set (Beam stages it during run)."""
    before = os.environ.get(WORKER_PACKAGE_VARIABLE)
    os.environ[WORKER_PACKAGE_VARIABLE] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[WORKER_PACKAGE_VARIABLE]
        else:
            os.environ[WORKER_PACKAGE_VARIABLE] = before


def main(argv: list[str] | None = None):  # noqa: ANN201 - a runner's PipelineResult
    known, beam_args = template_options().parse_known_args(argv)
    options = PipelineOptions(beam_args)
    settings = production_settings(known, options.view_as(GoogleCloudOptions).project)
    with _workers_package():
        return build_streaming_pipeline(settings, options).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
