"""One window in full: its row (every feature, the same-block patterns, the top features),
its anomaly when it was one, and the events it was computed from while they can still be
read locally.

The warehouse keeps no events. The local pipeline journals every message it reads from
Pub/Sub before acknowledging it (beam_pipelines.local_runner.journal) and keeps about a
span of windows of them, for restarts: a recent window's events are read back from there;
an older window's are gone from this machine (on the chain they remain, by block). In
production no event store exists: Pub/Sub keeps messages for its retention only.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from dexwatch.app.dashboard.alerts import BadRequest, feature_words
from dexwatch.app.dashboard.reader import DashboardReader, sql_text
from dexwatch.core.schemas.topics import PIPELINE_SUBSCRIPTION, POOL_HOURLY_SUBSCRIPTION
from dexwatch.core.settings import Settings

# chain: chain_id:pool:window_end; subgraph: chain_id:pool:hour_start:hour
WINDOW_ID = re.compile(r"\d{1,19}:0x[0-9a-f]{40}:\d{1,12}(:hour)?")
MAX_EVENTS = 500


def window_detail(reader: DashboardReader, settings: Settings, window_id: str) -> dict[str, Any]:
    """Args:
    reader: the warehouse.
    settings: where the local journal is.
    window_id: the window (pool_scores' natural key).
    """
    if not WINDOW_ID.fullmatch(window_id):
        raise BadRequest(f"no window {window_id!r}")
    quoted = sql_text(window_id)
    rows = reader.rows(f"SELECT * FROM pool_scores WHERE window_id = {quoted}")
    if not rows:
        raise BadRequest(f"no window {window_id} in pool_scores")
    row = {k: _plain(v) for k, v in rows[0].items() if v is not None}
    row["top_features"] = feature_words(rows[0]["top_features"])
    if "patterns" in row:
        row["patterns"] = orjson.loads(row["patterns"])
    anomaly = reader.rows(
        "SELECT kind, severity, confidence, alert_id, verdict, thread_kinds, thread_severity "
        f"FROM latest_anomalies WHERE window_id = {quoted}"
    )
    detail: dict[str, Any] = {"window": row, "anomaly": anomaly[0] if anomaly else None}
    detail.update(_journaled(settings, row))
    return detail


def _plain(value: Any) -> Any:
    return value.timestamp() if isinstance(value, datetime) else value


def _journaled(settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    """The window's messages from the local pipeline's journal, and what the journal holds."""
    from beam_pipelines.local_runner.journal import Journal

    chain = row["source"] == "chain"
    subscription = (
        settings.event_subscription(int(row["chain_id"]), PIPELINE_SUBSCRIPTION)
        if chain
        else POOL_HOURLY_SUBSCRIPTION
    )
    directory = settings.state_dir / "journal" / settings.pubsub.project / subscription
    if not _has_segments(directory):
        return {"events": [], "events_note": "no local journal here: the events cannot be read"}
    records = Journal(directory, keep_s=0).records()
    start_us, end_us = int(row["window_start"] * 1e6), int(row["window_end"] * 1e6)
    if chain:  # the pool's events on its chain (an address can be a pool on two chains)
        chain_id = str(row["chain_id"])
        mine = [
            r for r in records
            if r["a"].get("pool") == row["pool"] and r["a"].get("chain_id", chain_id) == chain_id
            and start_us <= r["t"] < end_us
        ]  # fmt: skip
    else:  # an hour's one message: its PoolHour row
        hour_id = row["window_id"].removesuffix(":hour")
        mine = [r for r in records if r["a"].get("hour_id") == hour_id]
    events = sorted((_event(r) for r in mine), key=lambda e: (e["block"], e["log_index"]))
    held_from = min((r["t"] for r in records), default=None)
    if held_from is None or start_us < held_from:
        note = (
            "the local journal keeps only the newest events (what a restart replays); "
            "this window's are gone from it" + (" in part" if events else "")
        )
    else:
        note = f"{len(events)} messages the pipeline read from Pub/Sub (its local journal)"
    return {
        "events": events[:MAX_EVENTS],
        "events_total": len(events),
        "events_note": note,
        "journal_from": None if held_from is None else held_from / 1e6,
    }


def _has_segments(directory: Path) -> bool:
    return directory.is_dir() and any(p.stem.isdigit() for p in directory.glob("*.jsonl"))


def _event(record: dict[str, Any]) -> dict[str, Any]:
    """A journaled message as a table row (bytes that were not text: shown as such)."""
    try:
        data = orjson.loads(record["d"]) if "d" in record else {}
    except orjson.JSONDecodeError:
        data = {}
    if "block_number" not in data:  # an hourly row, or a message the pipeline refused
        return {"block": 0, "log_index": 0, "time": record["t"] / 1e6,
                "event": record["a"].get("event", "row"), "kind": record["a"].get("kind", ""),
                "tx_hash": "", "tx_from": "", "args": data or {"data": "(not JSON)"}}  # fmt: skip
    return {
        "block": data["block_number"],
        "log_index": data.get("log_index", 0),
        "time": data.get("block_timestamp", record["t"] / 1e6),
        "event": data.get("event", ""),
        "kind": data.get("kind", ""),
        "tx_hash": data.get("tx_hash", ""),
        "tx_from": data.get("tx_from", ""),
        "args": data.get("args", {}),
    }
