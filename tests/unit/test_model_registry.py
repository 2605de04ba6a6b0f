"""The local model registry: versions as Vertex artifact directories, the production alias
and its link (what the pipeline loads), rollback, adoption of a pre-registry model, the
pipeline's handler following a promotion, and promotion on Vertex AI with recording
stand-ins of the Google clients (no GCP here: the calls are checked, not Google's side)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from beam_pipelines.transforms.scoring import DetectorModelHandler
from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import FEATURE_NAMES, FEATURES_VERSION, feature_vector
from dexwatch.core.settings import ModelSettings
from model.registry import (
    CHAIN_WINDOW,
    ModelRegistry,
    RegistryError,
    find_version,
    registered_model_names,
)
from model.vertex import VertexError, promote_on_vertex, vertex_alias
from tests._detectors import chain_detector, chain_rows


@pytest.fixture(scope="module")
def detectors() -> list[Detector]:
    return [chain_detector(seed) for seed in (1, 2, 3)]


def _registry(tmp_path: Path, detectors: list[Detector]) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "models", CHAIN_WINDOW)
    for detector in detectors:
        registry.register(detector, {"metrics": {"flagged": 0}})
    return registry


def test_a_version_is_a_vertex_artifact_directory(tmp_path, detectors):
    registry = ModelRegistry(tmp_path / "models", CHAIN_WINDOW)
    version = registry.register(
        detectors[0], {"training_range": {"first_window_end": "2026-11-01T00:00:00+00:00"}}
    )
    directory = tmp_path / "models" / "chain-window" / "versions" / version
    assert sorted(p.name for p in directory.iterdir()) == ["metadata.json", "model.joblib"]
    metadata = orjson.loads((directory / "metadata.json").read_bytes())
    assert metadata["feature_names"] == list(FEATURE_NAMES)
    assert metadata["features_version"] == FEATURES_VERSION
    assert metadata["training_range"]["first_window_end"].startswith("2026-11-01")
    assert metadata["params"]["n_estimators"] == 30
    assert metadata["code_version"] and metadata["model_name"] == "chain-window"
    assert metadata["threshold"] == detectors[0].threshold
    loaded = Detector.load(directory / "model.joblib")
    rows = [feature_vector(r) for r in chain_rows(20, seed=9)]
    assert np.array_equal(loaded.score(rows).score, detectors[0].score(rows).score)
    # Registered, not promoted: nothing for the pipeline yet.
    assert registry.aliases().production is None
    assert not registry.production_path().exists()
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(detectors[0])


def test_promote_points_the_pipelines_model_path_at_the_version(tmp_path, detectors):
    registry = _registry(tmp_path, detectors)
    v1, v2, _ = (d.version for d in detectors)
    registry.promote(v1)
    registry.promote(v2)
    link = registry.production_path()
    assert link == tmp_path / "models" / "chain-window" / "current.joblib"
    assert link.is_symlink() and not os.readlink(link).startswith("/")  # movable state dir
    assert Detector.load(link).version == v2
    aliases = orjson.loads((registry.directory / "aliases.json").read_bytes())
    assert (aliases["production"], aliases["previous"]) == (v2, v1)
    assert [h["version"] for h in aliases["history"]] == [v1, v2]
    assert [v.version for v in registry.versions()] == [d.version for d in detectors]


def test_rollback_walks_back_through_promotions_then_refuses(tmp_path, detectors):
    registry = _registry(tmp_path, detectors)
    v1, v2, v3 = (d.version for d in detectors)
    for version in (v1, v2, v3):
        registry.promote(version)
    assert registry.rollback().version == v2
    assert Detector.load(registry.production_path()).version == v2
    assert (registry.aliases().production, registry.aliases().previous) == (v2, v1)
    assert registry.rollback().version == v1
    assert Detector.load(registry.production_path()).version == v1
    with pytest.raises(RegistryError, match="no previous production version.*production is"):
        registry.rollback()
    assert registry.aliases().production == v1


def test_promoting_an_unknown_or_malicious_version_is_refused(tmp_path, detectors):
    registry = _registry(tmp_path, detectors[:1])
    with pytest.raises(RegistryError, match="has no version nope"):
        registry.promote("nope")
    with pytest.raises(RegistryError, match="not a valid version"):
        registry.promote("../../etc")
    with pytest.raises(RegistryError, match="no registered version nope"):
        find_version(tmp_path / "models", "nope")
    assert find_version(tmp_path / "models", detectors[0].version).model_name == CHAIN_WINDOW


def test_a_model_saved_before_the_registry_is_adopted_as_production(tmp_path, detectors):
    legacy = tmp_path / "models" / "chain-window" / "current.joblib"
    detectors[0].save(legacy)  # what `dexwatch model bootstrap` wrote until now
    assert registered_model_names(tmp_path / "models") == ["chain-window"]
    registry = ModelRegistry(tmp_path / "models", CHAIN_WINDOW)
    assert [v.version for v in registry.versions()] == [detectors[0].version]
    assert registry.aliases().production == detectors[0].version
    assert legacy.is_symlink() and Detector.load(legacy).version == detectors[0].version
    registry.register(detectors[1])
    registry.promote(detectors[1].version)
    assert registry.rollback().version == detectors[0].version


def test_the_pipelines_handler_scores_with_a_promotion_from_its_next_batch(tmp_path, detectors):
    registry = _registry(tmp_path, detectors[:2])
    registry.promote(detectors[0].version)
    handler = DetectorModelHandler(registry.production_path())
    loaded = handler.load_model()
    batch = [feature_vector(r) for r in chain_rows(5, seed=4)]
    assert {r.model_id for r in handler.run_inference(batch, loaded)} == {detectors[0].version}
    registry.promote(detectors[1].version)
    results = list(handler.run_inference(batch, loaded))  # Beam still holds the old model
    assert {r.model_id for r in results} == {detectors[1].version}
    expected = detectors[1].score(batch).score
    assert [r.inference["score"] for r in results] == pytest.approx(list(expected))


def test_bootstrap_registers_and_promotes_its_model(tmp_path, monkeypatch):
    from dexwatch.app.workflows import bootstrap
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "state")
    rows = [{**r, "window_end": f"2026-11-01T00:{i // 60:02d}:{i % 60:02d}+00:00"}
            for i, r in enumerate(chain_rows(300))]  # fmt: skip
    monkeypatch.setattr(bootstrap, "record_history", lambda s, h, w, p, **_: (w / "e.jsonl", s))
    monkeypatch.setattr(bootstrap, "compute_features", lambda s, e, w: rows)
    detector = bootstrap.bootstrap_model(settings, 0.5)
    registry = ModelRegistry(settings.registry_dir, CHAIN_WINDOW)
    assert registry.aliases().production == detector.version
    assert settings.model_path == registry.production_path()
    assert Detector.load(settings.model_path).version == detector.version
    training_range = registry.get(detector.version).metadata["training_range"]
    assert training_range["first_window_end"] == "2026-11-01T00:00:00+00:00"
    assert training_range["last_window_end"] == "2026-11-01T00:04:59+00:00"


# --- Vertex AI, through recording stand-ins --------------------------------------------


class _Recorder:
    """Records every call made on it or on what its calls return."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.deployed = [SimpleNamespace(id="old-deployed-1")]
        recorder = self

        class Model:
            def __init__(self, model_name: str) -> None:
                recorder.calls.append(("Model", {"model_name": model_name}))
                self.resource_name = model_name

            @staticmethod
            def list(**kwargs):
                recorder.calls.append(("Model.list", kwargs))
                return [SimpleNamespace(resource_name="projects/p/locations/l/models/42")]

            @staticmethod
            def upload(**kwargs):
                recorder.calls.append(("Model.upload", kwargs))
                uploaded = Model.__new__(Model)
                uploaded.resource_name = "projects/p/locations/l/models/42@2"
                return uploaded

            def deploy(self, **kwargs):
                recorder.calls.append(("deploy", {"model": self.resource_name, **kwargs}))

        class Endpoint:
            def __init__(self, endpoint_name: str) -> None:
                recorder.calls.append(("Endpoint", {"endpoint_name": endpoint_name}))

            def list_models(self):
                return list(recorder.deployed)

            def undeploy(self, deployed_model_id: str):
                recorder.calls.append(("undeploy", {"deployed_model_id": deployed_model_id}))

        self.Model, self.Endpoint = Model, Endpoint

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))

    def bucket(self, name: str):  # the storage client's side
        recorder = self

        class Blob:
            def __init__(self, blob_name: str) -> None:
                self.name = blob_name

            def upload_from_filename(self, filename: str) -> None:
                recorder.calls.append(("upload", {"gs": f"gs://{name}/{self.name}",
                                                  "file": filename}))  # fmt: skip

        return SimpleNamespace(blob=Blob)

    def named(self, name: str) -> list[dict]:
        return [kwargs for call, kwargs in self.calls if call == name]


GCP = ModelSettings(
    vertex_project="my-project",
    vertex_location="europe-west4",
    vertex_endpoint_id="1234",
    vertex_staging_uri="gs://my-bucket/dexwatch-models/",
    serving_image_uri="europe-docker.pkg.dev/my-project/dexwatch/serve:1",
    vertex_max_replicas=3,
    vertex_service_account="dexwatch-serving@my-project.iam.gserviceaccount.com",
)


def test_vertex_promotion_uploads_the_artifact_and_deploys_it(tmp_path, detectors):
    registry = _registry(tmp_path, detectors[:1])
    version = registry.get(detectors[0].version)
    fake = _Recorder()
    deployment = promote_on_vertex(GCP, registry, version, aiplatform=fake, storage_client=fake)
    artifact_uri = f"gs://my-bucket/dexwatch-models/chain-window/{version.version}"
    assert deployment.artifact_uri == artifact_uri and deployment.uploaded
    assert fake.named("init") == [{"project": "my-project", "location": "europe-west4"}]
    assert sorted(u["gs"] for u in fake.named("upload")) == [
        f"{artifact_uri}/metadata.json", f"{artifact_uri}/model.joblib"
    ]  # fmt: skip
    (upload,) = fake.named("Model.upload")
    assert upload["artifact_uri"] == artifact_uri
    assert upload["serving_container_image_uri"] == GCP.serving_image_uri
    assert upload["serving_container_predict_route"] == "/predict"
    assert upload["serving_container_health_route"] == "/health"
    assert upload["serving_container_ports"] == [8080]
    assert upload["parent_model"] == "projects/p/locations/l/models/42"
    assert upload["version_aliases"] == [vertex_alias(version.version)]
    (deploy,) = fake.named("deploy")
    assert deploy["traffic_percentage"] == 100
    assert (deploy["min_replica_count"], deploy["max_replica_count"]) == (1, 3)
    assert deploy["service_account"] == GCP.vertex_service_account
    assert deploy["model"] == "projects/p/locations/l/models/42@2"
    assert fake.named("Endpoint") == [{"endpoint_name": "1234"}]
    assert fake.named("undeploy") == [{"deployed_model_id": "old-deployed-1"}]
    # Upload, then deploy, then take the old one off: never an endpoint without a model.
    order = [call for call, _ in fake.calls]
    assert order.index("Model.upload") < order.index("deploy") < order.index("undeploy")

    again = _Recorder()  # a rollback to this version later: no second upload
    reused = promote_on_vertex(GCP, registry, version, aiplatform=again, storage_client=again)
    assert not reused.uploaded
    assert again.named("upload") == [] and again.named("Model.upload") == []
    assert again.named("Model") == [{"model_name": "projects/p/locations/l/models/42@2"}]
    assert len(again.named("deploy")) == 1


def test_vertex_promotion_names_missing_settings(tmp_path, detectors):
    registry = _registry(tmp_path, detectors[:1])
    partial = ModelSettings(vertex_project="my-project")
    with pytest.raises(VertexError, match="vertex_staging_uri, model.serving_image_uri, "
                                          "model.vertex_endpoint_id"):  # fmt: skip
        promote_on_vertex(partial, registry, registry.get(detectors[0].version), _Recorder())
    assert vertex_alias("20261128T044655-a94682") == "v-20261128t044655-a94682"
