"""The model health page's data: feature drift (PSI of each feature of each production
model, as `dexwatch drift check` computes it), the anomaly rate over time, and the messages
the pipeline could not read, by stage (the ``dead_letters_per_stage_day`` view)."""

from __future__ import annotations

import math
import time
from typing import Any

from dexwatch.app.dashboard.chains import and_chain
from dexwatch.app.dashboard.overview import model_versions
from dexwatch.app.dashboard.reader import DashboardReader
from dexwatch.app.slack.messages import FEATURE_WORDS
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import is_missing_table

# A dead letter's chain: its message's chain_id attribute, as dead_letters_per_stage_day
# reads it (none for a message that carried no attributes).
LETTER_CHAIN = "TRY_CAST(json_extract_string(attributes, '$.chain_id') AS BIGINT)"
# The anomaly rate is drawn over the last day of scores, in about this many steps.
RATE_SPAN_S = 24 * 3600
RATE_STEPS = 96


def model_health(
    reader: DashboardReader, settings: Settings, chain_id: int | None = None
) -> dict[str, Any]:
    """Args:
    reader: the warehouse.
    settings: the registry and the monitoring settings (drift_hours, psi_threshold).
    chain_id: the chain whose anomaly rate, dead letters and scoring versions are shown
        (the models and their drift are every chain's); None: every chain.
    """
    monitoring = settings.monitoring
    return {
        "now": time.time(),
        "chain_id": chain_id,
        "drift": _drift(reader, settings),
        "psi_threshold": monitoring.psi_threshold,
        "drift_hours": monitoring.drift_hours,
        "anomaly_rate": _anomaly_rate(reader, chain_id),
        "dead_letters": _dead_letters(reader, chain_id),
        "models": model_versions(reader, settings.registry_dir, chain_id),
    }


def _drift(reader: DashboardReader, settings: Settings) -> dict[str, Any]:
    from model.monitoring import take_snapshot
    from model.registry import ModelRegistry

    monitoring = settings.monitoring
    try:
        snapshot = take_snapshot(
            reader.warehouse,
            settings.registry_dir,
            monitoring.drift_hours,
            monitoring.anomaly_rate_hours,
        )
    except Exception as err:
        if not is_missing_table(err):  # nothing scored yet: no drift to tell
            raise
        return {"models": [], "recent_rate": {}, "rate_hours": monitoring.anomaly_rate_hours}
    return {
        "models": [
            {
                "model": m.model_name,
                "version": m.version,
                "source": m.source,
                "recent_rows": m.recent_rows,
                # A version with no training bins (the bootstrap's) has no PSI to show.
                "has_bins": bool(
                    ModelRegistry(settings.registry_dir, m.model_name)
                    .get(m.version)
                    .metadata.get("feature_bins")
                ),
                "features": [
                    {"feature": f, "words": FEATURE_WORDS.get(f, f), "psi": v}
                    for f, v in sorted(m.psi.items(), key=lambda item: -item[1])
                ],
            }
            for m in snapshot.models
        ],
        "recent_rate": {
            s: {"rate": r, "rows": snapshot.scored_rows.get(s, 0)}
            for s, r in snapshot.anomaly_rate.items()
        },
        "rate_hours": monitoring.anomaly_rate_hours,
    }


def _anomaly_rate(reader: DashboardReader, chain_id: int | None) -> dict[str, Any]:
    """The share of scored windows flagged, per source and time step, over the last day of
    scores (``pool_score_history``)."""
    on_chain = and_chain(chain_id)
    span = reader.rows(
        "SELECT epoch(MIN(window_end)) AS first, epoch(MAX(window_end)) AS last "
        f"FROM pool_scores WHERE TRUE{on_chain}"
    )
    if not span or span[0]["last"] is None:
        return {"step_s": None, "points": []}
    first = max(span[0]["first"], span[0]["last"] - RATE_SPAN_S)
    # Whole minutes, at least one: a short run is drawn minute by minute.
    step = max(60, math.ceil((span[0]["last"] - first) / RATE_STEPS / 60) * 60)
    points = reader.rows(
        f"SELECT source, floor(epoch(window_end) / {step}) * {step} AS t, COUNT(*) AS windows, "
        "AVG(CASE WHEN is_anomaly THEN 1.0 ELSE 0.0 END) AS rate FROM pool_score_history "
        f"WHERE window_end >= to_timestamp({first}){on_chain} GROUP BY source, t "
        "ORDER BY t, source"
    )
    return {"step_s": step, "points": points}


def _dead_letters(reader: DashboardReader, chain_id: int | None) -> dict[str, Any]:
    """The letters by stage and day, and the latest ten; of one chain: those whose message
    named it, and those that named no chain (a message too broken to tell)."""
    on_chain = "" if chain_id is None else f" AND (chain_id = {chain_id} OR chain_id IS NULL)"
    days = reader.rows(
        "SELECT stage, chain_id, CAST(day AS VARCHAR) AS day, letters, reasons, "
        "epoch(last_received_at) AS last_received_at FROM dead_letters_per_stage_day "
        f"WHERE TRUE{on_chain} ORDER BY day, stage, chain_id"
    )
    stages: dict[str, dict[str, Any]] = {}
    for row in days:
        stage = stages.setdefault(row["stage"], {"stage": row["stage"], "letters": 0})
        stage["letters"] += row["letters"]
        stage["last_received_at"] = max(stage.get("last_received_at") or 0, row["last_received_at"])
    latest = reader.rows(
        "SELECT stage, reason, epoch(received_at) AS received_at, chain_id FROM ("
        f"  SELECT *, {LETTER_CHAIN} AS chain_id FROM dead_letters"
        f") AS letter WHERE TRUE{on_chain} ORDER BY received_at DESC LIMIT 10"
    )
    return {
        "stages": sorted(stages.values(), key=lambda s: -s["letters"]),
        "days": days,
        "latest": latest,
    }
