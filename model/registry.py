"""The local model registry: versions, the production alias, rollback.

Layout under ``<state_dir>/models/<model_name>/`` (model names: ``chain-window``, and
``pool-hour`` for the hourly model)::

    versions/<version>/model.joblib    the Detector (joblib)      } one version's artifact
    versions/<version>/metadata.json   what it is and how it was  } directory: what Vertex
                                       trained (below)            } AI takes as artifact_uri
    aliases.json                       production, previous, and the promotion history
    current.joblib                     symbolic link to production's model.joblib

Each version directory is self-contained, as Vertex AI's Model Registry expects of a custom
container's artifact: ``dexwatch model promote`` copies it unchanged to Cloud Storage when GCP
is configured, and the prediction server reads the same two files from AIP_STORAGE_URI.

``current.joblib`` is what the pipeline loads (``settings.model_path`` by default), so a
promotion or a rollback is one atomic rename of a link. The pipeline's local model handler
looks at the link's target before each batch (a stat), so a running ``dexwatch pipeline
run`` scores with the promoted version from its next batch on. A Dataflow job cannot see
this directory: it needs a restart with the new model, or scores through the Vertex endpoint
(``model.serving: vertex``), which promotion redeploys.

Promotions form a stack (``history``): ``rollback`` drops the newest and returns production
to the one before it, as often as there is one. A model saved before the registry existed
(a plain ``current.joblib`` file) is registered and promoted the first time the registry
changes or lists that model.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from dexwatch.core.detector import Detector
from dexwatch.core.errors import DexwatchError
from dexwatch.core.files import write_atomically

CHAIN_WINDOW = "chain-window"
POOL_HOUR = "pool-hour"
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
ALIASES_FILE = "aliases.json"
PRODUCTION_LINK = "current.joblib"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class RegistryError(DexwatchError):
    """A registry operation that cannot be done; the message says why."""


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    model_name: str
    version: str
    directory: Path  # the artifact directory (Vertex's artifact_uri)
    metadata: dict[str, Any]

    @property
    def model_file(self) -> Path:
        return self.directory / MODEL_FILE


@dataclasses.dataclass(frozen=True)
class Aliases:
    history: tuple[dict[str, str], ...] = ()  # promotions, oldest first: {version, promoted_at}

    @property
    def production(self) -> str | None:
        return self.history[-1]["version"] if self.history else None

    @property
    def previous(self) -> str | None:
        return self.history[-2]["version"] if len(self.history) > 1 else None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"production": self.production, "previous": self.previous, "history": self.history},
            option=orjson.OPT_INDENT_2,
        )


def _checked_name(kind: str, value: str) -> str:
    # Names become directory names: nothing that could leave the registry.
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise RegistryError(f"not a valid {kind}: {value!r} (letters, digits, . _ -)")
    return value


@functools.cache
def code_version() -> str:
    """The code that trains and registers: the git commit (``-dirty`` with local changes),
    or the package version outside a checkout."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return described.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"dexwatch-{version('dexwatch')}"
        except PackageNotFoundError:
            return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")  # orders the versions


def model_metadata(
    model_name: str, detector: Detector, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """metadata.json of a version: the detector's own description, plus what the trainer
    knows (``training_range``, ``metrics``, anything else JSON can hold)."""
    import sklearn

    return {
        "model_name": model_name,
        "version": detector.version,
        "feature_names": list(detector.feature_names),
        "features_version": detector.features_version,
        "threshold": detector.threshold,
        "trained_at": detector.trained_at.isoformat(),
        "training_rows": detector.training_rows,
        "training_range": None,
        "params": detector.params,
        "metrics": {},
        "code_version": code_version(),
        "framework": {"python": platform.python_version(), "scikit-learn": sklearn.__version__},
        "artifact": MODEL_FILE,
        **(extra or {}),
    }


class ModelRegistry:
    """One model's versions and aliases under ``root/<model_name>``."""

    def __init__(self, root: Path, model_name: str) -> None:
        self.model_name = _checked_name("model name", model_name)
        self.directory = root / model_name

    # --- reading ---------------------------------------------------------------------

    def production_path(self) -> Path:
        """What the pipeline loads: the link to production's model.joblib."""
        return self.directory / PRODUCTION_LINK

    def aliases(self) -> Aliases:
        path = self.directory / ALIASES_FILE
        if not path.is_file():
            return Aliases()
        return Aliases(history=tuple(orjson.loads(path.read_bytes())["history"]))

    def get(self, version: str) -> ModelVersion:
        directory = self.directory / "versions" / _checked_name("version", version)
        metadata_file = directory / METADATA_FILE
        if not metadata_file.is_file():
            raise RegistryError(f"{self.model_name} has no version {version}")
        return ModelVersion(
            self.model_name, version, directory, orjson.loads(metadata_file.read_bytes())
        )

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first."""
        self.adopt_unregistered_model()
        root = self.directory / "versions"
        found = [self.get(d.name) for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
        return sorted(found, key=lambda v: (v.metadata.get("registered_at", ""), v.version))

    # --- changing --------------------------------------------------------------------

    def register(self, detector: Detector, metadata: Mapping[str, Any] | None = None) -> str:
        """Store ``detector`` as a new version (not promoted); returns the version."""
        version = _checked_name("version", detector.version)
        directory = self.directory / "versions" / version
        if directory.exists():
            raise RegistryError(f"{self.model_name} version {version} is already registered")
        described = model_metadata(self.model_name, detector, metadata)
        described["registered_at"] = _now()
        # Written into a scratch directory renamed into place: a half-written version is
        # never listed.
        scratch = directory.with_name(f".{version}.partial")
        scratch.mkdir(parents=True, exist_ok=True)
        detector.save(scratch / MODEL_FILE)
        write_atomically(
            scratch / METADATA_FILE,
            orjson.dumps(
                described,
                option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
                default=str,
            ),
        )
        os.replace(scratch, directory)
        return version

    def promote(self, version: str) -> ModelVersion:
        """Make ``version`` production; the one it replaces becomes ``previous``."""
        self.adopt_unregistered_model()
        promoted = self.get(version)
        aliases = self.aliases()
        if aliases.production == version:
            return promoted
        entry = {"version": version, "promoted_at": _now()}
        self._write(Aliases(history=(*aliases.history, entry)), promoted)
        return promoted

    def rollback_target(self) -> ModelVersion:
        """The version a rollback would return production to."""
        self.adopt_unregistered_model()
        aliases = self.aliases()
        if aliases.previous is None:
            raise RegistryError(
                f"{self.model_name} has no previous production version to roll back to"
                + (f" (production is {aliases.production})" if aliases.production else "")
            )
        return self.get(aliases.previous)

    def rollback(self) -> ModelVersion:
        """Return production to the version promoted before it."""
        restored = self.rollback_target()
        self._write(Aliases(history=self.aliases().history[:-1]), restored)
        return restored

    def adopt_unregistered_model(self) -> None:
        """Register and promote a model saved at current.joblib before the registry
        existed, so the alias and the link describe what the pipeline has been loading."""
        link = self.production_path()
        if link.is_symlink() or not link.is_file() or (self.directory / ALIASES_FILE).exists():
            return
        detector = Detector.load(link)
        version = detector.version
        if not (self.directory / "versions" / version).exists():
            self.register(detector, {"adopted_from": PRODUCTION_LINK})
        entry = {"version": version, "promoted_at": _now()}
        self._write(Aliases(history=(entry,)), self.get(version))

    def _write(self, aliases: Aliases, production: ModelVersion) -> None:
        # The link first: if we stop between the two, re-running the command repairs the
        # alias file, and the pipeline already loads the version the user asked for.
        self._point_link_at(production)
        write_atomically(self.directory / ALIASES_FILE, aliases.to_json(), durable=True)

    def _point_link_at(self, production: ModelVersion) -> None:
        link = self.production_path()
        target = production.model_file.relative_to(self.directory)  # relative: movable
        temporary = link.with_name(link.name + ".tmp")
        temporary.unlink(missing_ok=True)
        os.symlink(target, temporary)
        os.replace(temporary, link)  # atomic: a reader sees the old or the new model


def registered_model_names(root: Path) -> list[str]:
    """Models with a directory in the registry (or a legacy current.joblib)."""
    if not root.is_dir():
        return []
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and ((d / "versions").is_dir() or (d / PRODUCTION_LINK).exists())
    )


def find_version(root: Path, version: str, model_name: str | None = None) -> ModelRegistry:
    """The registry of the model that has ``version`` (versions are unique across models:
    they carry the training time and a random suffix)."""
    names = [model_name] if model_name else registered_model_names(root)
    holders = [
        ModelRegistry(root, name)
        for name in names
        if (root / name / "versions" / _checked_name("version", version)).is_dir()
    ]
    if not holders:
        raise RegistryError(
            f"no registered version {version}"
            + (f" of {model_name}" if model_name else "")
            + ": see `dexwatch model list`"
        )
    if len(holders) > 1:
        raise RegistryError(
            f"version {version} exists for {', '.join(h.model_name for h in holders)}: "
            "name the model with --model"
        )
    return holders[0]
