"""`dexwatch run` with the local stand-in of Slack: each message the consumer posts there,
as one line beside the live summary (what a channel member would have seen)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from infra.local.slack_standin import SlackStandinClient

_POLL_S = 2.0


def follow_standin(port: int, on_line: Callable[[str], None]) -> Callable[[], None]:
    """Call ``on_line`` for each new message of the stand-in on ``port``; returns its stop."""
    client = SlackStandinClient(f"http://127.0.0.1:{port}")
    stop = threading.Event()
    seen: set[str] = set()

    def poll() -> None:
        while not stop.wait(_POLL_S):
            try:
                messages = client.messages()
            except Exception:  # noqa: BLE001, S112 - the stand-in is starting or stopping
                continue
            for message in messages:
                if message["ts"] in seen:
                    continue
                seen.add(message["ts"])
                where = message.get("channel_name", message["channel"])
                reply = " ↳" if message.get("thread_ts") else ""
                on_line(f"{where}{reply} {message.get('text', '')}")

    thread = threading.Thread(target=poll, name="slack-feed", daemon=True)
    thread.start()

    def stop_following() -> None:
        stop.set()
        thread.join(timeout=5)

    return stop_following
