"""Running `dexwatch train` on a schedule: locally a cron loop, in production a Vertex AI
CustomJob running the same command in the serving image.

``submit_custom_job`` is the only google-cloud-aiplatform call here; it cannot run on a
machine without GCP, so tests check the job spec ``custom_job_spec`` builds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dexwatch.core.errors import UsageError
from dexwatch.core.settings import ModelSettings


def next_run(cron: str, after: datetime) -> datetime:
    from croniter import croniter

    return croniter(cron, after).get_next(datetime)


def run_on_schedule(
    cron: str,
    train: Callable[[], None],
    stop: threading.Event,
    on_wait: Callable[[datetime], None] = lambda _: None,
) -> None:
    """Calls ``train`` at every time of ``cron`` (UTC) until ``stop`` is set."""
    while not stop.is_set():
        due = next_run(cron, datetime.now(UTC))
        on_wait(due)
        if stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
            return
        train()


class VertexJobError(UsageError):
    """The Vertex AI job cannot be built; the message names the missing setting."""


def custom_job_spec(
    settings: ModelSettings,
    train_args: list[str],
    display_name: str,
    machine_type: str | None = None,
) -> dict[str, Any]:
    """A Vertex AI CustomJob (REST shape) running ``dexwatch train ARGS`` in the serving
    image; the job's configuration comes from its environment (DEXWATCH_*)."""
    missing = [
        name
        for name, value in (
            ("model.vertex_project", settings.vertex_project),
            ("model.serving_image_uri", settings.serving_image_uri),
        )
        if not value
    ]
    if missing:
        raise VertexJobError(f"--submit vertex needs {', '.join(missing)}")
    return {
        "display_name": display_name,
        "job_spec": {
            "worker_pool_specs": [
                {
                    "machine_spec": {"machine_type": machine_type or settings.vertex_machine_type},
                    "replica_count": 1,
                    "container_spec": {
                        "image_uri": settings.serving_image_uri,
                        "command": ["dexwatch"],
                        "args": ["train", *train_args],
                        "env": _job_environment(settings),
                    },
                }
            ],
            **(
                {"base_output_directory": {"output_uri_prefix": settings.vertex_staging_uri}}
                if settings.vertex_staging_uri
                else {}
            ),
        },
    }


def _job_environment(settings: ModelSettings) -> list[dict[str, str]]:
    env = [
        {"name": "DEXWATCH_WAREHOUSE__BACKEND", "value": "bigquery"},
        {"name": "DEXWATCH_MODEL__VERTEX_PROJECT", "value": settings.vertex_project},
    ]
    if settings.vertex_staging_uri:
        # Vertex AI mounts Cloud Storage at /gcs/<bucket> (Cloud Storage FUSE): the registry
        # the job writes there outlives the job's container.
        state_dir = "/gcs/" + settings.vertex_staging_uri.removeprefix("gs://") + "/state"
        env.append({"name": "DEXWATCH_STATE_DIR", "value": state_dir})
    return env


def submit_custom_job(settings: ModelSettings, spec: dict[str, Any]) -> str:  # pragma: no cover
    """Submits the job on Vertex AI; returns its resource name. Not run here (no GCP)."""
    from google.cloud import aiplatform

    aiplatform.init(project=settings.vertex_project, location=settings.vertex_location)
    job = aiplatform.CustomJob(
        display_name=spec["display_name"],
        worker_pool_specs=spec["job_spec"]["worker_pool_specs"],
        staging_bucket=settings.vertex_staging_uri or None,
    )
    job.submit()
    return job.resource_name
