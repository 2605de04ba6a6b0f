"""The stand-in's HTTP side and its Python handle, ``VertexStandin``.

Routes, as Vertex AI's REST API (v1) has them; anything else is a 404 in Google's error
shape (``{"error": {"code", "message", "status"}}``, what google-api-core reads):
- ``GET /v1/projects/{p}/locations/{l}/endpoints/{id}``: the Endpoint resource with its one
  deployed model, for the configured ids; 404 NOT_FOUND for others.
- ``POST /v1/projects/{p}/locations/{l}/endpoints/{id}:predict``: the body (``{"instances",
  "parameters"}``) goes as it is to the upstream prediction server's predict route, as
  Vertex hands it to a custom container. The container answers ``{"predictions": [...]}``
  only; the rest of the response (``deployedModelId``, ``model``, ``modelDisplayName``,
  ``modelVersionId``) is what Vertex knows of the deployment, taken here from the
  endpoint's ``StandinEndpoint``.
- ``POST ...:rawPredict``: 501 UNIMPLEMENTED; dexwatch does not call it.

What is the stand-in's own: any project and location are accepted (and echoed in resource
names); an upstream error status is passed on with the container's message; an upstream
that cannot be reached is a 503 UNAVAILABLE and one that times out a 504. How Vertex itself
words a failing container's errors can only be seen on GCP.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from infra.local.http_server import LocalHttpServer, send_json

log = logging.getLogger("dexwatch.local.vertex")

_ENDPOINT_PATH = re.compile(
    r"/v1/projects/(?P<project>[^/:]+)/locations/(?P<location>[^/:]+)"
    r"/endpoints/(?P<endpoint>[^/:]+)(?::(?P<verb>[A-Za-z]+))?"
)
# Google's canonical codes by HTTP status (google.rpc.Code's HTTP mapping).
_CANONICAL = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_CREATED = "2026-01-01T00:00:00Z"


@dataclasses.dataclass(frozen=True)
class StandinEndpoint:
    """An endpoint the stand-in knows, with the one model deployed to it.

    Args:
        endpoint_id: the id in the endpoint's resource name (``model.vertex_endpoint_id``).
        display_name: the endpoint's display name.
        deployed_model_id: the deployed model's id (a prediction's ``deployedModelId``,
            Beam's ``PredictionResult.model_id``).
        model_id: the Model Registry id in the deployed model's resource name.
        model_version_id: the Model Registry version deployed.
    """

    endpoint_id: str
    display_name: str = "dexwatch"
    deployed_model_id: str = "1"
    model_id: str = "dexwatch"
    model_version_id: str = "1"

    def model_name(self, project: str, location: str) -> str:
        return f"projects/{project}/locations/{location}/models/{self.model_id}"

    def resource(self, project: str, location: str) -> dict[str, Any]:
        """The Endpoint resource as the REST API answers it (the fields a client reads)."""
        return {
            "name": f"projects/{project}/locations/{location}/endpoints/{self.endpoint_id}",
            "displayName": self.display_name,
            "deployedModels": [
                {
                    "id": self.deployed_model_id,
                    "model": self.model_name(project, location),
                    "modelVersionId": self.model_version_id,
                    "displayName": self.display_name,
                    "createTime": _CREATED,
                }
            ],
            "trafficSplit": {self.deployed_model_id: 100},
            "createTime": _CREATED,
            "updateTime": _CREATED,
        }


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """A request the stand-in answered: its method, path (no query string), query string,
    body (decoded JSON; None if empty or not JSON), whether it carried an Authorization
    header, and the status answered."""

    method: str
    path: str
    query: str
    body: Any
    authorization: bool
    status: int


def google_error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    """(status, body) of an error in Google's JSON shape."""
    code = _CANONICAL.get(status, "UNKNOWN")
    return status, {"error": {"code": status, "message": message, "status": code}}


class VertexStandin:
    """A local stand-in for Vertex AI's prediction API, bound when made, serving once
    started.

    Args:
        upstream: the prediction server's predict route (``dexwatch serve``'s /predict).
        endpoints: the endpoints that exist: ids, or ``StandinEndpoint``s.
        host, port: where to listen (port 0: a free one).
        timeout_s: how long a prediction may take upstream before a 504.
    """

    def __init__(
        self,
        upstream: str,
        endpoints: Iterable[str | StandinEndpoint] = ("1",),
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_s: float = 30.0,
    ) -> None:
        self.upstream = upstream
        self.endpoints: dict[str, StandinEndpoint] = {}
        for endpoint in endpoints:
            if isinstance(endpoint, str):
                endpoint = StandinEndpoint(endpoint)
            self.endpoints[endpoint.endpoint_id] = endpoint
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=timeout_s)
        self._http = LocalHttpServer(self._handler(), host, port)

    @property
    def url(self) -> str:
        """The API's base URL (``model.vertex_api_endpoint``, aiplatform's api_endpoint)."""
        return self._http.url

    def start(self) -> VertexStandin:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()
        self._client.close()

    def __enter__(self) -> VertexStandin:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def requests(self) -> list[RecordedRequest]:
        """Every request answered, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for a request; ``path`` without its query string."""
        route = _ENDPOINT_PATH.fullmatch(path)
        if route is None:
            return google_error(404, f"The requested URL {path} was not found on this server.")
        project, location, verb = route["project"], route["location"], route["verb"]
        endpoint = self.endpoints.get(route["endpoint"])
        name = f"projects/{project}/locations/{location}/endpoints/{route['endpoint']}"
        if (method, verb) not in (("GET", None), ("POST", "predict"), ("POST", "rawPredict")):
            return google_error(404, f"The requested URL {path} was not found on this server.")
        if endpoint is None:
            return google_error(404, f'Endpoint "{name}" not found.')
        if method == "GET":
            return 200, endpoint.resource(project, location)
        if verb == "rawPredict":
            return google_error(501, "the Vertex stand-in does not serve rawPredict")
        return self._predict(endpoint, project, location, body)

    def _predict(
        self, endpoint: StandinEndpoint, project: str, location: str, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        try:
            response = self._client.post(
                self.upstream, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as err:
            return google_error(504, f"the deployed model did not answer in time: {err}")
        except httpx.TransportError as err:
            return google_error(503, f"the deployed model cannot be reached: {err}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200:
            detail = answer.get("error") if isinstance(answer, dict) else None
            detail = detail or response.text[:500]
            return google_error(
                response.status_code,
                f"the deployed model answered {response.status_code}: {detail}",
            )
        if not isinstance(answer, dict) or not isinstance(answer.get("predictions"), list):
            # Vertex's own wording for a container answer without predictions.
            return google_error(
                500,
                "Invalid response from prediction server - the response field predictions "
                f"is missing. Response: {response.text[:500]}",
            )
        return 200, {
            "predictions": answer["predictions"],
            "deployedModelId": endpoint.deployed_model_id,
            "model": endpoint.model_name(project, location),
            "modelDisplayName": endpoint.display_name,
            "modelVersionId": endpoint.model_version_id,
        }

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
        log.info("%s %s -> %d", request.method, request.path, request.status)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def _serve(self, method: str) -> None:
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                status, reply = standin.answer(method, path, body)
                try:
                    decoded = json.loads(body) if body else None
                except ValueError:
                    decoded = None
                authorized = self.headers.get("authorization") is not None
                standin._record(RecordedRequest(method, path, query, decoded, authorized, status))
                send_json(self, status, json.dumps(reply).encode())

            def log_message(self, *_: Any) -> None:
                pass  # every request is in requests() and on the dexwatch.local.vertex log

        return Handler
