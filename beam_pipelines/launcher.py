"""Entry point of the Dataflow Flex Template (and of `python -m beam_pipelines.launcher`).

Only parses options and submits the streaming pipeline; it does not wait for the job, as
Flex Template launchers must not. ``--dexwatch_config`` names the settings file (baked into
the image); every other flag goes to Beam (``--runner DataflowRunner --project ...``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.pipeline import build_streaming_pipeline
from dexwatch.core.config import load_settings


def main(argv: list[str] | None = None):  # noqa: ANN201 - a runner's PipelineResult
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dexwatch_config", type=Path, required=True)
    known, beam_args = parser.parse_known_args(argv)
    settings = load_settings(known.dexwatch_config)
    return build_streaming_pipeline(settings, PipelineOptions(beam_args)).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
