"""The overview page's data: each chain at a glance (its pools, windows, events and
anomalies of the last 24 hours, its newest window); every followed pool with its latest
score, a sparkline of its scores, its anomalies today and its lag; the model versions in
use. All of one chain when one is chosen.

Read from the views where they answer (``pool_score_history``, ``anomalies_per_pool_day``),
so a Looker Studio report over the same views shows the same numbers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dexwatch.app.dashboard.chains import and_chain, chain_list, chain_name
from dexwatch.app.dashboard.reader import DashboardReader, pool_names
from dexwatch.core.settings import Settings

# Scored windows a sparkline shows, newest last.
SPARK_WINDOWS = 60
# Versions "in use": those that scored a window in the last hour before the newest one.
IN_USE_S = 3600
SEVERITIES = ("low", "medium", "high")
# The span of a chain's figures: the last 24 hours (of the clock: a chain that stopped shows
# none).
_LAST_DAY = "window_end >= CURRENT_TIMESTAMP - INTERVAL 24 HOUR"


def overview(
    reader: DashboardReader, settings: Settings, chain_id: int | None = None
) -> dict[str, Any]:
    """Args:
    reader: the warehouse.
    settings: the chains, names of pools, the model registry.
    chain_id: the chain shown; None: every chain.
    """
    on_chain = and_chain(chain_id)
    announced = reader.rows(
        f"SELECT pool, chain_id, dex, token0, token1, fee FROM pools WHERE TRUE{on_chain}"
    )
    latest = reader.rows(
        "SELECT pool, chain_id, dex, source, epoch(window_end) AS window_end, score, "
        "is_anomaly, model_version FROM ("
        "  SELECT *, ROW_NUMBER() OVER ("
        "    PARTITION BY chain_id, pool ORDER BY window_end DESC, source) AS newest"
        f"  FROM pool_score_history WHERE TRUE{on_chain}"
        ") AS scored WHERE newest = 1"
    )
    # The sparkline: the newest windows of the pool's busiest source (chain windows; a pool
    # the subgraph path alone scores shows its hours).
    spark = reader.rows(
        "SELECT chain_id, pool, source, score FROM ("
        "  SELECT chain_id, pool, source, window_end, score, ROW_NUMBER() OVER ("
        "    PARTITION BY chain_id, pool, source ORDER BY window_end DESC) AS newest"
        "  FROM pool_score_history"
        "  WHERE window_end >= (SELECT max(window_end) FROM pool_scores) - INTERVAL 1 DAY"
        f"{on_chain}) AS recent WHERE newest <= {SPARK_WINDOWS} "
        "ORDER BY chain_id, pool, source, window_end"
    )
    today = reader.rows(
        "SELECT chain_id, pool, SUM(anomalies) AS anomalies, MAX(CASE max_severity "
        "WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END) AS severity_rank "
        "FROM anomalies_per_pool_day "
        f"WHERE day = CAST(CURRENT_TIMESTAMP AS DATE){on_chain} GROUP BY chain_id, pool"
    )
    now = time.time()
    sparks: dict[tuple[int, str], dict[str, list[float]]] = {}
    for row in spark:
        key = (row["chain_id"], row["pool"])
        sparks.setdefault(key, {}).setdefault(row["source"], []).append(row["score"])
    latest_of = {(row["chain_id"], row["pool"]): row for row in latest}
    today_of = {(row["chain_id"], row["pool"]): row for row in today}
    # Followed pools, by chain and address: those announced, and any the subgraph path
    # scores without one.
    pools = {(row["chain_id"], row["pool"]): row for row in announced}
    for row in latest:
        pools.setdefault(
            (row["chain_id"], row["pool"]), {**row, "token0": None, "token1": None, "fee": None}
        )
    names = pool_names(settings, list(pools.values()))
    listed = []
    for key, row in pools.items():
        last = latest_of.get(key)
        by_source = sparks.get(key, {})
        source = "chain" if "chain" in by_source else next(iter(by_source), None)
        counted = today_of.get(key)
        listed.append(
            {
                "pool": row["pool"],
                "name": names.get(key),
                "chain_id": row["chain_id"],
                "chain": chain_name(settings, row["chain_id"]),
                "dex": row["dex"],
                "latest": last and {k: last[k] for k in (
                    "source", "window_end", "score", "is_anomaly", "model_version")},
                "lag_s": None if last is None else max(0.0, now - last["window_end"]),
                "spark": by_source.get(source, []) if source else [],
                "spark_source": source,
                "anomalies_today": int(counted["anomalies"]) if counted else 0,
                "max_severity_today": SEVERITIES[counted["severity_rank"]] if counted else None,
            }
        )  # fmt: skip
    # Pools that alert first, then by name.
    listed.sort(key=lambda p: (-p["anomalies_today"], p["name"] or p["pool"], p["chain_id"]))
    return {
        "now": now,
        "chain_id": chain_id,
        "chains": _chains(reader, settings, listed, chain_id, now),
        "pools": listed,
        "models": model_versions(reader, settings.registry_dir, chain_id),
    }


def _chains(
    reader: DashboardReader,
    settings: Settings,
    pools: list[dict[str, Any]],
    chain_id: int | None,
    now: float,
) -> list[dict[str, Any]]:
    """Each chain at a glance (the one chosen, else the configured ones and any other with
    rows): its pools, what was scored of it in the last 24 hours and its newest window, so
    a chain that stopped is seen at once."""
    figures = {
        row["chain_id"]: row
        for row in reader.rows(
            "SELECT chain_id, "
            f"COUNT(CASE WHEN {_LAST_DAY} THEN 1 END) AS windows, "
            f"SUM(CASE WHEN {_LAST_DAY} AND source = 'chain' THEN events ELSE 0 END) AS events, "
            f"COUNT(CASE WHEN {_LAST_DAY} AND is_anomaly THEN 1 END) AS anomalies, "
            "epoch(MAX(window_end)) AS last_window_end "
            f"FROM pool_score_history WHERE TRUE{and_chain(chain_id)} GROUP BY chain_id"
        )
    }
    present = {p["chain_id"] for p in pools} | set(figures)
    chains = []
    for chain in chain_list(settings, present):
        if chain_id not in (None, chain["chain_id"]):
            continue
        row = figures.get(chain["chain_id"], {})
        last = row.get("last_window_end")
        chains.append({
            **chain,
            "pools": sum(p["chain_id"] == chain["chain_id"] for p in pools),
            "windows_24h": int(row.get("windows") or 0),
            "events_24h": int(row.get("events") or 0),
            "anomalies_24h": int(row.get("anomalies") or 0),
            "last_window_end": last,
            "lag_s": None if last is None else max(0.0, now - last),
        })  # fmt: skip
    return chains


def model_versions(
    reader: DashboardReader, registry_dir: Path, chain_id: int | None = None
) -> dict[str, Any]:
    """The version in production of each registered model, and the versions that scored
    windows in the last hour of scores (a pipeline that has not reloaded keeps its own).

    Args:
        reader: the warehouse.
        registry_dir: the local model registry.
        chain_id: the chain whose scores count; None: every chain.
    """
    from model.monitoring import SOURCE_OF_MODEL
    from model.registry import ModelRegistry, registered_model_names

    production = []
    for name in registered_model_names(registry_dir):
        version = ModelRegistry(registry_dir, name).aliases().production
        if version is not None:
            source = SOURCE_OF_MODEL.get(name, "chain")
            production.append({"model": name, "version": version, "source": source})
    on_chain = and_chain(chain_id)
    scoring = reader.rows(
        "SELECT source, model_version, COUNT(*) AS windows, "
        "epoch(MAX(window_end)) AS last_window_end FROM pool_score_history "
        f"WHERE window_end >= (SELECT max(window_end) FROM pool_scores WHERE TRUE{on_chain}) "
        f"- INTERVAL {IN_USE_S} SECOND{on_chain} GROUP BY source, model_version "
        "ORDER BY source, last_window_end DESC"
    )
    return {"production": production, "scoring": scoring}
