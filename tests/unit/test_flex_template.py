"""The Dataflow Flex Template, checked offline: its metadata parsed strictly as Dataflow's
TemplateMetadata, its parameters exactly the launcher's options, the spec gcloud builds
from it, the DataflowRunner dry run through the launcher with those parameters, and the
Dockerfiles (hadolint; Beam and Python versions against the lock). Building and running
the image is checked at deploy time only (no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from google.cloud.dataflow_v1beta3.types import TemplateMetadata
from google.protobuf import json_format

from beam_pipelines.launcher import IMAGE_CONFIG, main, production_settings, template_options
from dexwatch.app.workflows.deploy import METADATA_FILE, TerraformOutputs, build_template
from dexwatch.core.settings import SettingsError

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = ROOT / "beam_pipelines" / "template"
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "beam_pipelines" / "Dockerfile"]
# Terraform's dataflow_parameters.chains (the settings module's pipeline_chains).
CHAINS = json.dumps([
    {"chain_id": 1, "name": "ethereum", "block_time_s": None, "own_topic": False, "assets": None},
    {"chain_id": 137, "name": "polygon", "block_time_s": None, "own_topic": False,
     "assets": [{"address": "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", "symbol": "USDC",
                 "decimals": 6, "peg": "USD"}]},
], separators=(",", ":"))  # fmt: skip
DRY_RUN = [
    "--runner=DataflowRunner",
    "--dry_run=True",
    "--no_auth",
    "--project=my-project",
    "--region=europe-west1",
    "--temp_location=gs://my-bucket/tmp",
    "--sdk_location=container",
]


def metadata() -> dict:
    return json.loads((ROOT / METADATA_FILE).read_text())


def test_metadata_parses_strictly_as_dataflow_template_metadata():
    parsed = json_format.ParseDict(metadata(), TemplateMetadata.pb()())
    assert parsed.streaming
    # proto3 has no required fields: what gcloud insists on is checked here.
    assert parsed.name and parsed.description
    for parameter in parsed.parameters:
        assert parameter.name and parameter.label and parameter.help_text, parameter.name
        for regex in parameter.regexes:
            re.compile(regex)


def test_strict_parse_rejects_what_dataflow_would():
    for broken in (
        {**metadata(), "sdkInfo": {"language": "PYTHON"}},
        {**metadata(), "parameters": [{**metadata()["parameters"][0], "isOptinal": True}]},
        {**metadata(), "parameters": [{**metadata()["parameters"][0], "paramType": "TXT"}]},
    ):
        with pytest.raises(json_format.ParseError):
            json_format.ParseDict(broken, TemplateMetadata.pb()())


def test_template_parameters_are_exactly_the_launcher_options():
    launcher = {a.dest for a in template_options()._actions}
    assert {p["name"] for p in metadata()["parameters"]} == launcher


def test_every_regex_accepts_what_terraform_passes_and_rejects_a_typo():
    by_name = {p["name"]: p for p in metadata()["parameters"]}
    good = {
        "dexwatch_config": "/template/dexwatch.yaml",
        "bigquery_dataset": "dexwatch",
        "vertex_endpoint_id": "1234567890",
        "hourly_vertex_endpoint_id": "dexwatch-pool-hour",
        "vertex_location": "europe-west1",
        "hourly": "true",
        "chains": CHAINS,
    }
    assert set(good) == set(by_name)
    for name, value in good.items():
        assert all(re.fullmatch(r, value) for r in by_name[name]["regexes"]), name
    assert not re.fullmatch(by_name["hourly"]["regexes"][0], "yes")
    assert not re.fullmatch(by_name["vertex_location"]["regexes"][0], "europe west1")


def _parameters(config: Path) -> list[str]:
    return [
        f"--dexwatch_config={config}",
        "--bigquery_dataset=anomaly_data",
        "--vertex_endpoint_id=111",
        "--hourly_vertex_endpoint_id=222",
        "--vertex_location=europe-west4",
        "--hourly=true",
        f"--chains={CHAINS}",
    ]


def test_launcher_lays_the_parameters_and_beams_project_over_the_image_settings():
    known, rest = template_options().parse_known_args(
        _parameters(TEMPLATE_DIR / "dexwatch.yaml") + DRY_RUN
    )
    assert rest == DRY_RUN
    settings = production_settings(known, "my-project")
    assert settings.warehouse.backend == "bigquery"
    assert (settings.warehouse.bigquery_project, settings.warehouse.bigquery_dataset) == (
        "my-project",
        "anomaly_data",
    )
    assert settings.pubsub.project == "my-project" and settings.pubsub.emulator_host is None
    model = settings.model
    assert model.serving == "vertex" and model.vertex_project == "my-project"
    assert (model.vertex_endpoint_id, model.hourly_vertex_endpoint_id) == ("111", "222")
    assert model.vertex_location == "europe-west4"
    assert settings.pipeline.hourly is True
    assert [(c.chain_id, c.name) for c in settings.chains] == [(1, "ethereum"), (137, "polygon")]
    assert [a.symbol for a in settings.markets.of(137).assets] == ["USDC"]
    # The baked-in file is the image's default; the Dockerfile copies it there.
    assert str(IMAGE_CONFIG) in (ROOT / "beam_pipelines" / "Dockerfile").read_text()


def test_launcher_refuses_a_bad_boolean_and_an_unknown_setting(tmp_path: Path):
    with pytest.raises(SystemExit):
        template_options().parse_known_args(["--hourly=yes"])
    for chains in ('{"chain_id": 1}', "[1, 2]", "[{"):
        with pytest.raises(SystemExit):
            template_options().parse_known_args([f"--chains={chains}"])
    config = tmp_path / "dexwatch.yaml"
    config.write_text("warehouse:\n  backend: bigquery\n  datasett: x\n")
    known, _ = template_options().parse_known_args([f"--dexwatch_config={config}"])
    with pytest.raises(SettingsError, match="datasett"):
        production_settings(known, "my-project")
    # A chain with a fixed block time needs the image's pipeline.slice_s to hold whole blocks.
    twelve = '[{"chain_id": 1, "block_time_s": 12}]'
    known, _ = template_options().parse_known_args([f"--chains={twelve}"])
    with pytest.raises(SettingsError, match="slice_s 15"):
        production_settings(known, "my-project")


@pytest.fixture(scope="module")
def dry_run_job(tmp_path_factory: pytest.TempPathFactory):
    """The job the launcher submits with every template parameter (DataflowRunner dry run).
    A Vertex handler contacts its endpoint when built (tests/integration/
    test_vertex_serving.py runs that path against a local stand-in); the graph is the same
    with the model in the worker, which this config asks for."""
    tmp_path = tmp_path_factory.mktemp("template")
    image_settings = yaml.safe_load((TEMPLATE_DIR / "dexwatch.yaml").read_text())
    image_settings["model"] = {
        "serving": "local",
        "path": str(tmp_path / "model.joblib"),
        "hourly_path": str(tmp_path / "hourly.joblib"),
    }
    config = tmp_path / "dexwatch.yaml"
    config.write_text(yaml.safe_dump(image_settings))
    return main(_parameters(config) + DRY_RUN).job


def test_dataflow_dry_run_through_the_launcher_with_the_template_parameters(dry_run_job):
    assert dry_run_job.proto.type.name == "JOB_TYPE_STREAMING"
    names = {t.unique_name for t in dry_run_job.proto_pipeline.components.transforms.values()}
    # --hourly=true reached the graph; the tables are BigQuery's.
    assert any(n.startswith("ReadPoolHours") for n in names)
    assert any("AppendPool_scores" in n or "Appendpool_scores" in n for n in names)


def test_transform_names_are_those_a_running_job_can_be_updated_from(dry_run_job):
    """Dataflow keeps a streaming job's state on --update only when its transforms keep
    their names: a rename must be a deliberate edit of transform_names.txt, and a
    --transform-name-mapping at the next deploy."""
    names = {
        t.unique_name
        for t in dry_run_job.proto_pipeline.components.transforms.values()
        if not t.unique_name.startswith("ref_AppliedPTransform")
    }
    listed = {
        line
        for line in (TEMPLATE_DIR / "transform_names.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert names == listed, (
        f"renamed or new transforms: gone {sorted(listed - names)}, new {sorted(names - listed)}."
        " Update beam_pipelines/template/transform_names.txt, and deploy with"
        " --transform-name-mapping OLD=NEW for each rename"
    )


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud (Cloud SDK) not installed")
def test_gcloud_builds_the_template_spec_from_the_metadata(tmp_path: Path):
    outputs = TerraformOutputs(
        project="my-project",
        region="europe-west1",
        pipeline_image="europe-west1-docker.pkg.dev/my-project/dexwatch/pipeline",
        app_image="europe-west1-docker.pkg.dev/my-project/dexwatch/app",
        template_gcs_path="gs://my-project-dexwatch-staging/templates/dexwatch.json",
        dataflow_job_name="dexwatch",
        dataflow_parameters={},
        dataflow_environment={},
        vertex_endpoints={},
        vertex_serving={},
        serving_service_account="",
    )
    command = build_template(outputs, "v1.2.0", print_only=True)
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    done = subprocess.run(
        [*command.argv, "--format=json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    spec = json.loads(json.loads(done.stdout))  # gcloud prints the spec as a JSON string
    assert spec["image"] == f"{outputs.pipeline_image}:v1.2.0"
    assert spec["sdkInfo"]["language"] == "PYTHON"
    assert spec["metadata"]["parameters"] == metadata()["parameters"]
    assert spec["metadata"]["name"] == metadata()["name"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfiles_pass_hadolint(dockerfile: Path):
    hadolint = ROOT / ".venv" / "bin" / "hadolint"
    done = subprocess.run(
        [str(hadolint), "--failure-threshold", "warning", "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(done.stdout or "[]")
    assert done.returncode == 0, [f["code"] + " " + f["message"] for f in findings]


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nRUN pip install requests\n")
    done = subprocess.run(
        [str(ROOT / ".venv/bin/hadolint"), "--failure-threshold", "warning", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "DL3008" in done.stdout


def _locked(package: str) -> str:
    lock = (ROOT / "requirements.lock").read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", lock, re.M).group(1)


def test_the_pipeline_image_has_the_locked_beam_and_python():
    text = (ROOT / "beam_pipelines" / "Dockerfile").read_text()
    sdk = re.search(r"apache/beam_python(\d+\.\d+)_sdk:(\S+)", text)
    assert sdk is not None and sdk.group(2) == _locked("apache-beam")
    python = re.search(r"^FROM python:(\d+\.\d+)-slim", text, re.M).group(1)
    launcher = re.search(r"python(\d)(\d+)-template-launcher-base", text)
    locked_python = re.search(r"--python-version (\d+\.\d+)", (ROOT / "Makefile").read_text())
    assert sdk.group(1) == python == f"{launcher.group(1)}.{launcher.group(2)}"
    assert python == locked_python.group(1)
    # The app image runs the same Python as the lock was resolved for.
    assert f"FROM python:{python}-slim" in (ROOT / "Dockerfile").read_text()
