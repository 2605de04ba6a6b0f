"""The consumer's HTTP side, one WSGI app: Slack's button clicks and Pub/Sub's push.

- ``POST /slack/actions``: Slack interactivity. The request's signature is checked with
  the signing secret (slack_sdk's SignatureVerifier: HMAC of the body, timestamps older than
  five minutes refused) before anything is read; a click is recorded and answered at once.
- ``POST /pubsub/push``: a Pub/Sub push subscription's envelope. In production the request
  carries an OIDC token of the subscription's service account for ``slack.push_audience``
  (verified with google-auth); 2xx acknowledges, 503 makes Pub/Sub deliver it again.
- ``GET /healthz``: the outcome counts.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import orjson
from slack_sdk.signature import SignatureVerifier

from dexwatch.app.slack.consumer import Outcome, SlackConsumer
from dexwatch.app.slack.feedback import BadInteraction, record_click

log = logging.getLogger("dexwatch.slack")

MAX_BODY_BYTES = 1024 * 1024
# A push request waits this long for its alert to be posted (Pub/Sub allows up to 600 s).
PUSH_WAIT_S = 540.0
_STATUS = {
    200: "200 OK", 204: "204 No Content", 400: "400 Bad Request", 401: "401 Unauthorized",
    404: "404 Not Found", 405: "405 Method Not Allowed", 413: "413 Content Too Large",
    503: "503 Service Unavailable",
}  # fmt: skip

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_app(
    consumer: SlackConsumer,
    signing_secret: str | None,
    push_audience: str = "",
    push_service_account: str = "",
) -> WsgiApp:
    """Args:
    consumer: takes the pushed alerts and the clicks.
    signing_secret: Slack's; None refuses every click (interactivity not configured).
    push_audience: the OIDC audience push requests must carry a token for; empty: none checked.
    push_service_account: the email the token must be of, when given.
    """
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    def actions(environ: dict[str, Any], body: bytes) -> tuple[int, Any]:
        if verifier is None:
            return 503, {"error": "interactivity is not configured (no signing secret)"}
        headers = {
            "x-slack-request-timestamp": environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""),
            "x-slack-signature": environ.get("HTTP_X_SLACK_SIGNATURE", ""),
        }
        if not verifier.is_valid_request(body, headers):
            log.warning("slack: a click with a bad signature was refused")
            return 401, {"error": "bad signature"}
        try:
            payload = orjson.loads(parse_qs(body.decode())["payload"][0])
            record_click(payload, consumer)
        except (KeyError, ValueError, BadInteraction) as err:
            return 400, {"error": str(err).splitlines()[0]}
        return 200, None

    def push(environ: dict[str, Any], body: bytes) -> tuple[int, Any]:
        if push_audience and not _token_ok(environ, push_audience, push_service_account):
            return 401, {"error": "no valid OIDC token for this audience"}
        try:
            message = orjson.loads(body)["message"]
            data = base64.b64decode(message.get("data", ""))
            attributes = dict(message.get("attributes") or {})
        except (KeyError, ValueError, TypeError) as err:
            return 400, {"error": f"not a Pub/Sub push envelope: {err}"}
        settled = threading.Event()
        result: list[Outcome] = []

        def done(outcome: Outcome) -> None:
            result.append(outcome)
            settled.set()

        consumer.submit(data, attributes, done)
        if not settled.wait(PUSH_WAIT_S) or result[0] == "retry":
            return 503, {"error": "not delivered yet"}
        return 204, None

    def health(_environ: dict[str, Any], _body: bytes) -> tuple[int, Any]:
        return 200, consumer.counts.as_dict()

    routes = {("POST", "/slack/actions"): actions, ("POST", "/pubsub/push"): push,
              ("GET", "/healthz"): health}  # fmt: skip

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        handler = routes.get((method, path))
        if handler is None:
            known = any(p == path for _, p in routes)
            status, answer = (405, {"error": "method"}) if known else (404, {"error": "no route"})
        else:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > MAX_BODY_BYTES:
                status, answer = 413, {"error": "body too large"}
            else:
                status, answer = handler(environ, environ["wsgi.input"].read(length))
        body = b"" if answer is None else orjson.dumps(answer)
        start_response(_STATUS[status], [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(body)))])  # fmt: skip
        return [body]

    return app


def _token_ok(environ: dict[str, Any], audience: str, service_account: str) -> bool:
    """A Google-signed OIDC token for ``audience`` (and of ``service_account``), as Pub/Sub
    push sends; checked only at deploy time (it needs Google's keys)."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header.startswith("Bearer "):
        return False
    from google.auth.transport import requests
    from google.oauth2 import id_token

    try:
        claims = id_token.verify_oauth2_token(header[7:], requests.Request(), audience=audience)
    except Exception as err:  # noqa: BLE001 - any failure to verify is a refusal
        log.warning("slack: push token refused: %s", type(err).__name__)
        return False
    return not service_account or claims.get("email") == service_account


class HttpServer:
    """Serves a WSGI app with waitress in a thread until ``stop``."""

    def __init__(self, app: WsgiApp, host: str, port: int, threads: int = 8) -> None:
        from waitress import create_server

        self._server = create_server(
            app, host=host, port=port, threads=threads, max_request_body_size=MAX_BODY_BYTES
        )
        self.port = self._server.effective_port
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slack-http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from waitress import wasyncore

        # The loop with a way out: everything is closed in the loop's own thread.
        while not self._stopping.is_set():
            wasyncore.loop(timeout=0.05, map=self._server._map, count=1)
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._server._map)
