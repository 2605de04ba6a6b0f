"""Deploying a release to GCP: images, the Flex Template, the models, the streaming job.

Terraform (infra/terraform) makes everything that lasts; this is what follows a release tag,
in order, since each step needs the one before: the two images (Cloud Build), the template
spec that names the pipeline image, the production models on their Vertex AI endpoints
(``change_production``, the one promotion path), then the streaming job, launched, or
updated in place with ``--update`` when one of the same name runs (Dataflow keeps its state
when the transform names are unchanged; renamed ones are mapped with
``--transform-name-mappings``). The job is not a Terraform resource for that reason: an
update must come after the image and the models, and must say ``--update``.

Every GCP call goes through gcloud (or model.vertex for the models), so a plan can be
printed and checked without running it (``dry_run``); only gcloud's offline
``flex-template build --print-only`` is run here, in the tests.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from dexwatch.core.errors import UsageError
from dexwatch.core.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE_DIR = Path("beam_pipelines/template")
METADATA_FILE = TEMPLATE_DIR / "metadata.json"
IMAGES_BUILD = Path("infra/cloudbuild/images.yaml")
TERRAFORM_DIR = Path("infra/terraform")
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class DeployError(UsageError):
    """A deployment cannot go ahead as asked; the message says what is missing."""


class TerraformOutputs(BaseModel):
    """The outputs of infra/terraform that a deployment reads (``terraform output -json``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    project: str
    region: str
    pipeline_image: str
    app_image: str
    template_gcs_path: str
    dataflow_job_name: str
    dataflow_parameters: dict[str, str]
    dataflow_environment: dict[str, Any]
    vertex_endpoints: dict[str, str]
    vertex_serving: dict[str, Any]
    serving_service_account: str

    @classmethod
    def parse(cls, text: str) -> TerraformOutputs:
        """Outputs from ``terraform output -json`` ({name: {"value": ...}})."""
        try:
            values = {name: output["value"] for name, output in json.loads(text).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise DeployError(f"cannot read the Terraform outputs: {err}") from None
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            missing = [".".join(map(str, e["loc"])) for e in err.errors()]
            raise DeployError(
                f"Terraform outputs lack or mistype {', '.join(missing)}: "
                "run `terraform apply` in infra/terraform first"
            ) from None


@dataclass(frozen=True)
class Command:
    """One step of a deployment: what it does, in words, and the command that does it."""

    does: str
    argv: tuple[str, ...] = ()
    # A step done in-process (the models' promotion) instead of a command.
    call: Callable[[], str] | None = field(default=None, compare=False)

    def shell(self) -> str:
        return " ".join(_quote(a) for a in self.argv) if self.argv else f"({self.does})"


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else json.dumps(arg)


@dataclass(frozen=True)
class DeployOptions:
    tag: str
    build_images: bool = True
    promote_models: bool = True
    # old=new transform name prefixes, for an update after a rename.
    transform_name_mappings: tuple[str, ...] = ()
    hourly: bool = False

    def __post_init__(self) -> None:
        if not TAG_PATTERN.fullmatch(self.tag):
            raise DeployError(f"not a valid image tag: {self.tag!r}")
        for mapping in self.transform_name_mappings:
            if mapping.count("=") != 1 or mapping.startswith("=") or mapping.endswith("="):
                raise DeployError(f"a transform name mapping is old=new, not {mapping!r}")


def image_uri(repository: str, tag: str) -> str:
    return f"{repository}:{tag}"


def build_images(outputs: TerraformOutputs, tag: str) -> Command:
    subs = f"_APP_IMAGE={image_uri(outputs.app_image, tag)}," + (
        f"_PIPELINE_IMAGE={image_uri(outputs.pipeline_image, tag)}"
    )
    return Command(
        f"build and push the app and pipeline images, tag {tag} (Cloud Build)",
        ("gcloud", "builds", "submit", f"--project={outputs.project}",
         f"--region={outputs.region}", f"--config={IMAGES_BUILD}", f"--substitutions={subs}",
         "."),
    )  # fmt: skip


def build_template(outputs: TerraformOutputs, tag: str, print_only: bool = False) -> Command:
    return Command(
        f"write the Flex Template spec to {outputs.template_gcs_path}",
        ("gcloud", "dataflow", "flex-template", "build", outputs.template_gcs_path,
         f"--image={image_uri(outputs.pipeline_image, tag)}", "--sdk-language=PYTHON",
         f"--metadata-file={METADATA_FILE}", f"--project={outputs.project}",
         *(("--print-only",) if print_only else ())),
    )  # fmt: skip


def job_parameters(outputs: TerraformOutputs, options: DeployOptions) -> dict[str, str]:
    """The template's parameters (metadata.json), and the workers' container."""
    known = {p["name"] for p in json.loads((ROOT / METADATA_FILE).read_text())["parameters"]}
    parameters = {k: str(v) for k, v in outputs.dataflow_parameters.items() if k in known and v}
    parameters["hourly"] = "true" if options.hourly else "false"
    if options.hourly and not parameters.get("hourly_vertex_endpoint_id"):
        raise DeployError("hourly needs dataflow_parameters.hourly_vertex_endpoint_id")
    # Beam's option: the workers run the template's own image.
    parameters["sdk_container_image"] = image_uri(outputs.pipeline_image, options.tag)
    return parameters


def run_job(outputs: TerraformOutputs, options: DeployOptions, update: bool) -> Command:
    env = outputs.dataflow_environment
    parameters = job_parameters(outputs, options)
    argv = [
        "gcloud", "dataflow", "flex-template", "run", outputs.dataflow_job_name,
        f"--template-file-gcs-location={outputs.template_gcs_path}",
        f"--project={outputs.project}", f"--region={outputs.region}",
        # ^;^: a separator that no value holds (image URIs hold ':' and ',').
        "--parameters=^;^" + ";".join(f"{k}={v}" for k, v in sorted(parameters.items())),
        f"--service-account-email={env['service_account_email']}",
        f"--temp-location={env['temp_location']}",
        f"--staging-location={env['staging_location']}",
        f"--max-workers={env['max_workers']}",
        f"--worker-machine-type={env['worker_machine_type']}",
    ]  # fmt: skip
    if env.get("enable_streaming_engine", True):
        argv.append("--enable-streaming-engine")
    if env.get("subnetwork"):
        argv += [f"--subnetwork={env['subnetwork']}", "--disable-public-ips"]
    if update:
        argv.append("--update")
        if options.transform_name_mappings:
            argv.append("--transform-name-mappings=" + ",".join(options.transform_name_mappings))
    does = "update the running job in place (--update: its state is kept)" if update else (
        "launch the streaming job"
    )  # fmt: skip
    return Command(f"{does}: {outputs.dataflow_job_name}", tuple(argv))


def active_job_lookup(outputs: TerraformOutputs) -> Command:
    return Command(
        "look for a running job of that name",
        ("gcloud", "dataflow", "jobs", "list", f"--project={outputs.project}",
         f"--region={outputs.region}", "--status=active",
         f"--filter=name={outputs.dataflow_job_name}", "--format=value(id)"),
    )  # fmt: skip


def production_model_settings(settings: Settings, outputs: TerraformOutputs, tag: str) -> Settings:
    """``settings`` with the model section pointed at the deployment's Vertex AI: its
    project and region, the endpoints, the models bucket, the serving image, machine type,
    replicas and service account."""
    model = settings.model.model_copy(
        update={
            "vertex_project": outputs.project,
            "vertex_location": outputs.dataflow_parameters.get("vertex_location") or outputs.region,
            "vertex_endpoint_id": outputs.vertex_endpoints.get("chain-window", ""),
            "hourly_vertex_endpoint_id": outputs.vertex_endpoints.get("pool-hour", ""),
            "vertex_staging_uri": outputs.vertex_serving["staging_uri"].rstrip("/"),
            "serving_image_uri": image_uri(outputs.app_image, tag),
            "vertex_machine_type": outputs.vertex_serving["machine_type"],
            "vertex_min_replicas": int(outputs.vertex_serving["min_replicas"]),
            "vertex_max_replicas": int(outputs.vertex_serving["max_replicas"]),
            "vertex_service_account": outputs.serving_service_account,
        }
    )
    return settings.model_copy(update={"model": model})


def promote_models(settings: Settings, models: Sequence[str]) -> list[Command]:
    """One step per model: its production version onto its endpoint (model.vertex)."""
    from dexwatch.app.workflows.promotion import change_production
    from model.registry import ModelRegistry

    steps = []
    for name in models:
        production = ModelRegistry(settings.registry_dir, name).aliases().production
        if production is None:
            raise DeployError(
                f"{name} has no production version in {settings.registry_dir}: "
                "train and promote one first (dexwatch train, dexwatch model promote)"
            )

        def call(name: str = name, version: str = production) -> str:
            deployed = change_production(settings, name, version, rollback=False).vertex
            assert deployed is not None  # gcp_configured: production_model_settings set it
            how = "uploaded" if deployed.uploaded else "already uploaded"
            return f"{deployed.model_resource_name} ({how}) on endpoint {deployed.endpoint_id}"

        steps.append(Command(f"deploy {name} {production} to its Vertex AI endpoint", call=call))
    return steps


def read_outputs(path: Path | None) -> TerraformOutputs:
    """From a saved ``terraform output -json``, or by running it in infra/terraform."""
    if path is not None:
        return TerraformOutputs.parse(path.read_text())
    try:
        done = subprocess.run(
            ["terraform", f"-chdir={ROOT / TERRAFORM_DIR}", "output", "-json"],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
    except FileNotFoundError:
        raise DeployError("terraform is not installed: pass --outputs FILE") from None
    except subprocess.CalledProcessError as err:
        raise DeployError(f"terraform output failed: {err.stderr.strip()[:300]}") from None
    return TerraformOutputs.parse(done.stdout)


def gcloud(argv: Sequence[str]) -> str:
    """Run one gcloud command from the repository root; its output, or a DeployError."""
    try:
        done = subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise DeployError("gcloud is not installed (Google Cloud SDK)") from None
    except subprocess.CalledProcessError as err:
        tail = (err.stderr or err.stdout).strip().splitlines()[-3:]
        raise DeployError(f"{' '.join(argv[:4])} failed: {' / '.join(tail)}") from None
    return done.stdout


def deploy(
    settings: Settings,
    outputs: TerraformOutputs,
    options: DeployOptions,
    say: Callable[[str], None],
    dry_run: bool = False,
    run: Callable[[Sequence[str]], str] = gcloud,
) -> list[Command]:
    """Deploy ``options.tag``, saying each step as it starts; returns the steps taken (with
    ``dry_run`` only said, nothing run; the job is then shown as a launch)."""
    models = ["chain-window", *(["pool-hour"] if options.hourly else [])]
    steps = []
    if options.build_images:
        steps.append(build_images(outputs, options.tag))
    steps.append(build_template(outputs, options.tag))
    if options.promote_models:
        steps += promote_models(production_model_settings(settings, outputs, options.tag), models)
    for step in steps:
        say(f"{'would ' if dry_run else ''}{step.does}\n  $ {step.shell()}")
        if not dry_run:
            said = step.call() if step.call else run(step.argv)
            if step.call:
                say(f"  {said}")
    lookup = active_job_lookup(outputs)
    running = bool(run(lookup.argv).strip()) if not dry_run else False
    job = run_job(outputs, options, update=running)
    say(f"{'would ' if dry_run else ''}{job.does}\n  $ {job.shell()}")
    if not dry_run:
        run(job.argv)
    return [*steps, job]
