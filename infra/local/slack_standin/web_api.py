"""The Web API methods of the stand-in (the subset dexwatch uses), its per-channel rate
limit, injected faults, the record of every call, and interactivity response URLs.

A call is answered in this order:
1. an injected fault for the method (and channel) takes its turn: it sleeps ``delay_s``,
   then answers its status or error; a fault with only a delay lets the call go on;
2. an unknown method is a 404 ``unknown_method``;
3. the token (``Authorization: Bearer`` or a ``token`` argument): ``not_authed`` when
   missing, ``invalid_auth`` when wrong;
4. the method's arguments, then (chat.postMessage) the channel's rate limit.
So a fault fires on the next call of its method whatever the token.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from infra.local.slack_standin.workspace import (
    BOT_ID,
    BOT_USER_ID,
    BOT_USER_NAME,
    TEAM_ID,
    TEAM_NAME,
    SlackError,
    Workspace,
    paginate,
    parse_blocks,
    parse_metadata,
    time_window,
    truthy,
)

Params = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Reply:
    """An HTTP answer: a JSON object, or text (5xx faults: not a Slack answer)."""

    status: int
    body: dict[str, Any] | str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @staticmethod
    def of(error: SlackError) -> Reply:
        return Reply(error.status, {"ok": False, "error": error.error}, error.headers)


@dataclasses.dataclass
class Fault:
    """The next ``count`` calls of ``method`` ("*": any), of ``channel`` if given."""

    method: str
    status: int = 200
    error: str | None = None
    retry_after: int | None = None
    delay_s: float = 0.0
    count: int = 1
    channel: str | None = None

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 599 or self.count < 1 or self.delay_s < 0:
            raise ValueError(f"not a fault: {self}")
        if self.retry_after is not None and self.status != 429:
            raise ValueError("retry_after goes with status 429")

    def reply(self) -> Reply | None:
        """The answer of this fault; None when it only delays."""
        if self.status == 429:
            headers = {"Retry-After": str(1 if self.retry_after is None else self.retry_after)}
            return Reply(429, {"ok": False, "error": "ratelimited"}, headers)
        if self.status != 200:
            return Reply(self.status, f"stand-in fault: HTTP {self.status}\n")
        if self.error:
            return Reply(200, {"ok": False, "error": self.error})
        return None


class WebApi:
    """The methods served under /api/, on a ``Workspace``, for one bot token."""

    def __init__(self, workspace: Workspace, token: str, interval_s: float, site: str) -> None:
        if interval_s < 0:
            raise ValueError("interval_s must be >= 0")
        self.workspace = workspace
        self.token = token
        self.interval_s = interval_s
        self.site = site  # http://host:port, for permalinks
        self.lock = threading.Lock()
        self._faults: list[Fault] = []
        self._requests: list[dict[str, Any]] = []
        self._last_post: dict[str, float] = {}  # channel id -> time.monotonic()
        self._responses: dict[int, tuple[str, str]] = {}  # response_url n -> (channel, ts)
        self._methods: dict[str, Callable[[Params, dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.getPermalink": self._permalink,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list,
        }

    def call(self, method: str, params: Params, authorization: str | None) -> Reply:
        with self.lock:
            fault = self._take_fault(method, params.get("channel"))
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        with self.lock:
            record: dict[str, Any] = {"method": method}
            self._describe_channel(record, params.get("channel"))
            reply = fault.reply() if fault is not None else None
            if reply is not None:
                record["fault"] = True
            else:
                try:
                    reply = Reply(200, self._answer(method, params, authorization, record))
                except SlackError as err:
                    reply = Reply.of(err)
            self._record(record, reply)
        return reply

    def refuse(self, method: str, error: str) -> Reply:
        """The answer to a call whose body cannot be read (invalid_json, ...)."""
        reply = Reply(200, {"ok": False, "error": error})
        with self.lock:
            self._record({"method": method}, reply)
        return reply

    def _answer(
        self, method: str, params: Params, authorization: str | None, record: dict[str, Any]
    ) -> dict[str, Any]:
        handler = self._methods.get(method)
        if handler is None:
            raise SlackError("unknown_method", status=404)
        token = None
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[len("bearer ") :].strip()
        token = token or params.get("token")
        if not token:
            raise SlackError("not_authed")
        if token != self.token:
            raise SlackError("invalid_auth")
        return handler(params, record)

    def _take_fault(self, method: str, channel: object) -> Fault | None:
        for fault in self._faults:
            if fault.method not in (method, "*"):
                continue
            if fault.channel is not None and not self._same_channel(fault.channel, channel):
                continue
            fault.count -= 1
            if not fault.count:
                self._faults.remove(fault)
            return fault
        return None

    def _same_channel(self, wanted: str, given: object) -> bool:
        if not isinstance(given, str):
            return False
        known = self.workspace.lookup(wanted)
        if known is not None:
            return known == self.workspace.lookup(given)
        return wanted.removeprefix("#") == given.removeprefix("#")

    def _describe_channel(self, record: dict[str, Any], channel: object) -> None:
        if channel is None:
            return
        channel_id = self.workspace.lookup(channel)
        record["channel"] = channel_id or channel
        if channel_id is not None:
            record["channel_name"] = "#" + self.workspace.names[channel_id]

    def _record(self, record: dict[str, Any], reply: Reply) -> None:
        record["status"] = reply.status
        if isinstance(reply.body, dict) and not reply.body.get("ok"):
            record["error"] = reply.body.get("error")
        record["at"] = time.time()
        self._requests.append(record)

    # The admin side (SlackStandin and /_standin/).

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self._faults.append(fault)

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self._requests)

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return self.workspace.snapshot(channel)

    def reset(self) -> None:
        with self.lock:
            self.workspace.clear()
            self._faults.clear()
            self._requests.clear()
            self._last_post.clear()
            self._responses.clear()

    # The methods.

    def _auth_test(self, params: Params, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": self.site + "/",
            "team": TEAM_NAME,
            "user": BOT_USER_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, params: Params, record: dict[str, Any]) -> dict[str, Any]:
        workspace = self.workspace
        channel_id = workspace.resolve(params.get("channel"))
        text = _text(params.get("text"))
        blocks = parse_blocks(params.get("blocks"))
        if not text and not blocks and not params.get("attachments"):
            raise SlackError("no_text")
        metadata = parse_metadata(params.get("metadata"))
        thread_ts = params.get("thread_ts")
        root = workspace.thread_root(channel_id, thread_ts) if thread_ts else None
        self._rate_limit(channel_id)
        broadcast = root is not None and truthy(params.get("reply_broadcast"))
        message = workspace.add(channel_id, text, blocks, metadata, root, broadcast)
        record["ts"] = message["ts"]
        shown = workspace.render(message, metadata=True)
        return {"ok": True, "channel": channel_id, "ts": message["ts"], "message": shown}

    def _rate_limit(self, channel_id: str) -> None:
        """Slack's "about one message per second per channel": one post per interval_s."""
        if not self.interval_s:
            return
        now = time.monotonic()
        last = self._last_post.get(channel_id)
        if last is not None and now - last < self.interval_s:
            wait = max(1, math.ceil(self.interval_s - (now - last)))
            raise SlackError("ratelimited", status=429, headers={"Retry-After": str(wait)})
        self._last_post[channel_id] = now

    def _update(self, params: Params, record: dict[str, Any]) -> dict[str, Any]:
        channel_id = self.workspace.resolve(params.get("channel"))
        message = self.workspace.find(channel_id, params.get("ts"))
        if message is None:
            raise SlackError("message_not_found")
        text = None if params.get("text") is None else _text(params.get("text"))
        given_blocks = params.get("blocks")
        blocks = None if given_blocks is None else parse_blocks(given_blocks)
        if text is None and blocks is None and not params.get("attachments"):
            raise SlackError("no_text")
        self.workspace.edit(message, text, blocks, parse_metadata(params.get("metadata")))
        record["ts"] = message["ts"]
        return {
            "ok": True,
            "channel": channel_id,
            "ts": message["ts"],
            "text": message["text"],
            "message": self.workspace.render(message, metadata=True),
        }

    def _permalink(self, params: Params, record: dict[str, Any]) -> dict[str, Any]:
        channel_id = self.workspace.resolve(params.get("channel"))
        message = self.workspace.find(channel_id, params.get("message_ts"))
        if message is None:
            raise SlackError("message_not_found")
        link = f"{self.site}/archives/{channel_id}/p{message['ts'].replace('.', '')}"
        if "thread_ts" in message:
            link += f"?thread_ts={message['thread_ts']}&cid={channel_id}"
        return {"ok": True, "channel": channel_id, "permalink": link}

    def _list(self, params: Params, record: dict[str, Any]) -> dict[str, Any]:
        """Every channel the bot is in, on one page (the consumer learns ids by name)."""
        channels = [
            {"id": cid, "name": name, "is_channel": True, "is_member": True, "is_archived": False}
            for name, cid in self.workspace.ids.items()
        ]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}

    def _history(self, params: Params, record: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages (and replies also sent to the channel), newest first."""
        channel_id = self.workspace.resolve(params.get("channel"))
        inside = time_window(params)
        chosen = [
            m
            for m in reversed(self.workspace.channel_messages(channel_id))
            if ("thread_ts" not in m or m.get("reply_broadcast")) and inside(m["ts"])
        ]
        page, cursor = paginate(chosen, params, newest_first=True)
        with_metadata = truthy(params.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [self.workspace.render(m, metadata=with_metadata) for m in page],
            "has_more": bool(cursor),
            "pin_count": 0,
            "response_metadata": {"next_cursor": cursor},
        }

    def _replies(self, params: Params, record: dict[str, Any]) -> dict[str, Any]:
        """A thread: its root first (always, on the first page), then replies oldest first."""
        channel_id = self.workspace.resolve(params.get("channel"))
        root = self.workspace.thread_root(channel_id, params.get("ts"))
        inside = time_window(params)
        chosen = [root] + [m for m in self.workspace.replies(root) if inside(m["ts"])]
        page, cursor = paginate(chosen, params, newest_first=False)
        with_metadata = truthy(params.get("include_all_metadata"))
        return {
            "ok": True,
            "messages": [self.workspace.render(m, metadata=with_metadata) for m in page],
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    # Interactivity: the message a click is on, and what comes back to its response_url.

    def clicked(self, channel: str, ts: str) -> tuple[dict[str, Any], str, str, int]:
        """(the message as Slack shows it, channel id, channel name, response_url number)
        of a click on the message (channel, ts); LookupError if there is none."""
        with self.lock:
            channel_id = self.workspace.lookup(channel)
            message = None if channel_id is None else self.workspace.find(channel_id, ts)
            if channel_id is None or message is None:
                raise LookupError(f"no message {ts} in {channel}")
            number = len(self._responses) + 1
            self._responses[number] = (channel_id, str(ts))
            shown = self.workspace.render(message, metadata=True)
            return shown, channel_id, self.workspace.names[channel_id], number

    def respond(self, number: int, body: object) -> Reply:
        """A POST to a response_url: recorded, then applied as Slack does: replace_original
        edits the message, delete_original deletes it, response_type "in_channel" posts a
        new message (in the thread if thread_ts), anything else is ephemeral (only kept in
        the record)."""
        with self.lock:
            record: dict[str, Any] = {"method": "response_url", "n": number, "body": body}
            try:
                reply = Reply(200, self._respond(number, body, record))
            except SlackError as err:
                reply = Reply.of(err)
            self._record(record, reply)
            return reply

    def _respond(self, number: int, body: object, record: dict[str, Any]) -> dict[str, Any]:
        target = self._responses.get(number)
        if target is None:
            raise SlackError("expired_url", status=404)
        channel_id, ts = target
        self._describe_channel(record, channel_id)
        if not isinstance(body, dict):
            raise SlackError("invalid_payload", status=400)
        message = self.workspace.find(channel_id, ts)
        if truthy(body.get("delete_original")) or truthy(body.get("replace_original")):
            if message is None:
                raise SlackError("message_not_found", status=404)
            if truthy(body.get("delete_original")):
                self.workspace.delete(message)
            else:
                blocks = None if body.get("blocks") is None else parse_blocks(body.get("blocks"))
                text = None if body.get("text") is None else _text(body.get("text"))
                self.workspace.edit(message, text, blocks, parse_metadata(body.get("metadata")))
        elif body.get("response_type") == "in_channel":
            text, blocks = _text(body.get("text")), parse_blocks(body.get("blocks"))
            if not text and not blocks:
                raise SlackError("no_text", status=400)
            thread_ts = body.get("thread_ts")
            root = self.workspace.thread_root(channel_id, thread_ts) if thread_ts else None
            added = self.workspace.add(channel_id, text, blocks, None, root)
            record["ts"] = added["ts"]
        return {"ok": True}


def _text(value: object) -> str:
    return "" if value is None else str(value)
