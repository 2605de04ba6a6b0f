"""The pipeline's Vertex AI serving path with the real clients: Beam's
VertexAIModelHandlerJSON (built by ``model_handler`` with ``model.serving: vertex``) and
google-cloud-aiplatform over REST, pointed by ``model.vertex_api_endpoint`` at the local
Vertex stand-in, which forwards predictions to our real prediction server (the
registry's production model). What Google's side does beyond the stand-in (IAM, quotas,
its wording of a container's errors) is checked on GCP only."""

from __future__ import annotations

import base64
import bz2
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import httpx
import pytest
from apache_beam.internal import pickler
from apache_beam.testing.util import assert_that, equal_to, is_empty
from google.api_core.exceptions import BadRequest, NotFound, ServiceUnavailable
from google.cloud.aiplatform import initializer

from beam_pipelines.options import batch_options
from beam_pipelines.transforms.parse import DEAD_LETTERS
from beam_pipelines.transforms.scoring import ScoreWindows, model_handler
from beam_pipelines.transforms.vertex import VertexEndpointHandler
from dexwatch.core.features.chain import feature_vector
from dexwatch.core.settings import Settings
from infra.local.vertex_standin import StandinEndpoint, VertexStandin
from model.registry import CHAIN_WINDOW
from model.serving.app import Routes, prediction_app
from model.serving.models import ServedModels, registry_models
from tests._detectors import chain_rows
from tests.integration import test_prediction_server as prediction_server

ROOT = Path(__file__).resolve().parents[2]
PROJECT, LOCATION = "local-proj", "europe-west1"
CHAIN = StandinEndpoint(
    "42", "chain-window", deployed_model_id="4242", model_id="7", model_version_id="3"
)
ENDPOINT_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/endpoints/{CHAIN.endpoint_id}"

# The prediction server with the registry's production models (test_prediction_server's).
served = prediction_server.served
detectors = prediction_server.detectors


@pytest.fixture(autouse=True)
def _own_aiplatform_config() -> Iterator[None]:
    """aiplatform.init fills a process-wide config; each test gets it back as it was."""
    saved = dict(vars(initializer.global_config))
    yield
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


@pytest.fixture
def standin(served) -> Iterator[VertexStandin]:
    with VertexStandin(f"{served.url}/predict", [CHAIN]) as standin:
        yield standin


def _settings(state_dir: Path, api_endpoint: str, endpoint_id: str = CHAIN.endpoint_id):
    return Settings(
        state_dir=state_dir,
        model={
            "serving": "vertex", "vertex_project": PROJECT, "vertex_location": LOCATION,
            "vertex_endpoint_id": endpoint_id, "vertex_api_endpoint": api_endpoint,
            "max_batch_size": 16,
        },
    )  # fmt: skip


def _rows(n: int, seed: int) -> list[dict]:
    return [{**row, "window_id": f"w{i}"} for i, row in enumerate(chain_rows(n, seed=seed))]


def _local_scores(served, rows: list[dict]) -> dict[str, float]:
    """The scores of the local handler (``model.serving: local``) on the production model
    file the prediction server serves, by window id."""
    local = model_handler(Settings(state_dir=served.registry_dir.parent))
    assert local.load_model().version == served.chain.version
    vectors = [feature_vector(row) for row in rows]
    results = local.run_inference(vectors, local.load_model())
    return {row["window_id"]: r.inference["score"] for row, r in zip(rows, results, strict=True)}


def _predict_posts(standin: VertexStandin) -> list:
    return [r for r in standin.requests() if r.method == "POST"]


def test_windows_score_through_vertex_as_with_the_local_model(served, standin):
    rows = _rows(40, seed=7)
    rows[5] = {**rows[5], "liquidity_removed_share": 0.8, "net_liquidity_change": -0.8}
    expected = _local_scores(served, rows)
    handler = model_handler(_settings(served.registry_dir.parent, standin.url))
    assert isinstance(handler, VertexEndpointHandler)
    # Building the handler looked the endpoint up: Beam checks it has a model deployed.
    assert {(r.method, r.path, r.status) for r in standin.requests()} == {
        ("GET", ENDPOINT_PATH, 200)
    }
    version = served.chain.version
    with beam.Pipeline(options=batch_options()) as p:
        scored = p | beam.Create(rows) | ScoreWindows(handler)

        def check(got):
            assert {row["window_id"]: row["score"] for row in got} == expected
            for row in got:
                assert row["is_anomaly"] == (expected[row["window_id"]] < 0)
                # Ours, from each prediction; Vertex's deployed-model id is not a version.
                assert row["model_version"] == version
            assert next(r for r in got if r["window_id"] == "w5")["is_anomaly"]

        assert_that(scored["main"], check)
        assert_that(scored[DEAD_LETTERS], is_empty(), label="NoLetters")

    posts = _predict_posts(standin)
    assert posts and {(r.path, r.status, r.authorization) for r in posts} == {
        (f"{ENDPOINT_PATH}:predict", 200, False)  # anonymous: no credentials sent
    }
    assert all(set(r.body) == {"instances"} for r in posts)  # no inference_args
    sent = sorted(tuple(instance) for r in posts for instance in r.body["instances"])
    assert sent == sorted(tuple(feature_vector(row)) for row in rows)
    assert all(len(r.body["instances"]) <= 16 for r in posts)  # model.max_batch_size


def test_a_prediction_carries_vertexs_deployment_and_our_version(served, standin):
    handler = model_handler(_settings(served.registry_dir.parent, standin.url))
    vectors = [feature_vector(row) for row in chain_rows(3, seed=4)]
    results = list(handler.run_inference(vectors, handler.create_client()))
    assert [r.example for r in results] == vectors
    assert {r.model_id for r in results} == {CHAIN.deployed_model_id}
    assert [r.inference["score"] for r in results] == list(served.chain.score(vectors).score)
    assert {r.inference["model_version"] for r in results} == {served.chain.version}
    assert {r.inference["model"] for r in results} == {"chain-window"}


def test_a_worker_in_a_fresh_process_reaches_the_same_endpoint(served, standin):
    """What a Dataflow worker does: unpickle the handler in a process where aiplatform was
    never initialised, load the client, predict."""
    handler = model_handler(_settings(served.registry_dir.parent, standin.url))
    pickled = pickler.dumps(handler)
    raw = bz2.decompress(base64.b64decode(pickled))
    assert b"VertexEndpointHandler" in raw and standin.url.encode() in raw
    assert b"Credentials" not in raw and b"google.auth" not in raw
    vectors = [feature_vector(row) for row in chain_rows(2, seed=9)]
    standin.reset()
    worker = (
        "import json, sys\n"
        "from apache_beam.internal import pickler\n"
        "from google.cloud.aiplatform import initializer\n"
        "handler = pickler.loads(sys.stdin.read())\n"
        "before = initializer.global_config.api_endpoint\n"
        "results = handler.run_inference(json.loads(sys.argv[1]), handler.load_model())\n"
        "print(json.dumps([before, [r.inference['score'] for r in results]]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", worker, json.dumps(vectors)],
        input=pickled.decode(), capture_output=True, text=True, cwd=ROOT, env=env,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    before, scores = json.loads(done.stdout.strip().splitlines()[-1])
    assert before is None  # nothing of the parent's aiplatform config came along
    assert scores == list(served.chain.score(vectors).score)
    assert [(r.method, r.status) for r in standin.requests()][-1] == ("POST", 200)
    assert ("GET", 200) in [(r.method, r.status) for r in standin.requests()]


def test_an_unknown_endpoint_fails_when_the_handler_is_built(served, standin):
    with pytest.raises(ValueError, match="Failed to contact endpoint") as failure:
        model_handler(_settings(served.registry_dir.parent, standin.url, endpoint_id="999"))
    # Beam's ValueError carries (message, endpoint id, the client's error).
    _, endpoint_id, cause = failure.value.args
    assert endpoint_id == "999"
    assert isinstance(cause, NotFound)
    assert f'"projects/{PROJECT}/locations/{LOCATION}/endpoints/999" not found' in str(cause)
    assert [(r.method, r.status) for r in standin.requests()] == [("GET", 404)]


@pytest.fixture
def flaky(served) -> Iterator:
    """status, failures → (the flaky prediction server, a stand-in in front of it): the
    server answers ``status`` to its first ``failures`` requests."""
    stops = []

    def make(status: str, failures: int):
        models = ServedModels(registry_models(served.registry_dir))
        server = prediction_server._FailingFirst(
            prediction_app(models, Routes(), 100), failures, status
        )
        url, stop = prediction_server._start(server)
        standin = VertexStandin(f"{url}/predict", [CHAIN]).start()
        stops.extend((stop, standin.stop))
        return server, standin

    yield make
    for stop in reversed(stops):
        stop()


def test_a_5xx_from_the_prediction_server_is_retried_by_beams_handler(served, flaky):
    server, standin = flaky("503 Service Unavailable", failures=1)
    rows = _rows(6, seed=3)
    expected = _local_scores(served, rows)
    handler = model_handler(_settings(served.registry_dir.parent, standin.url))
    with beam.Pipeline(options=batch_options()) as p:
        scored = p | beam.Create(rows) | ScoreWindows(handler)
        scores = scored["main"] | beam.Map(lambda row: (row["window_id"], row["score"]))
        assert_that(scores, equal_to(list(expected.items())))
        assert_that(scored[DEAD_LETTERS], is_empty(), label="NoLetters")
    # Every row was scored, the refused batch's too: Beam's RemoteModelHandler retried
    # the ServerError (after 2.5 to 5 s of backoff). RunInference batches adaptively, so
    # there may be several batches; only the first request failed.
    statuses = [r.status for r in _predict_posts(standin)]
    assert statuses == [503] + [200] * (len(statuses) - 1) and len(statuses) >= 2
    assert server.requests == len(statuses)


def test_a_refused_batch_is_not_retried_and_becomes_dead_letters(served, flaky):
    server, standin = flaky("400 Bad Request", failures=100)
    rows = _rows(5, seed=2)
    handler = model_handler(_settings(served.registry_dir.parent, standin.url))
    with beam.Pipeline(options=batch_options()) as p:
        scored = p | beam.Create(rows) | ScoreWindows(handler)

        def check(letters):
            assert sorted(json.loads(d["payload"])["window_id"] for d in letters) == sorted(
                row["window_id"] for row in rows
            )
            for letter in letters:
                assert letter["stage"] == "score"
                assert letter["reason"].startswith("scoring failed: BadRequest: ")
                assert "the deployed model answered 400: try later" in letter["reason"]

        assert_that(scored[DEAD_LETTERS], check)
        assert_that(scored["main"], is_empty(), label="NothingScored")
    # Each batch was sent once: a 4xx is not retried.
    posts = _predict_posts(standin)
    assert {r.status for r in posts} == {400} and server.requests == len(posts)
    sent = sorted(tuple(instance) for r in posts for instance in r.body["instances"])
    assert sent == sorted(tuple(feature_vector(row)) for row in rows)


def test_a_server_that_stays_down_surfaces_as_a_retried_server_error(served, flaky):
    """Each attempt raises ServiceUnavailable, which Beam's handler retries num_retries
    (5) times with exponential backoff from 5 s before RunInference's dead letters get the
    batch; one attempt is enough to see what surfaces."""
    server, standin = flaky("503 Service Unavailable", failures=10)
    handler = model_handler(_settings(served.registry_dir.parent, standin.url))
    batch = [feature_vector(row) for row in chain_rows(2, seed=1)]
    with pytest.raises(ServiceUnavailable, match="the deployed model answered 503") as failure:
        handler.request(batch, handler.create_client())
    assert handler.retry_filter(failure.value) and handler.num_retries == 5
    assert not handler.retry_filter(BadRequest("refused"))
    assert server.requests == 1


def test_the_endpoint_resource_is_what_beam_checks(served, standin):
    """The stand-in's Endpoint and prediction metadata as aiplatform reads them."""
    handler = model_handler(_settings(served.registry_dir.parent, standin.url))
    endpoint = handler.create_client()
    assert endpoint.resource_name == ENDPOINT_PATH.removeprefix("/v1/")
    assert endpoint.display_name == "chain-window"
    (deployed,) = endpoint.list_models()
    assert deployed.id == CHAIN.deployed_model_id
    assert deployed.model == f"projects/{PROJECT}/locations/{LOCATION}/models/7"
    prediction = endpoint.predict(instances=[feature_vector(chain_rows(1)[0])])
    assert prediction.model_version_id == CHAIN.model_version_id
    assert prediction.model_resource_name == deployed.model
    assert prediction.deployed_model_id == deployed.id
    assert prediction.predictions[0]["model"] == CHAIN_WINDOW


def test_the_command_line_stand_in_forwards_to_the_prediction_server(served):
    command = [sys.executable, "-m", "infra.local.vertex_standin", "--port", "0",
               "--upstream", f"{served.url}/predict", "--endpoint", "42"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        ready = process.stdout.readline()
        assert ready.startswith("vertex stand-in ready on http://127.0.0.1:"), ready
        url = ready.split()[4]
        endpoint = httpx.get(f"{url}{ENDPOINT_PATH}", timeout=10).json()
        assert endpoint["deployedModels"][0]["id"] == "1"
        instances = [feature_vector(row) for row in chain_rows(2, seed=6)]
        answer = httpx.post(f"{url}{ENDPOINT_PATH}:predict", json={"instances": instances})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["deployedModelId"] == "1"
        scores = [p["score"] for p in body["predictions"]]
        assert scores == list(served.chain.score(instances).score)
        unknown = httpx.get(f"{url}{ENDPOINT_PATH[:-2]}99", timeout=10)
        assert unknown.status_code == 404 and unknown.json()["error"]["status"] == "NOT_FOUND"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_the_flex_template_launcher_builds_its_job_on_the_vertex_endpoint(
    served, standin, tmp_path: Path
):
    """The production path end to end as far as it runs here: the template image's own
    settings (model.serving: vertex), the template's parameters, Beam's --project; the
    DataflowRunner dry run builds Beam's Vertex handler, which looks the endpoint up."""
    import yaml

    from beam_pipelines.launcher import main as launch

    image_settings = yaml.safe_load((ROOT / "beam_pipelines/template/dexwatch.yaml").read_text())
    assert image_settings["model"]["serving"] == "vertex"
    image_settings["model"]["vertex_api_endpoint"] = standin.url
    config = tmp_path / "dexwatch.yaml"
    config.write_text(yaml.safe_dump(image_settings))
    result = launch(
        [
            f"--dexwatch_config={config}",
            f"--vertex_endpoint_id={CHAIN.endpoint_id}",
            f"--vertex_location={LOCATION}",
            "--bigquery_dataset=dexwatch",
            "--runner=DataflowRunner", "--dry_run=True", "--no_auth", f"--project={PROJECT}",
            f"--region={LOCATION}", "--temp_location=gs://my-bucket/tmp",
            "--sdk_location=container",
        ]
    )  # fmt: skip
    assert result.job.proto.type.name == "JOB_TYPE_STREAMING"
    # The endpoint looked up (aiplatform reads it, then Beam lists its models); no scoring
    # in a dry run.
    seen = [r.method + " " + r.path.split("?")[0] for r in standin.requests()]
    assert seen and set(seen) == {f"GET {ENDPOINT_PATH}"}
