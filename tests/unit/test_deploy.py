"""`dexwatch deploy`: the steps a release takes, from Terraform's outputs, in order; a
running job is updated in place (--update), not replaced. GCP runs nothing here: gcloud is
replaced by a recorder of the commands, which is what these tests check; gcloud's own
offline template build runs in test_flex_template.py."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dexwatch.app.cli import app
from dexwatch.app.workflows.deploy import (
    DeployError,
    DeployOptions,
    TerraformOutputs,
    deploy,
    production_model_settings,
)
from tests.conftest import make_settings

VALUES = {
    "project": "acme-dex",
    "region": "europe-west1",
    "artifact_registry": "europe-west1-docker.pkg.dev/acme-dex/dexwatch",
    "pipeline_image": "europe-west1-docker.pkg.dev/acme-dex/dexwatch/pipeline",
    "app_image": "europe-west1-docker.pkg.dev/acme-dex/dexwatch/app",
    "staging_bucket": "gs://acme-dex-dexwatch-staging",
    "models_bucket": "gs://acme-dex-dexwatch-models",
    "template_gcs_path": "gs://acme-dex-dexwatch-staging/templates/dexwatch.json",
    "dataflow_job_name": "dexwatch-streaming",
    "dataflow_parameters": {
        "bigquery_dataset": "dexwatch",
        "vertex_endpoint_id": "101",
        "hourly_vertex_endpoint_id": "102",
        "vertex_location": "europe-west1",
    },
    "dataflow_environment": {
        "service_account_email": "dexwatch-dataflow@acme-dex.iam.gserviceaccount.com",
        "temp_location": "gs://acme-dex-dexwatch-staging/tmp",
        "staging_location": "gs://acme-dex-dexwatch-staging/staging",
        "subnetwork": "",
        "max_workers": 3,
        "worker_machine_type": "n2-standard-2",
        "enable_streaming_engine": True,
    },
    "vertex_endpoints": {"chain-window": "101", "pool-hour": "102"},
    "vertex_serving": {
        "machine_type": "n1-standard-2",
        "min_replicas": 1,
        "max_replicas": 3,
        "staging_uri": "gs://acme-dex-dexwatch-models",
    },
    "serving_service_account": "dexwatch-serving@acme-dex.iam.gserviceaccount.com",
}


def terraform_json(values: dict) -> str:
    """What `terraform output -json` prints."""
    return json.dumps({k: {"sensitive": False, "type": "x", "value": v} for k, v in values.items()})


class Gcloud:
    """Records the commands; answers the running-job lookup with ``running``."""

    def __init__(self, running: str = "") -> None:
        self.running = running
        self.commands: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.commands.append(list(argv))
        return self.running if list(argv[1:3]) == ["dataflow", "jobs"] else ""


def _run(tmp_path: Path, running: str = "", **options) -> tuple[Gcloud, list[str]]:
    gcloud, said = Gcloud(running), []
    deploy(
        make_settings(tmp_path),
        TerraformOutputs.parse(terraform_json(VALUES)),
        DeployOptions(tag="v1.4.0", promote_models=False, **options),
        said.append,
        run=gcloud,
    )
    return gcloud, said


def _flag(command: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in command if a.startswith(f"--{name}="))


def test_a_first_release_builds_both_images_the_template_then_launches(tmp_path: Path):
    gcloud, said = _run(tmp_path)
    build, template, lookup, launch = gcloud.commands
    assert build[:3] == ["gcloud", "builds", "submit"]
    assert _flag(build, "config") == "infra/cloudbuild/images.yaml"
    assert _flag(build, "substitutions") == (
        f"_APP_IMAGE={VALUES['app_image']}:v1.4.0,_PIPELINE_IMAGE={VALUES['pipeline_image']}:v1.4.0"
    )
    assert template[:4] == ["gcloud", "dataflow", "flex-template", "build"]
    assert template[4] == VALUES["template_gcs_path"]
    assert _flag(template, "image") == f"{VALUES['pipeline_image']}:v1.4.0"
    assert "--print-only" not in template
    assert lookup[:3] == ["gcloud", "dataflow", "jobs"]
    assert launch[:5] == ["gcloud", "dataflow", "flex-template", "run", "dexwatch-streaming"]
    assert "--update" not in launch and "--enable-streaming-engine" in launch
    parameters = dict(
        p.split("=", 1) for p in _flag(launch, "parameters").removeprefix("^;^").split(";")
    )
    assert parameters == {
        "bigquery_dataset": "dexwatch",
        "vertex_endpoint_id": "101",
        "hourly_vertex_endpoint_id": "102",
        "vertex_location": "europe-west1",
        "hourly": "false",
        "sdk_container_image": f"{VALUES['pipeline_image']}:v1.4.0",
    }
    assert (
        _flag(launch, "service-account-email")
        == VALUES["dataflow_environment"]["service_account_email"]
    )
    assert any("launch the streaming job" in line for line in said)


def test_a_running_job_is_updated_in_place_with_its_renamed_transforms(tmp_path: Path):
    gcloud, said = _run(
        tmp_path,
        running="2026-12-01_01_02_03-123\n",
        build_images=False,
        transform_name_mappings=("ScorePools=Score",),
    )
    assert [c[1] for c in gcloud.commands] == ["dataflow"] * 3  # no image build
    launch = gcloud.commands[-1]
    assert "--update" in launch
    assert _flag(launch, "transform-name-mappings") == "ScorePools=Score"
    assert any("update the running job in place" in line for line in said)


def test_bad_options_and_missing_outputs_are_named(tmp_path: Path):
    with pytest.raises(DeployError, match="image tag"):
        DeployOptions(tag="v1 final")
    with pytest.raises(DeployError, match="old=new"):
        DeployOptions(tag="v1", transform_name_mappings=("Score",))
    partial = {k: v for k, v in VALUES.items() if k not in ("template_gcs_path", "region")}
    with pytest.raises(DeployError, match="region, template_gcs_path"):
        TerraformOutputs.parse(terraform_json(partial))
    with pytest.raises(DeployError, match="hourly_vertex_endpoint_id"):
        outputs = {**VALUES, "dataflow_parameters": {"vertex_endpoint_id": "101"}}
        deploy(
            make_settings(tmp_path),
            TerraformOutputs.parse(terraform_json(outputs)),
            DeployOptions(tag="v1", promote_models=False, hourly=True),
            print,
            run=Gcloud(),
        )


def test_models_go_to_the_deployments_vertex_ai_and_need_a_production_version(tmp_path: Path):
    settings = production_model_settings(
        make_settings(tmp_path), TerraformOutputs.parse(terraform_json(VALUES)), "v1.4.0"
    )
    model = settings.model
    assert model.gcp_configured and model.vertex_project == "acme-dex"
    assert (model.vertex_endpoint_id, model.hourly_vertex_endpoint_id) == ("101", "102")
    assert model.vertex_staging_uri == "gs://acme-dex-dexwatch-models"
    assert (model.vertex_min_replicas, model.vertex_max_replicas) == (1, 3)
    assert model.vertex_service_account == VALUES["serving_service_account"]
    assert model.serving_image_uri == f"{VALUES['app_image']}:v1.4.0"
    # No model trained in this state dir: the deployment stops before touching GCP.
    gcloud = Gcloud()
    with pytest.raises(DeployError, match="chain-window has no production version"):
        deploy(
            make_settings(tmp_path),
            TerraformOutputs.parse(terraform_json(VALUES)),
            DeployOptions(tag="v1.4.0"),
            print,
            run=gcloud,
        )
    assert gcloud.commands == []


def test_the_cli_prints_the_plan_of_a_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(terraform_json(VALUES))
    monkeypatch.setenv("DEXWATCH_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(
        app,
        ["deploy", "--tag", "v2.0.0", "--outputs", str(outputs), "--dry-run", "--skip-models"],
    )
    assert result.exit_code == 0, result.output
    assert "would build and push the app and pipeline images, tag v2.0.0" in result.output
    assert "$ gcloud dataflow flex-template build gs://acme-dex-dexwatch-staging" in result.output
    assert "would launch the streaming job: dexwatch-streaming" in result.output
    assert "planned: 3 steps for v2.0.0" in result.output
