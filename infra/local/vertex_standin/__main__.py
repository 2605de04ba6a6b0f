"""``python -m infra.local.vertex_standin [--port P] [--upstream URL] [--endpoint ID ...]``:
the local stand-in for Vertex AI's prediction API, in front of a running prediction server
(``dexwatch serve``), served until SIGTERM or SIGINT. It prints one line once it answers,
with the base URL to set as ``model.vertex_api_endpoint`` (and the endpoint ids to set as
``model.vertex_endpoint_id`` / ``hourly_vertex_endpoint_id``); each request is logged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from dexwatch.core.settings import ModelSettings
from infra.local.vertex_standin.server import VertexStandin

DEFAULT_UPSTREAM = ModelSettings.model_fields["http_url"].default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.vertex_standin", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    parser.add_argument(
        "--upstream",
        default=DEFAULT_UPSTREAM,
        help=f"the prediction server's predict route (default {DEFAULT_UPSTREAM})",
    )
    parser.add_argument(
        "--endpoint",
        action="append",
        metavar="ID",
        help="an endpoint id that exists (repeatable; default 1)",
    )
    parser.add_argument("--timeout-s", type=float, default=30.0, help="upstream timeout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        standin = VertexStandin(
            args.upstream, args.endpoint or ["1"], args.host, args.port, args.timeout_s
        )
    except OSError as err:
        print(f"error: the Vertex stand-in cannot start: {err}", file=sys.stderr)
        return 1
    with standin:
        endpoints = ", ".join(standin.endpoints)
        print(
            f"vertex stand-in ready on {standin.url} endpoints {endpoints} "
            f"predicting with {args.upstream}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
