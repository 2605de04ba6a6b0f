"""Which Vertex AI handler ``model.serving: vertex`` builds, and how it sets aiplatform up:
Beam's own handler, untouched, when ``model.vertex_api_endpoint`` is empty; ours, with the
API endpoint (and for a local stand-in, REST and anonymous credentials) applied where the
client is made. aiplatform.init and the endpoint look-up are recorded here instead of
contacting anything; tests/integration/test_vertex_serving.py runs the real client."""

from __future__ import annotations

from typing import Any

import pytest
from apache_beam.ml.inference.vertex_ai_inference import VertexAIModelHandlerJSON
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
from pydantic import ValidationError

from beam_pipelines.transforms.scoring import hourly_model_handler, model_handler
from beam_pipelines.transforms.vertex import VertexEndpointHandler
from dexwatch.core.settings import ModelSettings, Settings


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """aiplatform.init's keyword arguments and the endpoints looked up, in order."""
    recorded: list[tuple[str, Any]] = []
    monkeypatch.setattr(aiplatform, "init", lambda **kwargs: recorded.append(("init", kwargs)))

    def retrieve(self, endpoint_id: str, location: str, is_private: bool) -> str:
        recorded.append(("endpoint", (endpoint_id, location, is_private)))
        return "endpoint"

    monkeypatch.setattr(VertexAIModelHandlerJSON, "_retrieve_endpoint", retrieve)
    return recorded


def _settings(api_endpoint: str = "") -> Settings:
    return Settings(
        model={
            "serving": "vertex", "vertex_project": "p", "vertex_location": "europe-west1",
            "vertex_endpoint_id": "42", "hourly_vertex_endpoint_id": "43",
            "vertex_api_endpoint": api_endpoint,
        }
    )  # fmt: skip


BEAMS_INIT = {"project": "p", "location": "europe-west1", "experiment": None, "network": None}


def test_without_an_api_endpoint_the_handler_is_beams_own(calls):
    handler = model_handler(_settings())
    assert type(handler) is VertexAIModelHandlerJSON
    assert calls == [("init", BEAMS_INIT), ("endpoint", ("42", "europe-west1", False))]
    assert handler.create_client() == "endpoint"
    assert calls[2:] == [("endpoint", ("42", "europe-west1", False))]  # no init of ours


def test_a_local_stand_in_is_called_over_rest_with_anonymous_credentials(calls):
    handler = model_handler(_settings("http://127.0.0.1:8123/"))
    assert isinstance(handler, VertexEndpointHandler)
    assert handler.api_endpoint == "http://127.0.0.1:8123"
    (_, ours), beams, looked_up = calls
    credentials = ours.pop("credentials")
    assert isinstance(credentials, AnonymousCredentials)
    assert ours == {
        "project": "p", "location": "europe-west1", "api_endpoint": "http://127.0.0.1:8123",
        "api_transport": "rest",
    }  # fmt: skip
    assert beams == ("init", BEAMS_INIT)
    assert looked_up == ("endpoint", ("42", "europe-west1", False))
    # Where the model is loaded (a worker, after unpickling): set up again, then looked up.
    calls.clear()
    handler.create_client()
    assert [name for name, _ in calls] == ["init", "endpoint"]
    assert calls[0][1]["api_endpoint"] == "http://127.0.0.1:8123"
    assert isinstance(calls[0][1]["credentials"], AnonymousCredentials)


def test_a_host_is_called_with_the_workers_own_credentials(calls):
    handler = hourly_model_handler(_settings("europe-west1-aiplatform-x.p.googleapis.com"))
    assert isinstance(handler, VertexEndpointHandler)
    ours = calls[0][1]
    assert ours == {
        "project": "p", "location": "europe-west1",
        "api_endpoint": "europe-west1-aiplatform-x.p.googleapis.com",
    }  # fmt: skip
    assert calls[-1] == ("endpoint", ("43", "europe-west1", False))


def test_the_handler_keeps_no_credentials(calls):
    handler = model_handler(_settings("http://127.0.0.1:8123"))
    held = [value for value in vars(handler).values() if "credential" in type(value).__name__]
    assert held == []
    assert not any("credential" in name.lower() for name in vars(handler))


@pytest.mark.parametrize(
    "value",
    ["https://x.googleapis.com", "http://127.0.0.1:1/v1", "http://u:p@h:1", "a host", "ftp://x"],
)
def test_vertex_api_endpoint_refuses_what_the_client_cannot_use(value):
    with pytest.raises(ValidationError, match="vertex_api_endpoint"):
        ModelSettings(vertex_api_endpoint=value)


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("", ""),
        ("europe-west1-aiplatform.googleapis.com", "europe-west1-aiplatform.googleapis.com"),
        ("10.0.0.5:443", "10.0.0.5:443"),
        ("http://127.0.0.1:8123/", "http://127.0.0.1:8123"),
    ],
)
def test_vertex_api_endpoint_takes_a_host_or_a_local_url(value, kept):
    assert ModelSettings(vertex_api_endpoint=value).vertex_api_endpoint == kept
