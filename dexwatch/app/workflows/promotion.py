"""Changing the production version of a model: locally, and on Vertex AI first when GCP is
configured, so a failed deployment leaves the local alias where it was too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dexwatch.core.settings import Settings
from model.registry import CHAIN_WINDOW, ModelRegistry, find_version

if TYPE_CHECKING:
    from model.vertex import VertexDeployment


@dataclass(frozen=True)
class Promotion:
    registry: ModelRegistry
    # Set when the version was also deployed to the Vertex AI endpoint.
    vertex: VertexDeployment | None


def change_production(
    settings: Settings, model_name: str | None, version: str | None, rollback: bool
) -> Promotion:
    """Promote ``version`` of ``model_name`` (found by version when None), or with
    ``rollback`` return production to the previous version.

    Raises RegistryError (unknown version, nothing to roll back to) or VertexError.
    """
    if version is not None:
        registry = find_version(settings.registry_dir, version, model_name)
        target = registry.get(version)
    else:
        registry = ModelRegistry(settings.registry_dir, model_name or CHAIN_WINDOW)
        target = registry.rollback_target()
    deployed = None
    if settings.model.gcp_configured:
        from model.vertex import promote_on_vertex

        deployed = promote_on_vertex(settings.model, registry, target)
    if rollback:
        registry.rollback()
    else:
        registry.promote(target.version)
    return Promotion(registry, deployed)
