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
from dexwatch.contracts.features import FEATURE_NAMES, feature_vector
from dexwatch.settings import Settings

_LOADED: dict[tuple[str, int], Detector] = {}  # (path, mtime) → the model read from it


class DetectorModelHandler(ModelHandler[Sequence[float], dict[str, Any], Detector]):
    """Scores feature vectors with a saved Detector, a batch per call."""

    def __init__(self, path: Path, max_batch_size: int = 512) -> None:
        self._path = path
        self._max_batch_size = max_batch_size

    def load_model(self) -> Detector:
        # RunInference shares a model between its DoFn instances only while one holds it;
        # a runner that makes a DoFn per bundle (the local one) would load it per bundle.
        key = (str(self._path), self._path.stat().st_mtime_ns)
        detector = _LOADED.get(key)
        if detector is None:
            detector = self._load_checked()
            _LOADED.clear()
            _LOADED[key] = detector
        return detector

    def _load_checked(self) -> Detector:
        detector = Detector.load(self._path)
        if tuple(detector.feature_names) != FEATURE_NAMES:
            raise ValueError(
                f"{self._path} was trained on features {detector.feature_names}, "
                f"the pipeline computes {FEATURE_NAMES}: retrain it"
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
    """The configured model handler (a Vertex endpoint is contacted when it is built)."""
    if settings.model.serving == "vertex":
        from apache_beam.ml.inference.vertex_ai_inference import VertexAIModelHandlerJSON

        return VertexAIModelHandlerJSON(
            endpoint_id=settings.model.vertex_endpoint_id,
            project=settings.model.vertex_project,
            location=settings.model.vertex_location,
            max_batch_size=settings.model.max_batch_size,
        )
    return DetectorModelHandler(settings.model_path, settings.model.max_batch_size)


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
    """Feature rows → the same rows with score, is_anomaly, top_features, model_version."""

    def __init__(self, handler: ModelHandler) -> None:
        super().__init__()
        self._handler = handler

    def expand(self, rows):
        return (
            rows
            | "KeyByRow" >> beam.Map(lambda row: (row, feature_vector(row)))
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler))
            | "ToScoredRow" >> beam.Map(_scored_row)
        )
