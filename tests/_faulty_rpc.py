"""A JSON-RPC proxy on 127.0.0.1 that forwards to a real node and injects scripted faults,
and ``KeyQuotingNode``, a node that quotes its API key back in its answers.

    with FaultyRpcProxy(anvil_url) as proxy:
        proxy.inject("eth_getLogs", "http_429", "timeout", "corrupt_log")
        proxy.max_log_blocks = 3           # refuse wider eth_getLogs ranges, like providers do
        ... point the client at proxy.url ...

Each injected fault applies to the next request whose (first) method matches, in order;
``corrupt_log`` waits for the next answer that has a log to corrupt.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from infra.local.http_server import LocalHttpServer, send_json

FAULTS = (
    "http_429",  # rate limited
    "http_500",
    "http_503",
    "http_401",  # an HTML page, as a provider answers a wrong API key
    "timeout",  # answers only after hang_s, later than the client waits
    "disconnect",  # closes the connection without an answer
    "not_json",  # a 200 whose body is an HTML error page
    "too_large",  # eth_getLogs refused with -32005 "query returned more than 10000 results"
    "corrupt_log",  # truncates the data of the first log of the next answer that has logs
)


class FaultyRpcProxy:
    def __init__(self, upstream: str, hang_s: float = 2.0) -> None:
        self.upstream = upstream
        self.hang_s = hang_s
        # eth_getLogs ranges wider than this are refused as too large (None: no limit).
        self.max_log_blocks: int | None = None
        # Methods answered "method not found" (-32601), as nodes that do not offer them do.
        self.unsupported_methods: set[str] = set()
        self.methods: list[str] = []  # every request's first method, in arrival order
        self.faults_served: list[tuple[str, str]] = []
        self.corrupted_logs: list[dict[str, Any]] = []  # logs as forwarded, before corruption
        self._faults: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=30, headers={"content-type": "application/json"})
        # A short poll interval: stopping waits up to one interval, at every test's end.
        self._server = LocalHttpServer(self._handler(), poll_interval_s=0.02)

    @property
    def url(self) -> str:
        return self._server.url

    def inject(self, method: str, *faults: str) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {unknown}")
        with self._lock:
            self._faults[method].extend(faults)

    def pending(self) -> int:
        with self._lock:
            return sum(len(queue) for queue in self._faults.values())

    def __enter__(self) -> FaultyRpcProxy:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop()
        self._http.close()

    def _next_fault(self, method: str) -> str | None:
        with self._lock:
            self.methods.append(method)
            queue = self._faults.get(method)
            fault = queue.popleft() if queue else None
            if fault:
                self.faults_served.append((method, fault))
            return fault

    def _answer(self, body: bytes) -> tuple[int, bytes] | None:
        """(status, body) to send, or None to close the connection without an answer."""
        request = json.loads(body)
        first = request[0] if isinstance(request, list) else request
        method = first.get("method", "")
        fault = self._next_fault(method)
        if fault in ("http_429", "http_500", "http_503"):
            return int(fault[-3:]), b'{"error": "injected"}'
        if fault == "http_401":
            return 401, b"<html>401 Unauthorized</html>"
        if fault == "timeout":
            time.sleep(self.hang_s)
            return None
        if fault == "disconnect":
            return None
        if fault == "not_json":
            return 200, b"<html>502 Bad Gateway</html>"
        if method in self.unsupported_methods:
            calls = request if isinstance(request, list) else [request]
            error = {"code": -32601, "message": f"the method {method} does not exist"}
            replies = [{"jsonrpc": "2.0", "id": call["id"], "error": error} for call in calls]
            return 200, json.dumps(replies if isinstance(request, list) else replies[0]).encode()
        if method == "eth_getLogs" and (fault == "too_large" or self._too_wide(first)):
            error = {"code": -32005, "message": "query returned more than 10000 results"}
            return 200, json.dumps({"jsonrpc": "2.0", "id": first["id"], "error": error}).encode()
        forwarded = self._http.post(self.upstream, content=body)
        if fault == "corrupt_log":
            reply = forwarded.json()
            logs = reply.get("result") or []
            if not logs:  # nothing to corrupt (e.g. a factory query): keep it for the next one
                with self._lock:
                    self.faults_served.remove((method, fault))
                    self._faults[method].appendleft(fault)
                return forwarded.status_code, forwarded.content
            self.corrupted_logs.append(dict(logs[0]))
            logs[0]["data"] = logs[0]["data"][:-2]  # one byte short
            return forwarded.status_code, json.dumps(reply).encode()
        return forwarded.status_code, forwarded.content

    def _too_wide(self, request: dict[str, Any]) -> bool:
        if self.max_log_blocks is None:
            return False
        query = request["params"][0]
        width = int(query["toBlock"], 16) - int(query["fromBlock"], 16) + 1
        return width > self.max_log_blocks

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                answer = proxy._answer(body)
                if answer is None:
                    self.close_connection = True
                    return
                send_json(self, *answer)

            def log_message(self, *_: Any) -> None:  # keep test output clean
                pass

        return Handler


class KeyQuotingNode:
    """A JSON-RPC node on 127.0.0.1 that quotes the request's URL path and query (where
    providers put the API key) in every answer, as some providers' error messages do.

    ``answer``: "error" (a JSON-RPC error: retrying cannot help), "rate_limited" (a
    rate-limit error: retried, then the next URL) or "garbage" (a result that is not what
    was asked for, which the client does not expect).
    """

    ANSWERS = ("error", "rate_limited", "garbage")

    def __init__(self, answer: str = "error") -> None:
        if answer not in self.ANSWERS:
            raise ValueError(f"unknown answer {answer!r}")
        self.answer = answer
        self.requests = 0
        self._server = LocalHttpServer(self._handler(), poll_interval_s=0.02)

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> KeyQuotingNode:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop()

    def _reply(self, request_id: Any, path: str) -> dict[str, Any]:
        self.requests += 1
        if self.answer == "garbage":
            return {"jsonrpc": "2.0", "id": request_id, "result": f"unknown project {path}"}
        message = (
            f"rate limit exceeded for {path}"
            if self.answer == "rate_limited"
            else f"invalid project id or API key in {path}"
        )
        return {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32000, "message": message}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                if isinstance(request, list):
                    reply: Any = [node._reply(call.get("id"), self.path) for call in request]
                else:
                    reply = node._reply(request.get("id"), self.path)
                send_json(self, 200, json.dumps(reply).encode())

            def log_message(self, *_: Any) -> None:  # keep test output clean
                pass

        return Handler
