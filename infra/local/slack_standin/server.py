"""The stand-in's HTTP side and its Python handle, ``SlackStandin``.

    with SlackStandin(channels=["#dexwatch-alerts"], interval_s=1.0) as standin:
        client = WebClient(token=STANDIN_TOKEN, base_url=standin.url)
        standin.inject("chat.postMessage", status=429, retry_after=2)
        ... standin.messages(), standin.requests(), standin.click(...) ...

Served on one ThreadingHTTPServer (a daemon thread, 127.0.0.1 by default):
- ``/api/<method>``: the Web API (``web_api``), POST or GET; arguments from the query
  string and a JSON, form-encoded or multipart body;
- ``/_standin/...``: the same operations as the Python handle, for other processes
  (``SlackStandinClient``): GET messages[?channel=], GET requests, POST faults (the
  arguments of ``inject``), POST click, POST reset;
- ``/_standin/response/<n>``: the response_url of the n-th click.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qsl, urlsplit

from dexwatch.core.slack_settings import STANDIN_SIGNING_SECRET, STANDIN_TOKEN
from infra.local.slack_standin import interactivity
from infra.local.slack_standin.web_api import Fault, Reply, WebApi
from infra.local.slack_standin.workspace import Workspace


class BadRequest(Exception):
    """A body the stand-in cannot read."""


def form_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """The arguments in a request body, by its content type (last value wins)."""
    kind = content_type.split(";")[0].strip().lower()
    if not body:
        return {}
    if kind == "application/json":
        try:
            fields = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("invalid_json") from None
        if not isinstance(fields, dict):
            raise BadRequest("invalid_json")
        return fields
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        parsed = BytesParser(policy=HTTP).parsebytes(head + body)
        fields = {}
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True) or b""
                fields[str(name)] = payload.decode("utf-8", "replace")
        return fields
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadRequest("invalid_form_data") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: SlackStandin) -> None:
        self.standin = standin
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every call is in requests(); no line per request on stderr

    def _serve(self, verb: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        standin = self.server.standin
        try:
            if url.path.startswith("/api/"):
                method = url.path[len("/api/") :]
                params = dict(parse_qsl(url.query, keep_blank_values=True))
                try:
                    params.update(form_fields(content_type, body))
                except BadRequest as err:  # answered as Slack does, and recorded
                    self._send(standin.api.refuse(method, str(err)))
                    return
                reply = standin.api.call(method, params, self.headers.get("Authorization"))
            elif url.path.startswith("/_standin/"):
                query = dict(parse_qsl(url.query))
                fields = form_fields(content_type or "application/json", body)
                reply = standin.admin(verb, url.path[len("/_standin/") :], query, fields)
            else:
                reply = Reply(404, {"ok": False, "error": "not_found"})
        except BadRequest as err:
            reply = Reply(400, {"ok": False, "error": str(err)})
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        if isinstance(reply.body, str):
            content, kind = reply.body.encode(), "text/plain; charset=utf-8"
        else:
            content, kind = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(content)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(content)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout against a slow answer)


class SlackStandin:
    """A local stand-in for the Slack Web API, bound when made, serving once started.

    Args:
        token: the only bot token accepted.
        signing_secret: signs the interactivity payloads of ``click``.
        channels: the channels that exist ("#name" or "name"); others are channel_not_found.
        interval_s: at most one chat.postMessage per channel per interval (0: no limit).
        interactivity_url: where ``click`` posts (settable later, as ``interactivity_url``).
        host, port: where to listen (port 0: a free one).
    """

    def __init__(
        self,
        token: str = STANDIN_TOKEN,
        signing_secret: str = STANDIN_SIGNING_SECRET,
        channels: Iterable[str] = ("#dexwatch-alerts",),
        interval_s: float = 1.0,
        interactivity_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.signing_secret = signing_secret
        self.interactivity_url = interactivity_url
        workspace = Workspace(channels)
        self._server = _Server((host, port), self)
        self.host = host
        self.port: int = self._server.server_address[1]
        self.api = WebApi(workspace, token, interval_s, f"http://{host}:{self.port}")
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The Web API's base URL (slack_sdk's ``base_url``)."""
        return f"http://{self.host}:{self.port}/api/"

    @property
    def admin_url(self) -> str:
        """The base of the admin surface, for ``SlackStandinClient``."""
        return f"http://{self.host}:{self.port}"

    @property
    def channels(self) -> dict[str, str]:
        """The channel ids by "#name"."""
        return {"#" + name: channel_id for name, channel_id in self.api.workspace.ids.items()}

    def start(self) -> SlackStandin:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"slack-standin-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> SlackStandin:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Every message posted (top level and replies), oldest first; ``channel`` as
        "#name", "name" or id."""
        return self.api.messages(channel)

    def requests(self) -> list[dict[str, Any]]:
        """Every Web API call and response_url POST, in order: method, status, error (if
        not ok), at (time.time() when answered), channel and channel_name (if given), ts
        (of a message posted or edited), fault (True if an injected fault answered)."""
        return self.api.requests()

    def inject(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        delay_s: float = 0.0,
        count: int = 1,
        channel: str | None = None,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` ("*": any method), only those for
        ``channel`` if given, after sleeping ``delay_s``: 429 with Retry-After
        (``retry_after``, default 1), another non-200 ``status`` with a text body, or 200
        with ``{"ok": false, "error": error}``; with neither, the call goes on, late."""
        fault = Fault(method, status, error, retry_after, delay_s, count, channel)
        self.api.inject(fault)

    def click(
        self,
        channel: str,
        ts: str,
        action_id: str,
        value: str,
        user_id: str = "U0OPERATOR",
        user_name: str = "operator",
    ) -> int:
        """Post a signed block_actions payload for a button on message (channel, ts) to
        interactivity_url; the HTTP status of the answer. LookupError if there is no such
        message, URLError if nothing answers."""
        if self.interactivity_url is None:
            raise RuntimeError("the stand-in has no interactivity_url to send clicks to")
        message, channel_id, name, number = self.api.clicked(channel, ts)
        response_url = f"{self.admin_url}/_standin/response/{number}"
        payload = interactivity.block_actions(
            message, channel_id, name, action_id, value, user_id, user_name, response_url
        )
        return interactivity.post_signed(self.interactivity_url, payload, self.signing_secret)

    def reset(self) -> None:
        """Forget messages, requests, faults and rate limit windows."""
        self.api.reset()

    def admin(self, verb: str, path: str, query: dict[str, str], fields: dict[str, Any]) -> Reply:
        """The /_standin/ surface: the operations above over HTTP."""
        if verb == "GET" and path == "messages":
            return Reply(200, {"ok": True, "messages": self.messages(query.get("channel"))})
        if verb == "GET" and path == "requests":
            return Reply(200, {"ok": True, "requests": self.requests()})
        if verb == "POST" and path == "reset":
            self.reset()
            return Reply(200, {"ok": True})
        if verb == "POST" and path == "faults":
            try:
                self.inject(**fields)
            except (TypeError, ValueError) as err:
                return Reply(400, {"ok": False, "error": f"invalid_fault: {err}"})
            return Reply(200, {"ok": True})
        if verb == "POST" and path == "click":
            try:
                status = self.click(**fields)
            except TypeError as err:
                return Reply(400, {"ok": False, "error": f"invalid_click: {err}"})
            except LookupError:
                return Reply(404, {"ok": False, "error": "message_not_found"})
            except (RuntimeError, URLError, OSError) as err:
                return Reply(502, {"ok": False, "error": f"click_not_delivered: {err}"})
            return Reply(200, {"ok": True, "status": status})
        if verb == "POST" and path.startswith("response/") and path[9:].isdigit():
            return self.api.respond(int(path[9:]), fields)
        return Reply(404, {"ok": False, "error": "not_found"})
