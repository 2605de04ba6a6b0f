"""The prediction contract, as Vertex AI's custom containers define it.

Request: ``{"instances": [[x1, ..., xn], ...], "parameters": {"model": NAME}}`` with
``parameters`` optional. Every instance is a list of finite numbers; one request goes to
one model: the one named in ``parameters.model``, or else the served model that takes
instances of that many numbers (9: chain-window, 13: the hourly pool-hour model, whose
order is the earlier design's).

Response: ``{"predictions": [{"label", "score", "is_anomaly", "top_features", "model",
"model_version"}, ...]}``, one per instance in order: ``label`` 1 (normal) or -1 (anomaly)
as scikit-learn and the earlier design answer, ``score`` below 0 for an anomaly (the further
below, the surer), ``top_features`` the features that make the instance unusual (name, value,
deviation in robust standard deviations). ``model_version`` is there because Vertex reports
only its own deployed-model id.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from dexwatch.core.detector import Detector
from dexwatch.core.errors import DexwatchError


class BadRequest(DexwatchError, ValueError):
    """A request the contract refuses: answered with 400 and this message."""


@dataclasses.dataclass(frozen=True)
class PredictRequest:
    instances: np.ndarray  # shape (n, features), float64, all finite
    model: str | None  # parameters.model, if the caller named one


def _reject_constant(name: str) -> float:
    raise BadRequest(f"{name} is not a number the model accepts: send finite numbers only")


def parse_request(body: bytes, max_instances: int) -> PredictRequest:
    try:
        # The standard library's parser, for its hook on NaN and Infinity (orjson rejects
        # them too, but as plain syntax errors).
        request = json.loads(body, parse_constant=_reject_constant)
    except BadRequest:
        raise
    except ValueError as err:
        raise BadRequest(f"the request body is not JSON: {err}") from None
    if not isinstance(request, dict) or "instances" not in request:
        raise BadRequest('the request must be a JSON object with "instances": [[numbers], ...]')
    instances = request["instances"]
    if not isinstance(instances, list):
        raise BadRequest('"instances" must be a list of instances, each a list of numbers')
    if not instances:
        raise BadRequest('"instances" is empty: send at least one instance')
    if len(instances) > max_instances:
        raise BadRequest(
            f"{len(instances)} instances in one request; at most {max_instances} are accepted"
        )
    for i, instance in enumerate(instances):
        _check_instance(i, instance)
    lengths = {len(instance) for instance in instances}
    if len(lengths) > 1:
        first = len(instances[0])
        odd = next(i for i, instance in enumerate(instances) if len(instance) != first)
        raise BadRequest(
            f"instance {odd} has {len(instances[odd])} numbers and instance 0 has {first}: "
            "all instances of a request go to one model and must have the same length"
        )
    return PredictRequest(
        instances=np.asarray(instances, dtype=np.float64), model=_model_parameter(request)
    )


def _check_instance(index: int, instance: Any) -> None:
    if not isinstance(instance, list) or not instance:
        raise BadRequest(f"instance {index} is not a non-empty list of numbers: {instance!r:.80}")
    for j, value in enumerate(instance):
        # bool is an int in Python, but true/false are not feature values.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"instance {index}, value {j}: {value!r:.40} is not a number")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer beyond float range
            finite = False
        if not finite:
            raise BadRequest(f"instance {index}, value {j}: {value!r:.40} is not a finite number")


def _model_parameter(request: dict[str, Any]) -> str | None:
    parameters = request.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise BadRequest('"parameters" must be a JSON object, e.g. {"model": "pool-hour"}')
    model = parameters.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest('"parameters.model" must be a model name, e.g. "pool-hour"')
    return model


def choose_model(request: PredictRequest, served: dict[str, Detector]) -> tuple[str, Detector]:
    """The model that answers ``request``: the named one, or the one taking its length."""
    length = request.instances.shape[1]
    if request.model is not None:
        detector = served.get(request.model)
        if detector is None:
            raise BadRequest(
                f"no model {request.model!r} is served; served: {', '.join(sorted(served))}"
            )
        if len(detector.feature_names) != length:
            raise BadRequest(
                f"{request.model} takes instances of {len(detector.feature_names)} numbers "
                f"({', '.join(detector.feature_names)}), got {length}"
            )
        return request.model, detector
    fitting = [name for name, d in sorted(served.items()) if len(d.feature_names) == length]
    if not fitting:
        expected = "; ".join(
            f"{len(d.feature_names)} for {name} ({', '.join(d.feature_names)})"
            for name, d in sorted(served.items())
        )
        raise BadRequest(f"instances of {length} numbers fit no served model: expected {expected}")
    if len(fitting) > 1:
        raise BadRequest(
            f"instances of {length} numbers fit {', '.join(fitting)}: "
            'name one with "parameters": {"model": NAME}'
        )
    return fitting[0], served[fitting[0]]


def predictions(model_name: str, detector: Detector, instances: np.ndarray) -> list[dict]:
    scores = detector.score(instances)
    return [
        {
            "label": -1 if scores.is_anomaly[i] else 1,
            "score": float(scores.score[i]),
            "is_anomaly": bool(scores.is_anomaly[i]),
            "top_features": [t.model_dump() for t in scores.top_features[i]],
            "model": model_name,
            "model_version": detector.version,
        }
        for i in range(len(instances))
    ]
