"""The prediction server's WSGI application, and ``serve`` that runs it with waitress.

Plain WSGI, no web framework: three routes and a JSON contract do not need one, and the
Vertex container stays small. waitress is a small pure-Python production WSGI server
(threads, HTTP/1.1 keep-alive, request size limits) with no dependencies of its own.
Vertex AI tells a custom container where to listen and answer through AIP_HTTP_PORT,
AIP_PREDICT_ROUTE and AIP_HEALTH_ROUTE; the defaults are Vertex's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from model.serving.contract import BadRequest, choose_model, parse_request, predictions
from model.serving.models import ServedModels

log = logging.getLogger("dexwatch.serving")

# A request of 1,000 instances of 13 numbers is about 250 kB; Vertex refuses over 1.5 MB.
MAX_BODY_BYTES = 8 * 1024 * 1024
_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}


@dataclasses.dataclass(frozen=True)
class Routes:
    predict: str = "/predict"
    health: str = "/health"
    port: int = 8080

    @classmethod
    def from_environment(cls) -> Routes:
        """Vertex AI's AIP_* variables, with Vertex's defaults."""
        return cls(
            predict=os.environ.get("AIP_PREDICT_ROUTE") or "/predict",
            health=os.environ.get("AIP_HEALTH_ROUTE") or "/health",
            port=int(os.environ.get("AIP_HTTP_PORT") or 8080),
        )


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def prediction_app(models: ServedModels, routes: Routes, max_instances: int) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, body = _route(environ)
        payload = orjson.dumps(body)
        start_response(
            _STATUS[status],
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    def _route(environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        path, method = environ.get("PATH_INFO") or "/", environ["REQUEST_METHOD"]
        if path == routes.health:
            if method not in ("GET", "HEAD"):
                return 405, {"error": f"{path} answers GET"}
            return _health()
        if path == routes.predict:
            if method != "POST":
                return 405, {"error": f'{path} answers POST with {{"instances": [...]}}'}
            return _predict(environ)
        return 404, {"error": f"no route {path}: POST {routes.predict}, GET {routes.health}"}

    def _health() -> tuple[int, dict[str, Any]]:
        served = models.current()
        if not served:
            return 503, {"error": "no model loaded: promote one with `dexwatch model promote`"}
        return 200, {"status": "ok", "models": {n: d.version for n, d in sorted(served.items())}}

    def _predict(environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 400, {"error": "invalid Content-Length"}
        if length > MAX_BODY_BYTES:
            return 413, {"error": f"request of {length} bytes; at most {MAX_BODY_BYTES}"}
        body = environ["wsgi.input"].read(length) if length else b""
        served = models.current()
        if not served:
            return 503, {"error": "no model loaded: promote one with `dexwatch model promote`"}
        try:
            request = parse_request(body, max_instances)
            name, detector = choose_model(request, served)
        except BadRequest as err:
            return 400, {"error": str(err)}
        try:
            return 200, {"predictions": predictions(name, detector, request.instances)}
        except Exception:  # noqa: BLE001 - the client gets a 500, the log the traceback
            log.exception("scoring with %s %s failed", name, detector.version)
            return 500, {"error": f"scoring with {name} {detector.version} failed"}

    return app


def make_server(app: WsgiApp, host: str, port: int, threads: int = 4):  # type: ignore[no-untyped-def]
    """A waitress server bound to host:port (port 0: a free one, ``server.effective_port``);
    ``run()`` serves until the process is stopped, ``close()`` ends it."""
    from waitress import create_server

    return create_server(
        app, host=host, port=port, threads=threads, max_request_body_size=MAX_BODY_BYTES
    )
