"""The dashboard served on a thread of its own: `dexwatch dashboard` in the foreground,
`dexwatch run` in the background of the run (``start_dashboard``)."""

from __future__ import annotations

import errno

from dexwatch.app.dashboard.app import make_app
from dexwatch.app.slack.server import HttpServer
from dexwatch.core.settings import Settings

DEFAULT_PORT = 8050


class DashboardServer:
    """The dashboard of ``settings`` on host:port (port 0: a free one), served by waitress
    (the HTTP server the Slack consumer uses) until ``stop``.

    Args:
        settings: what the dashboard reads.
        host: the address to listen on (127.0.0.1: this machine only).
        port: the port.
    """

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT):
        self.host = host
        self._http = HttpServer(make_app(settings), host, port, threads=4)

    @property
    def port(self) -> int:
        return int(self._http.port)  # waitress may give it as text

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> DashboardServer:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_dashboard(
    settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT
) -> DashboardServer:
    """The dashboard, started; on a free port when ``port`` is taken (another dashboard of
    another run): its ``url`` says where.

    Args:
        settings: what the dashboard reads.
        host: the address to listen on.
        port: the port it would rather have.
    """
    try:
        server = DashboardServer(settings, host, port)
    except OSError as err:
        if err.errno != errno.EADDRINUSE or port == 0:
            raise
        server = DashboardServer(settings, host, 0)
    return server.start()
