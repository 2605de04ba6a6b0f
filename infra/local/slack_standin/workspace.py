"""The stand-in's Slack workspace: its channels, the messages posted to them (threads and
edits included), message timestamps, and the Slack shapes messages are answered in.

No HTTP and no locking here: ``web_api.WebApi`` holds the lock and calls in. The argument
parsers raise ``SlackError``, the ``{"ok": false, "error": ...}`` answer Slack gives.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

TEAM_ID = "T0DEXWATCH"
TEAM_NAME = "dexwatch-local"
BOT_USER_ID = "U0DEXWATCH"
BOT_USER_NAME = "dexwatch"
BOT_ID = "B0DEXWATCH"
APP_ID = "A0DEXWATCH"
MAX_BLOCKS = 50
DEFAULT_LIMIT = 100
MAX_LIMIT = 999


class SlackError(Exception):
    """An answer other than ok: ``{"ok": false, "error": error}`` with this HTTP status."""

    def __init__(
        self, error: str, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = dict(headers or {})


def bare_name(channel: str) -> str:
    return channel.strip().removeprefix("#")


def channel_id_for(name: str) -> str:
    """A channel's id: "C0" and hex digits, the same for the same name in every run."""
    return "C0" + hashlib.sha256(bare_name(name).encode()).hexdigest()[:9].upper()


def ts_micros(ts: object, error: str = "invalid_ts") -> int:
    """Microseconds since the epoch of a Slack ts ("1733356800.000100", "1733356800")."""
    try:
        return int(Decimal(str(ts).strip()) * 1_000_000)
    except (InvalidOperation, ValueError):
        raise SlackError(error) from None


def ts_text(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def truthy(value: object) -> bool:
    """A boolean argument: true, 1, "true" or "1" (slack_sdk sends booleans as "1"/"0")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return value is True or value == 1


def json_argument(value: object) -> object:
    """A structured argument as sent: JSON bodies carry it as is, form bodies as JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def parse_blocks(value: object) -> list[dict[str, Any]]:
    """Layout blocks: a list of at most 50 objects, each with a "type" (empty if none)."""
    if value is None or value == "":
        return []
    blocks = json_argument(value)
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        raise SlackError("invalid_blocks")
    if not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks):
        raise SlackError("invalid_blocks")
    return copy.deepcopy(blocks)


def parse_metadata(value: object) -> dict[str, Any] | None:
    """Message metadata: {"event_type": str, "event_payload": object}."""
    if value is None or value == "":
        return None
    metadata = json_argument(value)
    if not isinstance(metadata, dict) or not isinstance(metadata.get("event_type"), str):
        raise SlackError("invalid_metadata_format")
    if not isinstance(metadata.get("event_payload", {}), dict):
        raise SlackError("invalid_metadata_format")
    return copy.deepcopy(metadata)


def parse_limit(value: object) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(str(value))
    except ValueError:
        raise SlackError("invalid_limit") from None
    return DEFAULT_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)


def time_window(params: Mapping[str, Any]) -> Callable[[str], bool]:
    """Whether a ts is between ``oldest`` and ``latest``, both excluded unless ``inclusive``
    (as Slack's conversations.history and conversations.replies)."""
    inclusive = truthy(params.get("inclusive"))
    oldest, latest = params.get("oldest"), params.get("latest")
    low = None if oldest in (None, "") else ts_micros(oldest, "invalid_ts_oldest")
    high = None if latest in (None, "") else ts_micros(latest, "invalid_ts_latest")

    def inside(ts: str) -> bool:
        micros = ts_micros(ts)
        if low is not None and (micros < low or (micros == low and not inclusive)):
            return False
        return high is None or micros < high or (micros == high and inclusive)

    return inside


def encode_cursor(ts: str) -> str:
    """Slack's cursor form: base64 of "next_ts:<ts digits>"."""
    return base64.b64encode(f"next_ts:{ts.replace('.', '')}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The microseconds of the first message of the page a cursor points at."""
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
        prefix, _, digits = text.partition(":")
        if prefix != "next_ts" or not digits.isdigit():
            raise ValueError(text)
        return int(digits)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SlackError("invalid_cursor") from None


def paginate(
    items: list[dict[str, Any]], params: Mapping[str, Any], newest_first: bool
) -> tuple[list[dict[str, Any]], str]:
    """One page of ``items`` (already in answer order) from the ``cursor`` on, at most
    ``limit`` long, and the cursor of the next page ("" when none)."""
    cursor = params.get("cursor")
    if cursor:
        start = decode_cursor(str(cursor))
        if newest_first:
            items = [m for m in items if ts_micros(m["ts"]) <= start]
        else:
            items = [m for m in items if ts_micros(m["ts"]) >= start]
    limit = parse_limit(params.get("limit"))
    page, rest = items[:limit], items[limit:]
    return page, encode_cursor(rest[0]["ts"]) if rest else ""


class Workspace:
    """Channels (given as "#name" or "name", each with an id) and their messages.

    A stored message: channel (id), channel_name ("#name"), ts, thread_ts (replies only),
    text, blocks, metadata, received_at (time.time()), updates (earlier versions: text,
    blocks, metadata, at), reply_count and latest_reply (roots), reply_broadcast (replies
    also shown in the channel), edited_at (once edited).
    """

    def __init__(self, channels: Iterable[str]) -> None:
        self.ids: dict[str, str] = {}  # bare name -> id
        for name in channels:
            if not bare_name(name):
                raise ValueError(f"not a channel name: {name!r}")
            self.ids[bare_name(name)] = channel_id_for(name)
        self.names = {channel_id: name for name, channel_id in self.ids.items()}
        self._messages: list[dict[str, Any]] = []  # ts order
        self._index: dict[tuple[str, str], dict[str, Any]] = {}
        self._last_micros = 0

    def lookup(self, channel: object) -> str | None:
        """The id of a known channel given as "#name", "name" or its id."""
        if not isinstance(channel, str):
            return None
        if channel in self.names:
            return channel
        return self.ids.get(bare_name(channel))

    def resolve(self, channel: object) -> str:
        channel_id = self.lookup(channel)
        if channel_id is None:
            raise SlackError("channel_not_found")
        return channel_id

    def find(self, channel_id: str, ts: object) -> dict[str, Any] | None:
        return self._index.get((channel_id, str(ts)))

    def thread_root(self, channel_id: str, ts: object) -> dict[str, Any]:
        """The root of the thread the message ``ts`` starts or is in."""
        message = self.find(channel_id, ts) if ts else None
        if message is None:
            raise SlackError("thread_not_found")
        return self._index[(channel_id, message.get("thread_ts", message["ts"]))]

    def next_ts(self) -> str:
        """A new ts: time.time() in microseconds, bumped to stay strictly increasing."""
        self._last_micros = max(int(time.time() * 1_000_000), self._last_micros + 1)
        return ts_text(self._last_micros)

    def add(
        self,
        channel_id: str,
        text: str,
        blocks: list[dict[str, Any]],
        metadata: dict[str, Any] | None,
        root: dict[str, Any] | None = None,
        broadcast: bool = False,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "channel": channel_id,
            "channel_name": "#" + self.names[channel_id],
            "ts": self.next_ts(),
            "text": text,
            "blocks": blocks,
            "metadata": metadata,
            "received_at": time.time(),
            "updates": [],
        }
        if root is None:
            message["reply_count"] = 0
        else:
            message["thread_ts"] = root["ts"]
            root["reply_count"] += 1
            root["latest_reply"] = message["ts"]
            if broadcast:
                message["reply_broadcast"] = True
        self._messages.append(message)
        self._index[(channel_id, message["ts"])] = message
        return message

    def edit(
        self,
        message: dict[str, Any],
        text: str | None,
        blocks: list[dict[str, Any]] | None,
        metadata: dict[str, Any] | None,
    ) -> None:
        """Replace the fields given (None: kept), keeping the version before in updates."""
        at = message.get("edited_at", message["received_at"])
        earlier = {key: copy.deepcopy(message[key]) for key in ("text", "blocks", "metadata")}
        message["updates"].append({**earlier, "at": at})
        for key, value in (("text", text), ("blocks", blocks), ("metadata", metadata)):
            if value is not None:
                message[key] = value
        message["edited_at"] = time.time()

    def delete(self, message: dict[str, Any]) -> None:
        self._messages.remove(message)
        del self._index[(message["channel"], message["ts"])]

    def channel_messages(self, channel_id: str) -> list[dict[str, Any]]:
        return [m for m in self._messages if m["channel"] == channel_id]

    def replies(self, root: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            m
            for m in self._messages
            if m["channel"] == root["channel"] and m.get("thread_ts") == root["ts"]
        ]

    def snapshot(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Copies of every message (or a channel's), oldest first; an unknown channel has none."""
        channel_id = None if channel is None else self.lookup(channel)
        if channel is not None and channel_id is None:
            return []
        chosen = self._messages if channel_id is None else self.channel_messages(channel_id)
        return copy.deepcopy(chosen)

    def clear(self) -> None:
        """Forget every message; ts stay increasing across a reset."""
        self._messages.clear()
        self._index.clear()

    @staticmethod
    def render(message: Mapping[str, Any], metadata: bool) -> dict[str, Any]:
        """A message as Slack answers it (chat.*, conversations.*, interactivity payloads)."""
        shown: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": message["text"],
            "ts": message["ts"],
        }
        if message["blocks"]:
            shown["blocks"] = copy.deepcopy(message["blocks"])
        if "thread_ts" in message:
            shown["thread_ts"] = message["thread_ts"]
            shown["parent_user_id"] = BOT_USER_ID
            if message.get("reply_broadcast"):
                shown["subtype"] = "thread_broadcast"
        elif message["reply_count"]:
            shown.update(
                thread_ts=message["ts"],
                reply_count=message["reply_count"],
                reply_users_count=1,
                reply_users=[BOT_USER_ID],
                latest_reply=message["latest_reply"],
            )
        if "edited_at" in message:
            shown["edited"] = {
                "user": BOT_USER_ID,
                "ts": ts_text(int(message["edited_at"] * 1_000_000)),
            }
        if metadata and message["metadata"] is not None:
            shown["metadata"] = copy.deepcopy(message["metadata"])
        return shown
