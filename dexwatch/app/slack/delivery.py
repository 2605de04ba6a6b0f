"""The Slack Web API as the consumer uses it: post, update, find a post again.

slack_sdk's WebClient makes the calls; the retry loop is ours, so every failure is sorted
once: 429 waits for Retry-After, 5xx, timeouts and refused connections back off
(``slack.retry``), and an answer with ``ok: false`` is permanent (the request was read and
refused: ``invalid_auth``, ``channel_not_found`` ...), except Slack's own transient codes.
A timed-out post may have been made: before posting again, the channel is searched for it
(its metadata names the alert and revision) one and three timeouts later, so a slow answer
does not double a message unless Slack takes longer than four timeouts to store it (the Web
API has no idempotency key to make that impossible).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from dexwatch.app.slack.messages import ALERT_EVENT, BURST_EVENT, Message
from dexwatch.core.errors import DexwatchError
from dexwatch.core.retry import RetryPolicy

log = logging.getLogger("dexwatch.slack")
# slack_sdk logs an ERROR for every non-JSON answer (a 5xx page) before we retry it: the
# retry loop says what happened, once.
_SDK_LOG = logging.getLogger("dexwatch.slack.sdk")
_SDK_LOG.setLevel(logging.CRITICAL)

# Answers with ok: false that are worth another try.
TRANSIENT_ERRORS = {
    "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout",
}  # fmt: skip
AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
_HISTORY_PAGE = 200
# After a timed-out post: look for it after one timeout, then after two more.
_SETTLE_TIMEOUTS = (1.0, 2.0)


class SlackError(DexwatchError):
    """Slack could not take a call."""


class PermanentSlackError(SlackError):
    """Slack refused the call for a reason another try will not change."""

    def __init__(self, method: str, error: str, channel: str | None = None) -> None:
        where = f" (channel {channel})" if channel else ""
        hint = " (check the bot token)" if error in AUTH_ERRORS else ""
        super().__init__(f"Slack refused {method}: {error}{where}{hint}")
        self.error = error


class TransientSlackError(SlackError):
    """Slack kept failing for reasons that pass: the message is left for redelivery."""


@dataclass(frozen=True)
class Posted:
    channel_id: str
    ts: str
    thread_ts: str | None = None


class SlackApi:
    """The Web API calls of the consumer, each retried as the module says.

    Args:
        token: the bot token (never logged).
        base_url: the Web API's base URL (the local stand-in's in tests).
        policy: timeouts and retries.
        channel_interval_s: posts to one channel are spaced this much (Slack's limit).
        sleep: how to wait (tests pass a recording one).
    """

    def __init__(
        self,
        token: str,
        base_url: str,
        policy: RetryPolicy,
        channel_interval_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = WebClient(
            token=token, base_url=base_url, timeout=max(1, round(policy.timeout_s)),
            retry_handlers=[], logger=_SDK_LOG,
        )  # fmt: skip
        self._policy = policy
        self._sleep = sleep
        self._channel_ids: dict[str, str] = {}
        self._interval_s = channel_interval_s
        self._last_post: dict[str, float] = {}
        self.calls = 0
        self.retries = 0

    def auth_test(self) -> dict[str, Any]:
        return self.call("auth.test")

    def wait_before_post(self, channel: str) -> float:
        """Seconds until ``channel`` may take the next post."""
        last = self._last_post.get(channel)
        return 0.0 if last is None else max(0.0, last + self._interval_s - time.monotonic())

    def post(
        self, channel: str, message: Message, thread_ts: str | None = None, *, find_since: float
    ) -> Posted:
        """Post ``message`` (in ``thread_ts``'s thread); after a timed-out attempt, the post
        is looked up (``find``) among the channel's messages since ``find_since`` before
        being made again."""
        payload: dict[str, Any] = {
            "channel": channel, "text": message.text, "blocks": message.blocks,
            "unfurl_links": False, "unfurl_media": False,
        }  # fmt: skip
        if message.metadata:
            payload["metadata"] = message.metadata
        if thread_ts:
            payload["thread_ts"] = thread_ts

        def look_up() -> Posted | None:
            # A post whose answer timed out may still be landing: Slack has no idempotency
            # key, so it is looked for twice, one and three more timeouts later, before it is
            # made again. An answer slower than that can still double a message.
            for wait in _SETTLE_TIMEOUTS:
                self._sleep(wait * self._policy.timeout_s)
                if (
                    found := self.find(channel, message.metadata, find_since, thread_ts)
                ) is not None:
                    return found
            return None

        if (wait := self.wait_before_post(channel)) > 0:
            self._sleep(wait)
        try:
            answer = self.call("chat.postMessage", before_retry=look_up, **payload)
        finally:
            self._last_post[channel] = time.monotonic()
        if isinstance(answer, Posted):
            return answer
        self._channel_ids[channel] = answer["channel"]
        return Posted(answer["channel"], answer["ts"], thread_ts)

    def update(self, channel_id: str, ts: str, message: Message) -> None:
        self.call(
            "chat.update", channel=channel_id, ts=ts, text=message.text, blocks=message.blocks,
            metadata=message.metadata or None,
        )  # fmt: skip

    def find(
        self, channel: str, metadata: dict[str, Any], since: float, thread_ts: str | None = None
    ) -> Posted | None:
        """The message of ``channel`` since ``since`` (unix time) whose metadata is
        ``metadata``'s alert and revision (or the same burst), in ``thread_ts``'s thread
        when given; also inside the threads of burst summaries found on the way."""
        channel_id = self.channel_id(channel)
        wanted = _key(metadata)
        if wanted is None:
            return None
        method = "conversations.replies" if thread_ts else "conversations.history"
        try:
            return self._find_in(method, channel_id, wanted, since, thread_ts)
        except PermanentSlackError as err:
            if err.error in ("thread_not_found", "message_not_found"):
                return None  # the thread is gone: nothing of ours is in it
            raise

    def channel_id(self, channel: str) -> str:
        """A channel's ID: the setting when it is one, else learned from a post or looked up
        by name (conversations.list, scope channels:read)."""
        if channel in self._channel_ids:
            return self._channel_ids[channel]
        name = channel.lstrip("#")
        if name[:1] in ("C", "G") and name.isupper() and name.isalnum():
            return name
        cursor = None
        while True:
            answer = self.call(
                "conversations.list", limit=1000, exclude_archived=True, cursor=cursor
            )
            for found in answer.get("channels", []):
                self._channel_ids["#" + found["name"]] = found["id"]
                self._channel_ids[found["name"]] = found["id"]
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if channel in self._channel_ids or not cursor:
                break
        if channel not in self._channel_ids:
            raise PermanentSlackError("conversations.list", "channel_not_found", channel)
        return self._channel_ids[channel]

    def call(
        self, method: str, before_retry: Callable[[], Posted | None] | None = None, **params: Any
    ) -> Any:
        """One Web API call with the retries of the module; ``before_retry`` runs before each
        retry that follows a timeout and may settle the call (returning what it found)."""
        params = {k: v for k, v in params.items() if v is not None}
        failures = 0
        while True:
            self.calls += 1
            timed_out = False
            try:
                if method.startswith("chat."):  # the write methods take JSON bodies
                    return self._client.api_call(method, json=params).data
                query = {k: _form(v) for k, v in params.items()}
                return self._client.api_call(method, http_verb="GET", params=query).data
            except SlackApiError as err:
                status = err.response.status_code
                error = str(err.response.get("error", "")) if err.response.data else ""
                if status == 429:
                    wait = float(err.response.headers.get("Retry-After", "1") or 1)
                    self.retries += 1
                    log.info("slack %s rate limited: retrying after %gs", method, wait)
                    self._sleep(wait)
                    continue  # a 429 is Slack asking for time, not a failure
                if status < 500 and error not in TRANSIENT_ERRORS:
                    raise PermanentSlackError(
                        method, error or f"HTTP {status}", params.get("channel")
                    ) from None
                reason = f"HTTP {status} {error}".strip()
            except (TimeoutError, URLError, ConnectionError, OSError) as err:
                timed_out = True
                reason = type(err).__name__
            failures += 1
            if failures > self._policy.max_retries:
                raise TransientSlackError(f"Slack {method} failed {failures} times: {reason}")
            delay = min(
                self._policy.backoff_max_s, self._policy.backoff_base_s * 2 ** (failures - 1)
            )
            log.info("slack %s failed (%s): retry %d in %.1fs", method, reason, failures, delay)
            self.retries += 1
            self._sleep(delay)
            if timed_out and before_retry is not None and (found := before_retry()) is not None:
                return found

    def _find_in(
        self, method: str, channel_id: str, wanted: tuple, since: float, thread_ts: str | None
    ) -> Posted | None:
        cursor = None
        while True:
            answer = self.call(
                method, channel=channel_id, ts=thread_ts, oldest=f"{since:.6f}",
                limit=_HISTORY_PAGE, include_all_metadata=True, cursor=cursor,
            )  # fmt: skip
            for message in answer.get("messages", []):
                key = _key(message.get("metadata") or {})
                if key == wanted:
                    return Posted(
                        channel_id,
                        message["ts"],
                        message.get("thread_ts")
                        if message.get("thread_ts") != message["ts"]
                        else None,
                    )
                if (
                    thread_ts is None
                    and key is not None
                    and key[0] == BURST_EVENT
                    and wanted[0] == ALERT_EVENT
                    and wanted[1] in key[1]
                ):
                    inside = self._find_in(
                        "conversations.replies", channel_id, wanted, since, message["ts"]
                    )
                    if inside is not None:
                        return inside
            cursor = (answer.get("response_metadata") or {}).get("next_cursor")
            if not answer.get("has_more") or not cursor:
                return None


def _form(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _key(metadata: dict[str, Any]) -> tuple | None:
    """What identifies a post of ours: (alert event, alert id, revision) or (burst, ids)."""
    payload = metadata.get("event_payload") or {}
    if metadata.get("event_type") == ALERT_EVENT:
        return (ALERT_EVENT, payload.get("alert_id"), payload.get("revision"))
    if metadata.get("event_type") == BURST_EVENT:
        return (BURST_EVENT, tuple(payload.get("alert_ids", ())))
    return None
