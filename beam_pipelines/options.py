"""Runner options for the local runs; Dataflow gets its own from the launcher's flags."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


def batch_options(**extra: object) -> PipelineOptions:
    """FnApiRunner, named explicitly: plain DirectRunner tries to download Prism first."""
    return PipelineOptions(runner="FnApiRunner", **extra)


def local_streaming_options(**extra: object) -> PipelineOptions:
    return PipelineOptions(runner="BundleBasedDirectRunner", streaming=True, **extra)
