"""Promotion on GCP: the version's artifact directory to Cloud Storage, a new version in
the Vertex AI Model Registry served by our prediction container, deployed to the model's
endpoint with all the traffic; the versions deployed before are undeployed.

Every google-cloud-aiplatform and google-cloud-storage call of dexwatch is here. They cannot
run on a machine without GCP access: tests pass recording stand-ins for both clients and
check the calls, not Google's side.

A version uploaded once is remembered (``vertex-models.json`` beside the registry's alias
file), so a rollback redeploys the Vertex model it already has instead of uploading again.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import orjson

from dexwatch.core.errors import UsageError
from dexwatch.core.files import write_atomically
from dexwatch.core.settings import ModelSettings
from model.registry import CHAIN_WINDOW, POOL_HOUR, ModelRegistry, ModelVersion

UPLOADED_FILE = "vertex-models.json"
# The routes and port the container serves (model/serving/app.py defaults); Vertex passes
# them back to it as AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE and AIP_HTTP_PORT.
PREDICT_ROUTE, HEALTH_ROUTE, PORT = "/predict", "/health", 8080


class VertexError(UsageError):
    """Promotion on Vertex AI cannot go ahead; the message says which setting is missing."""


@dataclasses.dataclass(frozen=True)
class VertexDeployment:
    model_resource_name: str
    artifact_uri: str
    endpoint_id: str
    uploaded: bool  # False: an earlier upload of the same version was reused
    undeployed: tuple[str, ...]  # deployed-model ids taken off the endpoint


def endpoint_for(settings: ModelSettings, model_name: str) -> str:
    endpoints = {
        CHAIN_WINDOW: settings.vertex_endpoint_id,
        POOL_HOUR: settings.hourly_vertex_endpoint_id,
    }
    return endpoints.get(model_name, "")


def check_settings(settings: ModelSettings, model_name: str) -> None:
    missing = [
        f"model.{key}"
        for key, value in (
            ("vertex_project", settings.vertex_project),
            ("vertex_staging_uri", settings.vertex_staging_uri),
            ("serving_image_uri", settings.serving_image_uri),
        )
        if not value
    ]
    if not endpoint_for(settings, model_name):
        key = "hourly_vertex_endpoint_id" if model_name == POOL_HOUR else "vertex_endpoint_id"
        missing.append(f"model.{key}")
    if missing:
        raise VertexError(f"promoting {model_name} on Vertex AI needs {', '.join(missing)}")


def vertex_alias(version: str) -> str:
    """A registry version as a Vertex version alias ([a-z][a-z0-9-]*, at most 128)."""
    return ("v-" + re.sub(r"[^a-z0-9-]", "-", version.lower())).rstrip("-")[:128]


def upload_directory(directory: Path, gcs_uri: str, storage_client: Any) -> None:
    bucket_name, _, prefix = gcs_uri.removeprefix("gs://").partition("/")
    bucket = storage_client.bucket(bucket_name)
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = "/".join(part for part in (prefix, path.relative_to(directory).as_posix()) if part)
        bucket.blob(name).upload_from_filename(str(path))


def promote_on_vertex(
    settings: ModelSettings,
    registry: ModelRegistry,
    version: ModelVersion,
    aiplatform: Any = None,
    storage_client: Any = None,
) -> VertexDeployment:
    """Upload ``version`` (once) and deploy it to its endpoint with 100 % of the traffic."""
    check_settings(settings, registry.model_name)
    if aiplatform is None:
        from google.cloud import aiplatform
    aiplatform.init(project=settings.vertex_project, location=settings.vertex_location)
    uploaded_file = registry.directory / UPLOADED_FILE
    uploaded = orjson.loads(uploaded_file.read_bytes()) if uploaded_file.is_file() else {}
    artifact_uri = f"{settings.vertex_staging_uri}/{registry.model_name}/{version.version}"
    reused = version.version in uploaded
    if reused:
        model = aiplatform.Model(model_name=uploaded[version.version])
    else:
        if storage_client is None:
            from google.cloud import storage

            storage_client = storage.Client(project=settings.vertex_project)
        upload_directory(version.directory, artifact_uri, storage_client)
        model = _upload_model(aiplatform, settings, registry.model_name, version, artifact_uri)
        uploaded[version.version] = model.resource_name
        write_atomically(uploaded_file, orjson.dumps(uploaded, option=orjson.OPT_INDENT_2))
    endpoint_id = endpoint_for(settings, registry.model_name)
    endpoint = aiplatform.Endpoint(endpoint_name=endpoint_id)
    before = [deployed.id for deployed in endpoint.list_models()]
    model.deploy(
        endpoint=endpoint,
        deployed_model_display_name=f"{registry.model_name}-{version.version}",
        machine_type=settings.vertex_machine_type,
        min_replica_count=settings.vertex_min_replicas,
        max_replica_count=settings.vertex_max_replicas,
        # None: Vertex's default identity; Terraform makes one that only reads the models.
        service_account=settings.vertex_service_account or None,
        traffic_percentage=100,
    )
    # The new version has all the traffic; the old ones would only cost money.
    for deployed_model_id in before:
        endpoint.undeploy(deployed_model_id=deployed_model_id)
    return VertexDeployment(
        model_resource_name=model.resource_name,
        artifact_uri=artifact_uri,
        endpoint_id=endpoint_id,
        uploaded=not reused,
        undeployed=tuple(before),
    )


def _upload_model(
    aiplatform: Any,
    settings: ModelSettings,
    model_name: str,
    version: ModelVersion,
    artifact_uri: str,
) -> Any:
    display_name = f"dexwatch-{model_name}"
    existing = aiplatform.Model.list(filter=f'display_name="{display_name}"')
    metadata = version.metadata
    return aiplatform.Model.upload(
        display_name=display_name,
        # A new version of the same Vertex model, so the Model Registry lists them together.
        parent_model=existing[0].resource_name if existing else None,
        is_default_version=True,
        version_aliases=[vertex_alias(version.version)],
        version_description=(
            f"dexwatch {model_name} {version.version}, features v{metadata['features_version']}"
            f", code {metadata.get('code_version', 'unknown')}"
        ),
        artifact_uri=artifact_uri,
        serving_container_image_uri=settings.serving_image_uri,
        serving_container_predict_route=PREDICT_ROUTE,
        serving_container_health_route=HEALTH_ROUTE,
        serving_container_ports=[PORT],
        labels={"dexwatch_model": model_name, "dexwatch_version": vertex_alias(version.version)},
    )
