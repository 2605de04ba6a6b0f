"""Peak memory of the streaming pipeline's per-pool state with 1,000 pools.

Generates a synthetic stream (not mined: a chain with 1,000 funded pools would take longer
to build than to measure) of V2-style Swap and Sync events for ``--pools`` pools, one swap
per pool every ``--every-s`` seconds of event time over ``--minutes`` minutes, and runs it
through the streaming transforms (admission, per-pool slice and window state, scoring with
the model of bench/replay.py) on the streaming DirectRunner with TestStream. Reports the
process's peak resident memory. Writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import apache_beam as beam
from _results import write_results
from _synthetic import history
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.transforms.admission import AdmitEvents
from beam_pipelines.transforms.features import PoolWindowFeatures
from beam_pipelines.transforms.scoring import DetectorModelHandler, ScoreWindows
from dexwatch.core.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
MODEL = (
    ROOT / "bench" / "work" / "pipeline" / "state" / "models" / "chain-window" / "current.joblib"
)
T0 = 1_800_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--every-s", type=int, default=15)
    args = parser.parse_args()
    if not MODEL.is_file():
        raise SystemExit(f"no model at {MODEL}: run bench/replay.py first")
    settings = load_settings().pipeline
    stream = TestStream()
    count = 0
    for t, batch in history(args.pools, T0, args.minutes * 60, args.every_s):
        stream = stream.advance_watermark_to(t).add_elements(
            [TimestampedValue(e, e.block_timestamp) for e in batch]
        )
        count += len(batch)
    stream = stream.advance_watermark_to_infinity()
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    with beam.Pipeline(options=options) as pipeline:
        admitted = pipeline | stream | AdmitEvents(settings)
        rows = admitted["main"] | PoolWindowFeatures(settings)
        scored = rows["main"] | ScoreWindows(DetectorModelHandler(MODEL))
        scored["main"] | beam.Map(lambda row: None)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count} events for {args.pools} pools in {seconds:.0f} s; "
          f"peak RSS {peak:.0f} MiB (before the pipeline: {before:.0f} MiB)")  # fmt: skip
    path = write_results(
        "memory",
        {
            f"peak_rss_mib_{args.pools}_pools": {"value": round(peak), "unit": "MiB"},
            "events": {"value": count, "unit": "events"},
            "rss_before_pipeline_mib": {"value": round(before), "unit": "MiB"},
        },
        note=f"streaming DirectRunner, synthetic stream, {args.minutes} min of event time",
        summary="pipeline",
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
