"""Entry point of the Dataflow Flex Template (and of `python -m beam_pipelines.launcher`).

Only parses options and submits the streaming pipeline; it does not wait for the job, as
Flex Template launchers must not. ``--dexwatch_config`` names the settings file (baked into
the image); every other flag goes to Beam (``--runner DataflowRunner --project ...``).
With ``--setup_file``, Beam builds the package the workers install from setup.py; the
launcher asks for the workers' cut of it (setup.py's ``DATAFLOW_WORKER_PACKAGE``; not a
``DEXWATCH_`` name, which the settings would take for one of theirs): the pipeline
and the core, not the CLI, the publishers, the model tooling or the local stack.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.pipeline import build_streaming_pipeline
from dexwatch.core.config import load_settings

WORKER_PACKAGE_VARIABLE = "DATAFLOW_WORKER_PACKAGE"


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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dexwatch_config", type=Path, required=True)
    known, beam_args = parser.parse_known_args(argv)
    settings = load_settings(known.dexwatch_config)
    with _workers_package():
        return build_streaming_pipeline(settings, PipelineOptions(beam_args)).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
