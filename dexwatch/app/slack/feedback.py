"""Operators' clicks on an alert's buttons: verified, recorded, shown on the thread, and
written to the warehouse's ``alert_feedback`` table (which ``dexwatch train`` reads).

Slack wants an answer within three seconds, and the local warehouse may be held by the
pipeline for longer: a click is first recorded in the ledger (SQLite, at once), answered,
and written to the warehouse by ``FeedbackWriter``, which retries until it is. A click Slack
sends twice (a retried request) is recorded once: its id is the user's and the action's time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from dexwatch.app.slack.consumer import Note, SlackConsumer
from dexwatch.app.slack.messages import ALERT_EVENT, VERDICT_WORDS, VERDICTS, feedback_message
from dexwatch.core.errors import DexwatchError
from dexwatch.core.schemas.tables import ALERT_FEEDBACK
from dexwatch.core.warehouse import Warehouse

log = logging.getLogger("dexwatch.slack")
_TIMESTAMPS = ("window_start", "window_end", "clicked_at")


class BadInteraction(DexwatchError, ValueError):
    """A request to the interactivity URL that is not a click of ours."""


def feedback_row(payload: dict[str, Any], consumer: SlackConsumer) -> tuple[dict[str, Any], str]:
    """The alert_feedback row of a block_actions payload, and the channel it came from."""
    if payload.get("type") != "block_actions" or not payload.get("actions"):
        raise BadInteraction(f"not a button click: {payload.get('type')!r}")
    action = payload["actions"][0]
    if action.get("action_id") not in VERDICTS:
        raise BadInteraction(f"unknown action {action.get('action_id')!r}")
    verdict = VERDICTS[action["action_id"]][1]
    alert_id, _, revision = str(action.get("value", "")).rpartition("|")
    if not alert_id:
        raise BadInteraction("the button carries no alert id")
    user = payload.get("user") or {}
    channel = (payload.get("channel") or {}).get("id") or ""
    message = payload.get("message") or {}
    clicked = float(action.get("action_ts") or message.get("ts") or 0)
    row: dict[str, Any] = {
        "feedback_id": f"{alert_id}:{user.get('id', '')}:{action.get('action_ts', '')}",
        "alert_id": alert_id,
        "verdict": verdict,
        "user_id": user.get("id", ""),
        "user_name": user.get("username") or user.get("name"),
        "revision": int(revision) if revision.isdigit() else None,
        "channel": channel,
        "message_ts": (payload.get("container") or {}).get("message_ts") or message.get("ts", ""),
        "clicked_at": datetime.fromtimestamp(clicked, UTC).isoformat(),
    }
    row.update(_alert_columns(alert_id, message, consumer))
    return row, channel


def record_click(payload: dict[str, Any], consumer: SlackConsumer) -> bool:
    """Record a click, queue its line on the thread; False when it was on record already."""
    row, channel = feedback_row(payload, consumer)
    who = row["user_name"] or row["user_id"]
    message = feedback_message(row["verdict"], row["user_id"], row["alert_id"])
    line = f"{who}: {VERDICT_WORDS[row['verdict']]}"
    if not consumer.ledger.add_feedback(row["feedback_id"], row["alert_id"], line, row):
        return False
    root = consumer.ledger.root(row["alert_id"])
    consumer.note(root.channel if root else channel, Note(row["alert_id"], message))
    return True


class FeedbackWriter(threading.Thread):
    """Writes recorded clicks to the warehouse, retrying while it is busy or down.

    Args:
        consumer: whose ledger holds the clicks.
        open_warehouse: opens the warehouse to write (DuckDB here, BigQuery in production).
        interval_s: how often to look for clicks not written yet.
    """

    def __init__(
        self,
        consumer: SlackConsumer,
        open_warehouse: Callable[[], Warehouse],
        interval_s: float = 1.0,
    ) -> None:
        super().__init__(name="slack-feedback", daemon=True)
        self.consumer = consumer
        self.open_warehouse = open_warehouse
        self.interval_s = interval_s
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.flush()
        self.flush()

    def flush(self) -> int:
        pending = self.consumer.ledger.unwritten_feedback()
        if not pending:
            return 0
        rows = [{k: _typed(k, v) for k, v in row.items()} for _, row in pending]
        try:
            self.open_warehouse().upsert(ALERT_FEEDBACK, rows)
        except Exception as err:  # noqa: BLE001 - the ledger keeps them: try again later
            log.warning("slack: feedback not written yet (%s): retrying", err)
            return 0
        self.consumer.ledger.feedback_written([fid for fid, _ in pending])
        self.written += len(rows)
        return len(rows)


def _alert_columns(alert_id: str, message: dict[str, Any], consumer: SlackConsumer) -> dict:
    """What the row says of the alert: from the ledger's latest revision, else the clicked
    message's metadata (a consumer that never posted it), else nothing."""
    latest, root = consumer.ledger.latest(alert_id), consumer.ledger.root(alert_id)
    if latest is not None and root is not None:
        a = latest.alert
        return {
            "chain_id": a.chain_id, "scope": a.scope, "kind": a.kind,
            "pools": orjson.dumps([p.model_dump() for p in a.pools]).decode(),
            "window_start": root.alert.window_start.isoformat(),
            "window_end": a.window_end.isoformat(),
        }  # fmt: skip
    metadata = message.get("metadata") or {}
    meta = metadata.get("event_payload") or {}
    if metadata.get("event_type") != ALERT_EVENT or meta.get("alert_id") != alert_id:
        return {}
    pools = [dict(zip(("dex", "pool"), p.split(":", 1), strict=True)) for p in meta["pools"]]
    return {
        "chain_id": meta.get("chain_id"), "scope": meta.get("scope"), "kind": meta.get("kind"),
        "pools": orjson.dumps(pools).decode(),
        "window_start": meta.get("window_start"), "window_end": meta.get("window_end"),
    }  # fmt: skip


def _typed(name: str, value: Any) -> Any:
    if name in _TIMESTAMPS and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value
