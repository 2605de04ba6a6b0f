"""Feature rows → scored rows, through RunInference with a keyed model handler.

The handler is chosen by configuration: the local Detector (scikit-learn Isolation Forest,
``model.serving: local``), a Vertex AI endpoint serving our prediction container
(``model.serving: vertex``), or that same container reached over plain HTTP
(``model.serving: http``, e.g. ``dexwatch serve``: the contract of model/serving/contract.py).
Either way RunInference hands the model a whole batch of rows: one call per row would cost a
full forest traversal setup each time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import httpx
import orjson
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)

from beam_pipelines.transforms.parse import DEAD_LETTERS, dead_letter_of, element_dead_letter
from dexwatch.core.detector import Detector
from dexwatch.core.errors import DexwatchError
from dexwatch.core.features.chain import FEATURE_NAMES, FEATURES_VERSION
from dexwatch.core.features.hourly import HOURLY_FEATURE_NAMES, HOURLY_FEATURES_VERSION
from dexwatch.core.retry import RetryPolicy
from dexwatch.core.schemas.alert import TopFeature
from dexwatch.core.settings import ModelSettings, Settings

log = logging.getLogger("dexwatch.scoring")

# path → ((the file it resolves to, its mtime), the model read from it): one model per path
# (chain and hourly). Resolved, because the default paths are the registry's production
# links, which a promotion re-points.
_LOADED: dict[str, tuple[tuple[str, int], Detector]] = {}


class DetectorModelHandler(ModelHandler[Sequence[float], dict[str, Any], Detector]):
    """Scores feature vectors with a saved Detector, a batch per call."""

    def __init__(
        self,
        path: Path,
        max_batch_size: int = 512,
        feature_names: Sequence[str] = FEATURE_NAMES,
        features_version: int = FEATURES_VERSION,
    ) -> None:
        self._path = path
        self._max_batch_size = max_batch_size
        self._feature_names = tuple(feature_names)
        self._features_version = features_version

    def load_model(self) -> Detector:
        # RunInference shares a model between its DoFn instances only while one holds it;
        # a runner that makes a DoFn per bundle (the local one) would load it per bundle.
        resolved = self._path.resolve()
        key = (str(resolved), resolved.stat().st_mtime_ns)
        loaded = _LOADED.get(str(self._path))
        if loaded is None or loaded[0] != key:
            loaded = _LOADED[str(self._path)] = (key, self._load_checked(resolved))
        return loaded[1]

    def _load_checked(self, resolved: Path) -> Detector:
        detector = Detector.load(resolved)
        if tuple(detector.feature_names) != self._feature_names:
            raise ValueError(
                f"{self._path} was trained on features {detector.feature_names}, "
                f"the pipeline computes {self._feature_names}: retrain it"
            )
        if detector.features_version != self._features_version:
            # Same names, other definitions: scores would be silently skewed.
            raise ValueError(
                f"{self._path} was trained on features version {detector.features_version}, "
                f"the pipeline computes version {self._features_version}: retrain it "
                "(`dexwatch model bootstrap`, or `dexwatch train` and promote)"
            )
        return detector

    def run_inference(
        self,
        batch: Sequence[Sequence[float]],
        model: Detector,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        # A promotion re-points the production link. Looking at it per batch (a stat, next
        # to milliseconds of scoring) lets a running pipeline score with the promoted version
        # from its next batch on, however long the runner keeps the model it loaded.
        model = self.load_model()
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


class PredictionServerError(DexwatchError, RuntimeError):
    """The prediction server refused a batch or stayed unreachable through the retries."""


class _Transient(Exception):
    """A 5xx answer, or a refused or reset connection or a timeout: worth another try."""


class HttpModelHandler(ModelHandler[Sequence[float], dict[str, Any], httpx.Client]):
    """Scores feature vectors through a prediction server (``dexwatch serve``, or our
    container anywhere) over HTTP: one POST of ``{"instances": batch}`` per batch, the
    contract Vertex AI uses. 5xx answers, connection errors and timeouts are retried with
    capped exponential backoff and full jitter (``model.http_retry``); a 4xx is a bug on our
    side and is not."""

    def __init__(self, settings: ModelSettings) -> None:
        self._url = settings.http_url
        self._retry: RetryPolicy = settings.http_retry
        self._max_batch_size = settings.max_batch_size

    def load_model(self) -> httpx.Client:
        return httpx.Client(timeout=self._retry.timeout_s)

    def run_inference(
        self,
        batch: Sequence[Sequence[float]],
        model: httpx.Client,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        body = orjson.dumps({"instances": [list(map(float, vector)) for vector in batch]})
        predictions = self._post(model, body)
        if len(predictions) != len(batch):
            raise PredictionServerError(
                f"{self._url} answered {len(predictions)} predictions for {len(batch)} instances"
            )
        for vector, prediction in zip(batch, predictions, strict=True):
            yield PredictionResult(vector, prediction, prediction.get("model_version"))

    def _post(self, client: httpx.Client, body: bytes) -> list[dict[str, Any]]:
        def retrying_in(_: int, failure: BaseException, delay: float) -> None:
            log.warning("%s: %s; retrying in %.2f s", self._url, failure, delay)

        retrying = self._retry.retrying(_Transient, on_retry=retrying_in)
        try:
            return retrying(self._post_once, client, body)
        except _Transient as err:
            failure = err
        raise PredictionServerError(
            f"{self._url} failed {self._retry.attempts} times, last: {failure}"
        )

    def _post_once(self, client: httpx.Client, body: bytes) -> list[dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        try:
            response = client.post(self._url, content=body, headers=headers)
        except httpx.TransportError as err:  # connection refused or reset, timeouts
            raise _Transient(f"{type(err).__name__}: {err}") from None
        if response.status_code == 200:
            return response.json()["predictions"]
        if response.status_code < 500:
            raise PredictionServerError(
                f"{self._url} refused the batch ({response.status_code}): {response.text[:300]}"
            )
        raise _Transient(f"HTTP {response.status_code}")

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._max_batch_size}

    def get_metrics_namespace(self) -> str:
        return "dexwatch_prediction_server"


def model_handler(settings: Settings) -> ModelHandler:
    """The configured handler of the chain-window model (a Vertex endpoint is contacted
    when it is built)."""
    return _configured_handler(
        settings,
        settings.model_path,
        settings.model.vertex_endpoint_id,
        FEATURE_NAMES,
        FEATURES_VERSION,
    )


def hourly_model_handler(settings: Settings) -> ModelHandler:
    """The configured handler of the hourly model: the same machinery, its own model."""
    return _configured_handler(
        settings,
        settings.hourly_model_path,
        settings.model.hourly_vertex_endpoint_id,
        HOURLY_FEATURE_NAMES,
        HOURLY_FEATURES_VERSION,
    )


def _configured_handler(
    settings: Settings,
    path: Path,
    endpoint_id: str,
    feature_names: Sequence[str],
    features_version: int,
) -> ModelHandler:
    if settings.model.serving == "vertex":
        vertex = {
            "endpoint_id": endpoint_id,
            "project": settings.model.vertex_project,
            "location": settings.model.vertex_location,
            "max_batch_size": settings.model.max_batch_size,
        }
        if settings.model.vertex_api_endpoint:  # a PSC host or a local stand-in
            from beam_pipelines.transforms.vertex import VertexEndpointHandler

            return VertexEndpointHandler(api_endpoint=settings.model.vertex_api_endpoint, **vertex)
        from apache_beam.ml.inference.vertex_ai_inference import VertexAIModelHandlerJSON

        return VertexAIModelHandlerJSON(**vertex)
    if settings.model.serving == "http":
        # One server for both models: it picks the model by the instances' length.
        return HttpModelHandler(settings.model)
    return DetectorModelHandler(
        path, settings.model.max_batch_size, feature_names, features_version
    )


def _scored_row(element: tuple[dict, PredictionResult]):
    """A scored row, or a dead letter when the model's answer cannot be read."""
    row, result = element
    inference = result.inference
    try:
        # Our prediction server (on Vertex or over HTTP) answers with JSON: top features as
        # plain dicts, and the model version in each prediction (Vertex's own model id is
        # its deployed-model id, not ours).
        top = [
            t if isinstance(t, TopFeature) else TopFeature(**t) for t in inference["top_features"]
        ]
        score = float(inference["score"])
        if not math.isfinite(score):
            raise ValueError(f"score {score}")
        version = inference.get("model_version") or result.model_id
        yield {
            **row,
            "score": score,
            "is_anomaly": bool(inference["is_anomaly"]),
            "top_features": orjson.dumps([t.model_dump() for t in top]).decode(),
            "model_version": str(version or "unknown"),
            "scored_at": datetime.now(UTC),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        yield dead_letter_of("score", f"unreadable prediction for {row.get('window_id')}: "
                             f"{type(err).__name__}: {err}", row)  # fmt: skip


def _finite(row: dict, names: tuple[str, ...]):
    """The row with its model input, or a dead letter if a feature is missing or not a
    finite number: NaN would score NaN, and NaN is never below the threshold."""
    try:
        vector = [float(row[name]) for name in names]
    except (KeyError, TypeError, ValueError) as err:
        yield dead_letter_of("score", f"window {row.get('window_id')}: feature {err}", row)
        return
    bad = [name for name, x in zip(names, vector, strict=True) if not math.isfinite(x)]
    if bad:
        yield dead_letter_of(
            "score", f"window {row.get('window_id')}: not finite: {', '.join(bad)}", row
        )
        return
    yield row, vector


def _failed_batch(failure):
    """RunInference's dead letters, (batch of (row, vector), exception info) → a dead letter
    per row: a batch the model refused (or a server that stayed down through the handler's
    retries) is kept for a later re-score rather than retried forever."""
    batch, (exc_type, exc_value, _) = failure
    reason = f"scoring failed: {getattr(exc_type, '__name__', exc_type)}: {exc_value}"
    for row, _vector in batch:
        yield element_dead_letter("score", reason, row)


class ScoreWindows(beam.PTransform):
    """Feature rows → outputs ``main`` (the same rows with score, is_anomaly, top_features,
    model_version) and ``dead_letters`` (rows that could not be scored, with the reason).

    Args:
        handler: the model handler (``model_handler`` / ``hourly_model_handler``).
        feature_names: the model's input, in order (the chain windows' by default).
    """

    def __init__(self, handler: ModelHandler, feature_names: Sequence[str] = FEATURE_NAMES):
        super().__init__()
        self._handler = handler
        self._feature_names = tuple(feature_names)

    def expand(self, rows):
        checked = rows | "WithFiniteInput" >> beam.FlatMap(
            _finite, self._feature_names
        ).with_outputs(DEAD_LETTERS, main="main")
        predicted, failed = (
            checked.main
            | "RunInference"
            >> RunInference(KeyedModelHandler(self._handler)).with_exception_handling()
        )
        scored = predicted | "ToScoredRow" >> beam.FlatMap(_scored_row).with_outputs(
            DEAD_LETTERS, main="main"
        )
        failures = failed.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch)
        letters = (
            checked[DEAD_LETTERS],
            scored[DEAD_LETTERS],
            failures,
        ) | "ScoringDead" >> beam.Flatten()
        return {"main": scored.main, DEAD_LETTERS: letters}
