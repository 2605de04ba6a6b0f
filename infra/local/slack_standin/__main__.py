"""``python -m infra.local.slack_standin [--port P] [--channel '#a' ...]``: the local
stand-in for the Slack Web API, served until SIGTERM or SIGINT, as ``dexwatch local up``
starts it. It prints one line once it answers (with its Web API base URL), and drives
clicks to ``--interactivity-url``; other processes reach its admin surface (/_standin/)
with ``SlackStandinClient``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from dexwatch.core.slack_settings import STANDIN_SIGNING_SECRET, STANDIN_TOKEN, SlackSettings
from infra.local.slack_standin.server import SlackStandin

DEFAULT_PORT = SlackSettings.model_fields["standin_port"].default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.slack_standin", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: a free port")
    parser.add_argument("--token", default=STANDIN_TOKEN, help="the bot token accepted")
    parser.add_argument("--signing-secret", default=STANDIN_SIGNING_SECRET)
    parser.add_argument(
        "--channel",
        action="append",
        metavar="NAME",
        help="a channel that exists (repeatable; default #dexwatch-alerts)",
    )
    parser.add_argument("--interactivity-url", default=None, help="where clicks are posted")
    parser.add_argument(
        "--interval-s",
        type=float,
        default=1.0,
        help="at most one chat.postMessage per channel per interval (0: no limit)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        standin = SlackStandin(
            token=args.token,
            signing_secret=args.signing_secret,
            channels=args.channel or ["#dexwatch-alerts"],
            interval_s=args.interval_s,
            interactivity_url=args.interactivity_url,
            host=args.host,
            port=args.port,
        )
    except (OSError, ValueError) as err:
        print(f"error: the Slack stand-in cannot start: {err}", file=sys.stderr)
        return 1
    with standin:
        channels = ", ".join(f"{name} ({cid})" for name, cid in standin.channels.items())
        print(f"slack stand-in ready on {standin.url} channels {channels}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
