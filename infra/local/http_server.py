"""The HTTP side the local stand-ins share: a threaded server on 127.0.0.1 run on a thread
of its own, and JSON replies.

    server = LocalHttpServer(Handler)
    with server:
        ... requests to server.url ...
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalHttpServer:
    """A ThreadingHTTPServer serving ``handler`` on a daemon thread.

    Args:
        handler: the request handler class.
        host, port: where to listen (port 0: a free one).
        poll_interval_s: how often serve_forever looks for shutdown; ``stop`` waits up to
            one interval, so tests keep it short.
    """

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        host: str = "127.0.0.1",
        port: int = 0,
        poll_interval_s: float = 0.05,
    ) -> None:
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": poll_interval_s},
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalHttpServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def send_json(handler: BaseHTTPRequestHandler, status: int, content: bytes) -> None:
    """Answer the handler's request with a JSON body; a client that gave up is let go."""
    try:
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)
    except (BrokenPipeError, ConnectionResetError):
        pass
