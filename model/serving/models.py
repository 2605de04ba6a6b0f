"""Which models the server answers with, reloaded when a promotion changes them.

Locally (``dexwatch serve``) the server serves every model of the registry that has a
production version: ``<state_dir>/models/<name>/current.joblib``. It looks again at each
request (a directory listing and a stat per model), so a promotion or a rollback is
answered from the next request on, without a restart.

On Vertex AI, the container serves the artifact directory that Vertex copied to
AIP_STORAGE_URI (the promoted version's model.joblib and metadata.json); a new version is a
new deployment there, so that copy is read once.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import orjson

from dexwatch.core.detector import Detector
from model.registry import METADATA_FILE, MODEL_FILE, ModelRegistry, registered_model_names

log = logging.getLogger("dexwatch.serving")

ModelFiles = Callable[[], dict[str, Path]]  # model name → its model file, now


def registry_models(registry_dir: Path) -> ModelFiles:
    """The production version of each model in the local registry."""

    def production_files() -> dict[str, Path]:
        files = {}
        for name in registered_model_names(registry_dir):
            path = ModelRegistry(registry_dir, name).production_path()
            if path.is_file():
                files[name] = path
        return files

    return production_files


def artifact_models(storage_uri: str) -> ModelFiles:
    """The model(s) of a Vertex artifact directory: AIP_STORAGE_URI (gs://…, copied to a
    local directory once) or a local path. Either one version's directory or a directory
    of them."""
    directory = _local_copy(storage_uri) if storage_uri.startswith("gs://") else Path(storage_uri)
    candidates = [directory, *sorted(p for p in directory.iterdir() if p.is_dir())]
    files = {}
    for candidate in candidates:
        if (candidate / MODEL_FILE).is_file():
            files[_model_name(candidate)] = candidate / MODEL_FILE
    if not files:
        log.error("no %s under %s", MODEL_FILE, storage_uri)
    return lambda: files


def _model_name(version_dir: Path) -> str:
    metadata = version_dir / METADATA_FILE
    if metadata.is_file():
        return str(orjson.loads(metadata.read_bytes()).get("model_name") or version_dir.name)
    return version_dir.name


def _local_copy(gcs_uri: str) -> Path:
    from google.cloud import storage

    bucket_name, _, prefix = gcs_uri.removeprefix("gs://").partition("/")
    target = Path(tempfile.mkdtemp(prefix="dexwatch-model-"))
    client = storage.Client()
    for blob in client.list_blobs(bucket_name, prefix=prefix.rstrip("/") + "/" if prefix else ""):
        if blob.name.endswith("/"):
            continue
        relative = blob.name[len(prefix) :].lstrip("/")
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(destination)
    return target


class ServedModels:
    """The loaded Detectors, each reloaded when its file changes (another version behind
    the link, or a new file)."""

    def __init__(self, model_files: ModelFiles) -> None:
        self._model_files = model_files
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[tuple[str, int], Detector]] = {}

    def current(self) -> dict[str, Detector]:
        files = self._model_files()
        with self._lock:
            for name, path in files.items():
                try:
                    resolved = path.resolve(strict=True)
                    source = (str(resolved), resolved.stat().st_mtime_ns)
                except OSError:
                    continue  # a link replaced under us: the next request sees the new one
                loaded = self._loaded.get(name)
                if loaded is None or loaded[0] != source:
                    try:
                        detector = Detector.load(resolved)
                    except Exception:  # noqa: BLE001 - keep serving what we have
                        log.exception("cannot load %s model from %s", name, resolved)
                        continue
                    log.info("serving %s %s from %s", name, detector.version, resolved)
                    self._loaded[name] = (source, detector)
            for name in set(self._loaded) - set(files):
                del self._loaded[name]
            return {name: detector for name, (_, detector) in self._loaded.items()}
