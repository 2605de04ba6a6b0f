"""The prediction server as Vertex AI and the pipeline meet it: real HTTP on a free
127.0.0.1 port, the registry's production models, the request/response contract (the earlier
design's 13-number request included), every bad request answered 400 with a message,
health, promotions seen without a restart, and the pipeline's HTTP model handler."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import apache_beam as beam
import httpx
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from beam_pipelines.transforms.scoring import (
    HttpModelHandler,
    PredictionServerError,
    ScoreWindows,
)
from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import FEATURE_NAMES, feature_vector
from dexwatch.core.settings import ModelSettings
from model.registry import CHAIN_WINDOW, POOL_HOUR, ModelRegistry
from model.serving.app import Routes, make_server, prediction_app
from model.serving.models import ServedModels, artifact_models, registry_models
from tests._detectors import (
    EARLIER_DESIGN_REQUEST,
    HOURLY_NAMES,
    chain_detector,
    chain_rows,
    hourly_detector,
)

MAX_INSTANCES = 50


class Served:
    def __init__(self, registry_dir: Path, url: str, chain: Detector, hourly: Detector) -> None:
        self.registry_dir, self.url, self.chain, self.hourly = registry_dir, url, chain, hourly

    def predict(self, body: bytes | dict) -> httpx.Response:
        if isinstance(body, dict):
            return httpx.post(f"{self.url}/predict", json=body, timeout=10)
        return httpx.post(f"{self.url}/predict", content=body, timeout=10)


def _start(app, threads: int = 2) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` with waitress on a free port in a thread; returns (base URL, stop)."""
    from waitress import wasyncore

    server = make_server(app, "127.0.0.1", 0, threads=threads)
    stopping = threading.Event()

    def run() -> None:
        # server.run() with a way out: everything is closed here, in the loop's thread,
        # after the worker threads are done (closing from another thread races them).
        while not stopping.is_set():
            wasyncore.loop(timeout=0.02, map=server._map, count=1)
        server.task_dispatcher.shutdown()
        wasyncore.close_all(server._map)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(timeout=5)
        assert not thread.is_alive()

    return f"http://127.0.0.1:{server.effective_port}", stop


@pytest.fixture(scope="module")
def detectors() -> tuple[Detector, Detector]:
    return chain_detector(), hourly_detector()


@pytest.fixture
def served(tmp_path: Path, detectors) -> Iterator[Served]:
    chain, hourly = detectors
    registry_dir = tmp_path / "models"
    for name, detector in ((CHAIN_WINDOW, chain), (POOL_HOUR, hourly)):
        registry = ModelRegistry(registry_dir, name)
        registry.register(detector)
        registry.promote(detector.version)
    app = prediction_app(ServedModels(registry_models(registry_dir)), Routes(), MAX_INSTANCES)
    url, stop = _start(app)
    yield Served(registry_dir, url, chain, hourly)
    stop()


def test_health_names_the_served_versions(served):
    response = httpx.get(f"{served.url}/health")
    assert response.status_code == 200
    assert response.json()["models"] == {
        "chain-window": served.chain.version,
        "pool-hour": served.hourly.version,
    }


def test_the_earlier_designs_request_is_answered_by_the_hourly_model(served):
    response = served.predict(EARLIER_DESIGN_REQUEST)
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    expected = served.hourly.score(EARLIER_DESIGN_REQUEST["instances"])
    assert prediction["label"] == 1 and prediction["is_anomaly"] is False
    assert prediction["score"] == pytest.approx(float(expected.score[0]))
    assert prediction["model"] == "pool-hour"
    assert prediction["model_version"] == served.hourly.version
    assert len(prediction["top_features"]) == 3
    assert {f["name"] for f in prediction["top_features"]} <= set(HOURLY_NAMES)
    assert set(prediction["top_features"][0]) == {"name", "value", "deviation"}


def test_an_abnormal_hour_is_labelled_minus_one_and_explained(served):
    normal = EARLIER_DESIGN_REQUEST["instances"][0]
    spike = [5e7, *normal[1:10], 12.0, *normal[11:]]  # 50x the volume, z-score 12
    predictions = served.predict({"instances": [normal, spike]}).json()["predictions"]
    assert [p["label"] for p in predictions] == [1, -1]
    assert predictions[1]["score"] < 0
    assert predictions[1]["top_features"][0]["name"] in ("volume_usd", "volume_zscore")


def test_chain_window_instances_score_as_the_local_detector(served):
    rows = chain_rows(40, seed=5)
    rows[3] = {**rows[3], "liquidity_removed_share": 0.7, "net_liquidity_change": -0.7}
    instances = [feature_vector(row) for row in rows]
    predictions = served.predict({"instances": instances}).json()["predictions"]
    expected = served.chain.score(instances)
    assert [p["score"] for p in predictions] == pytest.approx(list(expected.score))
    assert [p["label"] for p in predictions] == [-1 if a else 1 for a in expected.is_anomaly]
    assert predictions[3]["label"] == -1
    assert predictions[3]["top_features"][0]["name"] in FEATURE_NAMES[2:4]
    assert {p["model"] for p in predictions} == {"chain-window"}


def test_a_promotion_is_served_from_the_next_request(served):
    newer = chain_detector(seed=8)
    registry = ModelRegistry(served.registry_dir, CHAIN_WINDOW)
    registry.register(newer)
    registry.promote(newer.version)
    instances = [feature_vector(row) for row in chain_rows(3, seed=6)]
    predictions = served.predict({"instances": instances}).json()["predictions"]
    assert {p["model_version"] for p in predictions} == {newer.version}
    registry.rollback()
    predictions = served.predict({"instances": instances}).json()["predictions"]
    assert {p["model_version"] for p in predictions} == {served.chain.version}


HOUR = EARLIER_DESIGN_REQUEST["instances"][0]
WINDOW = [0.0] * len(FEATURE_NAMES)
N = len(FEATURE_NAMES)


def _window_json(*first: str) -> bytes:
    """A window instance's raw JSON: ``first`` written as given, zeros after."""
    values = [*first, *["0"] * (N - len(first))]
    return b'{"instances": [[' + ", ".join(values).encode() + b"]]}"


BAD_REQUESTS = {
    "not JSON": (b"{instances: [[1, 2]]", "the request body is not JSON"),
    "empty body": (b"", "the request body is not JSON"),
    "a list": (b"[[1, 2, 3]]", 'must be a JSON object with "instances"'),
    "no instances": (b'{"instance": [[1]]}', 'must be a JSON object with "instances"'),
    "instances not a list": (b'{"instances": 5}', '"instances" must be a list'),
    "empty instances": (b'{"instances": []}', '"instances" is empty'),
    "instance not a list": (b'{"instances": [5]}', "instance 0 is not a non-empty list"),
    "empty instance": (b'{"instances": [[]]}', "instance 0 is not a non-empty list"),
    "wrong length": (
        {"instances": [[1.0, 2.0, 3.0]]},
        f"instances of 3 numbers fit no served model: expected {N} for chain-window "
        "(volume_ratio, ",
    ),
    "mixed lengths": (
        {"instances": [HOUR, WINDOW]},
        f"instance 1 has {N} numbers and instance 0 has 13",
    ),
    "string": ({"instances": [[*HOUR[:2], "abc", *HOUR[3:]]]}, "instance 0, value 2: 'abc'"),
    "numeric string": ({"instances": [["1", *HOUR[1:]]]}, "value 0: '1' is not a number"),
    "bool": ({"instances": [WINDOW, [True, *WINDOW[1:]]]}, "instance 1, value 0: True is not"),
    "null": ({"instances": [[None, *WINDOW[1:]]]}, "value 0: None is not a number"),
    "nested list": ({"instances": [[[1.0], *WINDOW[1:]]]}, "value 0: [1.0] is not a number"),
    "NaN": (_window_json("NaN"), "NaN is not a number the model"),
    "Infinity": (_window_json("0", "-Infinity"), "-Infinity is not"),
    "overflow": (_window_json("0", "0", "1e400"), "inf is not a finite"),
    "huge int": (_window_json("0", "0", "1" + "0" * 400), "value 2: 100000"),
    "too many": (
        {"instances": [WINDOW] * (MAX_INSTANCES + 1)},
        f"{MAX_INSTANCES + 1} instances in one request; at most {MAX_INSTANCES}",
    ),
    "unknown model": ({"instances": [HOUR], "parameters": {"model": "x"}}, "no model 'x'"),
    "model of another length": (
        {"instances": [HOUR], "parameters": {"model": "chain-window"}},
        f"chain-window takes instances of {N} numbers (volume_ratio, ",
    ),
    "parameters not an object": ({"instances": [HOUR], "parameters": [1]}, '"parameters" must'),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_a_bad_request_is_a_400_that_says_what_is_wrong(served, case):
    body, message = BAD_REQUESTS[case]
    response = served.predict(body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def test_parameters_can_name_the_model(served):
    response = served.predict({"instances": [HOUR], "parameters": {"model": "pool-hour"}})
    assert response.json()["predictions"][0]["model"] == "pool-hour"


def test_wrong_method_and_unknown_route(served):
    assert httpx.get(f"{served.url}/predict").status_code == 405
    unknown = httpx.post(f"{served.url}/v1/predict", json=EARLIER_DESIGN_REQUEST)
    assert unknown.status_code == 404 and "POST /predict" in unknown.json()["error"]


def test_without_a_model_health_is_503_and_so_is_predict(tmp_path):
    app = prediction_app(ServedModels(registry_models(tmp_path / "none")), Routes(), 10)
    url, stop = _start(app)
    try:
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and "no model loaded" in health.json()["error"]
        assert httpx.post(f"{url}/predict", json=EARLIER_DESIGN_REQUEST).status_code == 503
    finally:
        stop()


def test_vertex_routes_and_artifact_directory_from_the_environment(
    tmp_path, detectors, monkeypatch
):
    _, hourly = detectors
    registry = ModelRegistry(tmp_path / "models", POOL_HOUR)
    registry.register(hourly)
    monkeypatch.setenv("AIP_PREDICT_ROUTE", "/v1/endpoints/e/deployedModels/d:predict")
    monkeypatch.setenv("AIP_HEALTH_ROUTE", "/ping")
    monkeypatch.setenv("AIP_HTTP_PORT", "8099")
    routes = Routes.from_environment()
    assert routes.port == 8099
    # What Vertex copies to AIP_STORAGE_URI: the version's artifact directory.
    models = ServedModels(artifact_models(str(registry.get(hourly.version).directory)))
    url, stop = _start(prediction_app(models, routes, 10))
    try:
        assert httpx.get(f"{url}/ping").json()["models"] == {"pool-hour": hourly.version}
        answer = httpx.post(f"{url}{routes.predict}", json=EARLIER_DESIGN_REQUEST)
        assert answer.json()["predictions"][0]["model_version"] == hourly.version
        assert httpx.post(f"{url}/predict", json=EARLIER_DESIGN_REQUEST).status_code == 404
    finally:
        stop()


# --- the pipeline's HTTP model handler ---------------------------------------------------


def _http_settings(url: str, **overrides) -> ModelSettings:
    return ModelSettings(
        serving="http", http_url=f"{url}/predict", max_batch_size=16,
        http_retry={"backoff_base_s": 0.01, "backoff_max_s": 0.02, "max_retries": 2},
        **overrides,
    )  # fmt: skip


def test_the_pipeline_scores_through_the_server_as_with_the_local_detector(served):
    rows = [{**row, "window_id": f"w{i}"} for i, row in enumerate(chain_rows(60, seed=7))]
    rows[5] = {**rows[5], "liquidity_removed_share": 0.8, "net_liquidity_change": -0.8}
    scores = served.chain.score([feature_vector(row) for row in rows])
    expected = {row["window_id"]: float(scores.score[i]) for i, row in enumerate(rows)}
    handler = HttpModelHandler(_http_settings(served.url))
    with TestPipeline(options=PipelineOptions(runner="FnApiRunner")) as p:
        scored = (p | beam.Create(rows) | ScoreWindows(handler))["main"]

        def check(got):
            assert len(got) == len(rows)
            for row in got:
                assert row["score"] == pytest.approx(expected[row["window_id"]])
                assert row["is_anomaly"] == (expected[row["window_id"]] < 0)
                assert row["model_version"] == served.chain.version
            assert next(r for r in got if r["window_id"] == "w5")["is_anomaly"]
            assert '"name":"liquidity_removed_share"' in next(
                r for r in got if r["window_id"] == "w5"
            )["top_features"].replace(" ", "")

        assert_that(scored, check)


class _FailingFirst:
    """A WSGI app answering ``status`` to the first ``failures`` requests, then the real one."""

    def __init__(self, app, failures: int, status: str) -> None:
        self.app, self.failures, self.status, self.requests = app, failures, status, 0

    def __call__(self, environ, start_response):
        self.requests += 1
        if self.requests <= self.failures:
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response(self.status, [("Content-Type", "application/json")])
            return [b'{"error": "try later"}']
        return self.app(environ, start_response)


@pytest.fixture
def flaky_handler(served: Served) -> Iterator[Callable]:
    """(failures, status) → (the flaky server, a batch, a call scoring it through the
    pipeline's HTTP handler)."""
    stops = []

    def make(failures: int, status: str):
        models = ServedModels(registry_models(served.registry_dir))
        flaky = _FailingFirst(prediction_app(models, Routes(), 100), failures, status)
        url, stop = _start(flaky)
        stops.append(stop)
        handler = HttpModelHandler(_http_settings(url))
        batch = [feature_vector(row) for row in chain_rows(4, seed=2)]
        return flaky, batch, lambda: list(handler.run_inference(batch, handler.load_model()))

    yield make
    for stop in stops:
        stop()


def test_the_handler_retries_5xx_then_scores(served, flaky_handler):
    flaky, batch, infer = flaky_handler(failures=2, status="503 Service Unavailable")
    results = infer()
    assert flaky.requests == 3
    expected = served.chain.score(batch).score
    assert [r.inference["score"] for r in results] == pytest.approx(list(expected))
    assert {r.model_id for r in results} == {served.chain.version}


def test_the_handler_gives_up_after_its_retries(flaky_handler):
    flaky, _, infer = flaky_handler(failures=10, status="500 Internal Server Error")
    with pytest.raises(PredictionServerError, match="failed 3 times, last: HTTP 500"):
        infer()
    assert flaky.requests == 3


def test_the_handler_does_not_retry_a_refused_batch(flaky_handler):
    flaky, _, infer = flaky_handler(failures=1, status="400 Bad Request")
    with pytest.raises(PredictionServerError, match=r"refused the batch \(400\).*try later"):
        infer()
    assert flaky.requests == 1


def test_the_handler_retries_a_server_that_is_not_there():
    handler = HttpModelHandler(_http_settings("http://127.0.0.1:9"))  # discard port: closed
    with pytest.raises(PredictionServerError, match="failed 3 times, last: ConnectError"):
        list(handler.run_inference([[0.0] * len(FEATURE_NAMES)], handler.load_model()))
