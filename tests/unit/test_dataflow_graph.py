"""The production graph translates to a Dataflow job, offline (DataflowRunner dry run, as
Beam's own runner tests do): Pub/Sub read, windows, RunInference, BigQuery and Pub/Sub
writes, a streaming job."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from beam_pipelines.launcher import main as launch
from beam_pipelines.pipeline import build_streaming_pipeline
from beam_pipelines.transforms.scoring import DetectorModelHandler
from dexwatch.core.config import load_settings

DRY_RUN = [
    "--runner=DataflowRunner",
    "--dry_run=True",
    "--no_auth",
    "--project=my-project",
    "--region=us-central1",
    "--temp_location=gs://my-bucket/tmp",
    "--sdk_location=container",
]
PRODUCTION = {
    "pubsub": {"project": "my-project", "emulator_host": ""},
    "warehouse": {"backend": "bigquery", "bigquery_project": "my-project"},
}


def _transform_names(result) -> set[str]:
    transforms = result.job.proto_pipeline.components.transforms.values()
    return {t.unique_name.split("/")[0] for t in transforms} | {t.unique_name for t in transforms}


def test_streaming_graph_translates_to_a_dataflow_job(tmp_path: Path):
    from apache_beam.options.pipeline_options import PipelineOptions

    settings = load_settings(**PRODUCTION)
    # A Vertex handler would contact its endpoint when built; the graph is the same.
    handler = DetectorModelHandler(tmp_path / "model.joblib")
    result = build_streaming_pipeline(settings, PipelineOptions(DRY_RUN), handler).run()
    assert result.job.proto.type.name == "JOB_TYPE_STREAMING"
    names = _transform_names(result)
    for expected in ("ReadPoolEvents", "Score/RunInference", "WriteScores", "PublishAlerts"):
        assert expected in names, expected
    # Production writes BigQuery, not the local DuckDB file.
    assert any("AppendPool_scores" in n or "Appendpool_scores" in n for n in names)


def test_the_hourly_branch_joins_the_same_sinks_in_the_dataflow_job(tmp_path: Path):
    from apache_beam.options.pipeline_options import PipelineOptions

    from dexwatch.core.features.hourly import HOURLY_FEATURE_NAMES

    settings = load_settings(**PRODUCTION, pipeline={"hourly": True})
    result = build_streaming_pipeline(
        settings,
        PipelineOptions(DRY_RUN),
        DetectorModelHandler(tmp_path / "model.joblib"),
        hourly_handler=DetectorModelHandler(
            tmp_path / "hourly.joblib", feature_names=HOURLY_FEATURE_NAMES
        ),
    ).run()
    names = _transform_names(result)
    for expected in ("ReadPoolHours", "ParseHours", "ScoreHours/RunInference", "BothSources"):
        assert expected in names, expected
    # Both sources reach the one threading step and the same table writers.
    assert {"Threads", "WriteScores", "WriteAnomalies"} <= names


def test_launcher_only_parses_options_and_submits(tmp_path: Path):
    config = tmp_path / "dexwatch.yaml"
    config.write_text(
        yaml.safe_dump({**PRODUCTION, "model": {"path": str(tmp_path / "model.joblib")}})
    )
    result = launch(["--dexwatch_config", str(config), *DRY_RUN])
    assert result.job.proto.type.name == "JOB_TYPE_STREAMING"


def _staged_package(result) -> Path:
    """The package Beam staged for the workers (the ``workflow.tar.gz`` artifact)."""
    from apache_beam.portability.api import beam_runner_api_pb2

    for environment in result.job.proto_pipeline.components.environments.values():
        for dependency in environment.dependencies:
            role = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                dependency.role_payload
            )
            if role.staged_name == "workflow.tar.gz":
                payload = beam_runner_api_pb2.ArtifactFilePayload.FromString(
                    dependency.type_payload
                )
                return Path(payload.path)
    raise AssertionError("no workflow.tar.gz staged")


def test_the_workers_get_the_pipeline_and_the_core_only(tmp_path: Path, monkeypatch):
    """``--setup_file`` ships the workers' cut of the package: it builds the pipeline on its
    own, without the CLI, the publishers, the model tooling or the local stack."""
    import subprocess
    import sys
    import tarfile

    monkeypatch.delenv("DATAFLOW_WORKER_PACKAGE", raising=False)
    config = tmp_path / "dexwatch.yaml"
    config.write_text(
        yaml.safe_dump({**PRODUCTION, "model": {"path": str(tmp_path / "model.joblib")}})
    )
    setup_file = Path(__file__).resolve().parents[2] / "setup.py"
    result = launch(["--dexwatch_config", str(config), *DRY_RUN, f"--setup_file={setup_file}"])
    with tarfile.open(_staged_package(result)) as package:
        package.extractall(tmp_path / "worker", filter="data")
        names = {name.split("/", 1)[1] for name in package.getnames() if "/" in name}
    assert {"dexwatch/core/settings.py", "beam_pipelines/pipeline.py"} <= names
    assert "dexwatch/core/schemas/pool_event.avsc" in names  # package data travels too
    shipped_roots = {name.split("/")[0] for name in names if "/" in name}
    assert shipped_roots == {"dexwatch", "beam_pipelines"}
    assert not [name for name in names if name.startswith("dexwatch/app")]
    assert "DATAFLOW_WORKER_PACKAGE" not in os.environ  # only while Beam stages
    (root,) = (tmp_path / "worker").iterdir()
    ours = "dexwatch", "beam_pipelines", "publishers", "model", "infra"
    imports = (
        "import sys, beam_pipelines.pipeline\n"
        "for name, module in list(sys.modules.items()):\n"
        f"    if name.split('.')[0] in {ours} and getattr(module, '__file__', None):\n"
        "        print(module.__file__)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", imports], cwd=tmp_path, env={"PYTHONPATH": str(root)},
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert loaded and all(path.startswith(str(root)) for path in loaded), loaded


RPC_KEY = "Rpckey0987654321abcdef"
SUBGRAPH_KEY = "Subgraphkey1234567890abcdef"


def _pickled_payloads(pipeline_proto) -> bytes:
    """Every transform's payload, with the DoFns Beam pickled (base64 of zlib or bz2)
    unpacked: what the workers receive."""
    import base64
    import bz2
    import zlib

    from apache_beam.portability.api import beam_runner_api_pb2

    found = []
    for transform in pipeline_proto.components.transforms.values():
        found.append(transform.spec.payload)
        if transform.spec.urn != "beam:transform:pardo:v1":
            continue
        pickled = base64.b64decode(
            beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn.payload
        )
        for unpack in (zlib.decompress, bz2.decompress):
            try:
                found.append(unpack(pickled))
            except (zlib.error, OSError, ValueError):
                continue
    return b"\n".join(found)


def test_the_workers_receive_no_secret(tmp_path: Path):
    """The pipeline's DoFns carry the settings they use, never the keys of the RPC URLs or
    the subgraph gateway (the local graph pickles its DuckDB sinks, the production graph
    its BigQuery and Pub/Sub writes)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.options import local_streaming_options

    secrets = {
        "chain": {"rpc_urls": [f"https://mainnet.example/v3/{RPC_KEY}"]},
        "subgraph": {"api_key": SUBGRAPH_KEY},
    }
    handler = DetectorModelHandler(tmp_path / "model.joblib")
    local = load_settings(**secrets, state_dir=str(tmp_path), pipeline={"hourly": True})
    graphs = [
        build_streaming_pipeline(
            local, local_streaming_options(), handler, hourly_handler=handler
        ).to_runner_api()
    ]
    production = load_settings(**PRODUCTION, **secrets)
    result = build_streaming_pipeline(production, PipelineOptions(DRY_RUN), handler).run()
    graphs.append(result.job.proto_pipeline)
    for graph in graphs:
        payloads = _pickled_payloads(graph)
        assert b"DetectorModelHandler" in payloads or b"RunInference" in payloads  # unpacked
        assert RPC_KEY.encode() not in payloads
        assert SUBGRAPH_KEY.encode() not in payloads
