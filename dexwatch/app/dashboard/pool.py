"""One pool's page data: its scored windows over a span (score and the features behind
price, liquidity and volume), the anomalous ones with their kind, the incident labels of the
local market and the operators' verdicts.

The warehouse holds what the detector measured, not the pool's raw levels: a chain window
carries its price move, liquidity change and volume against its baseline; a subgraph hour
carries the pool's volume, value locked and liquidity in the subgraph's units. The charts
show those, each under its own name.
"""

from __future__ import annotations

import math
from typing import Any

from dexwatch.app.dashboard.alerts import BadRequest, feature_words
from dexwatch.app.dashboard.chains import and_chain, chain_name
from dexwatch.app.dashboard.reader import ADDRESS, DashboardReader, pool_names, sql_text
from dexwatch.app.slack.messages import FEATURE_WORDS
from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.features.hourly import HOURLY_FEATURE_NAMES
from dexwatch.core.settings import Settings

# The charts under the score: (title, [(feature, source, axis)]); axis "usd" is a second
# scale for the subgraph's levels. A feature without a value in the span is left out.
CHARTS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("Price", (
        ("price_change", "chain", "log"), ("price_range", "chain", "log"),
        ("max_swap_price_impact", "chain", "log"), ("price_drift_1h", "chain", "sd"),
    )),
    ("Liquidity", (
        ("net_liquidity_change", "chain", "share"), ("liquidity_removed_share", "chain", "share"),
        ("liquidity_lost_1h", "chain", "share"), ("tvl_usd", "subgraph", "usd"),
    )),
    ("Volume", (
        ("volume_ratio", "chain", "log"), ("swap_count_ratio", "chain", "log"),
        ("volume_1h_vs_usual", "chain", "log"), ("volume_usd", "subgraph", "usd"),
    )),
)  # fmt: skip
SPANS_H = (1, 2, 6, 24, 168)


def pool_page(
    reader: DashboardReader,
    settings: Settings,
    pool: str,
    hours: float,
    chain_id: int | None = None,
) -> dict[str, Any]:
    """Args:
    reader: the warehouse.
    settings: names of pools and chains, explorers.
    pool: the pool's address.
    hours: the span shown, ending at the pool's newest window.
    chain_id: the pool's chain (one address can be a pool on several chains); None: the
        chain where the address was scored last (``chains`` lists the others).
    """
    pool = pool.lower()
    if not ADDRESS.fullmatch(pool):
        raise BadRequest(f"pool {pool!r} is not an address")
    if not 0 < hours <= 24 * 366:
        raise BadRequest("hours: between 0 and a year")
    quoted = sql_text(pool)
    announced = reader.rows(
        f"SELECT pool, chain_id, dex, token0, token1, fee FROM pools WHERE pool = {quoted}"
    )
    newest = {
        row["chain_id"]: row["t"]
        for row in reader.rows(
            "SELECT chain_id, epoch(MAX(window_end)) AS t FROM pool_scores "
            f"WHERE pool = {quoted} GROUP BY chain_id"
        )
    }
    on = sorted({row["chain_id"] for row in announced} | set(newest))
    if chain_id is None and on:
        chain_id = max(on, key=lambda c: (newest.get(c, float("-inf")), -c))
    info = [row for row in announced if row["chain_id"] == chain_id]
    end = newest.get(chain_id)
    name = pool_names(settings, info).get((chain_id, pool))
    this = f"pool = {quoted}{and_chain(chain_id)}"  # the pool on its chain
    page: dict[str, Any] = {
        "pool": {
            **(info[0] if info else {"pool": pool, "chain_id": chain_id}),
            "name": name,
            "chain": chain_name(settings, chain_id),
            "explorer_url": None if chain_id is None else settings.explorer(chain_id),
        },
        "chains": [{"chain_id": c, "chain": chain_name(settings, c)} for c in on],
        "span": {"hours": hours, "from": None, "to": end},
        "windows": [],
        "anomalies": {},
        "labels": [],
        "feedback": [],
        "charts": [],
        "feature_words": FEATURE_WORDS,
    }
    labels = reader.rows(
        "SELECT label_id, kind, epoch(first_timestamp) AS first_t, "
        "epoch(last_timestamp) AS last_t, first_block, last_block, details "
        f"FROM incident_labels WHERE {this} ORDER BY first_timestamp"
    )
    if end is None:
        page["labels"] = labels
        return page
    start = end - hours * 3600
    page["span"]["from"] = start
    since = f"to_timestamp({start})"
    features = ", ".join(f"s.{n}" for n in (*FEATURE_NAMES, *HOURLY_FEATURE_NAMES))
    windows = reader.rows(
        "SELECT h.window_id, h.source, epoch(h.window_start) AS window_start, "
        "epoch(h.window_end) AS window_end, h.events, h.score, h.is_anomaly, "
        f"h.model_version, {features} "
        "FROM pool_score_history AS h JOIN pool_scores AS s ON s.window_id = h.window_id "
        f"WHERE h.pool = {quoted}{and_chain(chain_id, 'h.chain_id')} AND h.window_end >= {since} "
        "ORDER BY h.window_end, h.source"
    )
    anomalies = reader.rows(
        "SELECT window_id, kind, severity, confidence, alert_id, top_features, verdict "
        f"FROM latest_anomalies WHERE {this} AND window_end >= {since}"
    )
    page["windows"] = [_window(row) for row in windows]
    page["anomalies"] = {
        row["window_id"]: {**row, "top_features": feature_words(row["top_features"])}
        for row in anomalies
    }
    page["labels"] = [label for label in labels if label["last_t"] >= start]
    page["feedback"] = reader.rows(
        "SELECT alert_id, verdict, verdict_by, epoch(verdict_at) AS verdict_at, kind, "
        "epoch(first_window_start) AS first_t, epoch(last_window_end) AS last_t "
        f"FROM alert_verdicts WHERE contains(pools, {sql_text(pool)}){and_chain(chain_id)} "
        f"AND last_window_end >= {since} ORDER BY first_window_start"
    )
    page["charts"] = _charts(page["windows"])
    return page


def _window(row: dict[str, Any]) -> dict[str, Any]:
    names = FEATURE_NAMES if row["source"] == "chain" else HOURLY_FEATURE_NAMES
    return {
        **{k: row[k] for k in ("window_id", "source", "window_start", "window_end", "events",
                               "score", "is_anomaly", "model_version")},
        "features": {n: row[n] for n in names if _finite(row.get(n))},
    }  # fmt: skip


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _charts(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The charts with the series that have values in the span."""
    present = {(w["source"], n) for w in windows for n in w["features"]}
    charts = []
    for title, series in CHARTS:
        kept = [
            {"feature": f, "source": s, "axis": a, "words": FEATURE_WORDS.get(f, f)}
            for f, s, a in series
            if (s, f) in present
        ]
        if kept:
            charts.append({"title": title, "series": kept})
    return charts
