"""Feature rows → scored rows, through RunInference with a keyed model handler.

The handler is chosen by configuration: the local Detector (scikit-learn Isolation Forest,
``model.serving: local``) or a Vertex AI endpoint serving the same contract
(``model.serving: vertex``). Either way RunInference hands the model a whole batch of rows:
one call per row would cost a full forest traversal setup each time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)

from dexwatch.contracts.alert import TopFeature
from dexwatch.contracts.detector import Detector
from dexwatch.contracts.features import FEATURE_NAMES
from dexwatch.contracts.hourly_features import HOURLY_FEATURE_NAMES
from dexwatch.settings import Settings

# path → (its mtime, the model read from it): one model per path (chain and hourly)
_LOADED: dict[str, tuple[int, Detector]] = {}


class DetectorModelHandler(ModelHandler[Sequence[float], dict[str, Any], Detector]):
    """Scores feature vectors with a saved Detector, a batch per call."""

    def __init__(
        self,
        path: Path,
        max_batch_size: int = 512,
        feature_names: Sequence[str] = FEATURE_NAMES,
    ) -> None:
        self._path = path
        self._max_batch_size = max_batch_size
        self._feature_names = tuple(feature_names)

    def load_model(self) -> Detector:
        # RunInference shares a model between its DoFn instances only while one holds it;
        # a runner that makes a DoFn per bundle (the local one) would load it per bundle.
        mtime = self._path.stat().st_mtime_ns
        loaded = _LOADED.get(str(self._path))
        if loaded is None or loaded[0] != mtime:
            loaded = _LOADED[str(self._path)] = (mtime, self._load_checked())
        return loaded[1]

    def _load_checked(self) -> Detector:
        detector = Detector.load(self._path)
        if tuple(detector.feature_names) != self._feature_names:
            raise ValueError(
                f"{self._path} was trained on features {detector.feature_names}, "
                f"the pipeline computes {self._feature_names}: retrain it"
            )
        return detector

    def run_inference(
        self,
        batch: Sequence[Sequence[float]],
        model: Detector,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        scores = model.score(batch)
        for i, vector in enumerate(batch):
            yield PredictionResult(
                vector,
                {
                    "score": float(scores.score[i]),
                    "is_anomaly": bool(scores.is_anomaly[i]),
                    "top_features": scores.top_features[i],
                },
                model.version,
            )

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._max_batch_size}

    def get_metrics_namespace(self) -> str:
        return "dexwatch_detector"


def model_handler(settings: Settings) -> ModelHandler:
    """The configured handler of the chain-window model (a Vertex endpoint is contacted
    when it is built)."""
    return _configured_handler(
        settings, settings.model_path, settings.model.vertex_endpoint_id, FEATURE_NAMES
    )


def hourly_model_handler(settings: Settings) -> ModelHandler:
    """The configured handler of the hourly model: the same machinery, its own model."""
    return _configured_handler(
        settings,
        settings.hourly_model_path,
        settings.model.hourly_vertex_endpoint_id,
        HOURLY_FEATURE_NAMES,
    )


def _configured_handler(
    settings: Settings, path: Path, endpoint_id: str, feature_names: Sequence[str]
) -> ModelHandler:
    if settings.model.serving == "vertex":
        from apache_beam.ml.inference.vertex_ai_inference import VertexAIModelHandlerJSON

        return VertexAIModelHandlerJSON(
            endpoint_id=endpoint_id,
            project=settings.model.vertex_project,
            location=settings.model.vertex_location,
            max_batch_size=settings.model.max_batch_size,
        )
    return DetectorModelHandler(path, settings.model.max_batch_size, feature_names)


def _scored_row(element: tuple[dict, PredictionResult]) -> dict:
    row, result = element
    inference = result.inference
    # A Vertex endpoint answers with our server's JSON: top features as plain dicts.
    top = [t if isinstance(t, TopFeature) else TopFeature(**t) for t in inference["top_features"]]
    return {
        **row,
        "score": float(inference["score"]),
        "is_anomaly": bool(inference["is_anomaly"]),
        "top_features": orjson.dumps([t.model_dump() for t in top]).decode(),
        "model_version": str(result.model_id or "unknown"),
        "scored_at": datetime.now(UTC),
    }


class ScoreWindows(beam.PTransform):
    """Feature rows → the same rows with score, is_anomaly, top_features, model_version.
    ``feature_names``: the model's input, in order (the chain windows' by default)."""

    def __init__(self, handler: ModelHandler, feature_names: Sequence[str] = FEATURE_NAMES):
        super().__init__()
        self._handler = handler
        self._feature_names = tuple(feature_names)

    def expand(self, rows):
        names = self._feature_names
        return (
            rows
            | "KeyByRow" >> beam.Map(lambda row: (row, [float(row[name]) for name in names]))
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler))
            | "ToScoredRow" >> beam.Map(_scored_row)
        )
