"""The overview page's data: every followed pool with its latest score, a sparkline of its
scores, its anomalies today and its lag; the model versions in use.

Read from the views where they answer (``pool_score_history``, ``anomalies_per_pool_day``),
so a Looker Studio report over the same views shows the same numbers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dexwatch.app.dashboard.reader import DashboardReader, pool_names
from dexwatch.core.settings import Settings

# Scored windows a sparkline shows, newest last.
SPARK_WINDOWS = 60
# Versions "in use": those that scored a window in the last hour before the newest one.
IN_USE_S = 3600
SEVERITIES = ("low", "medium", "high")


def overview(reader: DashboardReader, settings: Settings) -> dict[str, Any]:
    """Args:
    reader: the warehouse.
    settings: names of pools, the model registry.
    """
    announced = reader.rows("SELECT pool, chain_id, dex, token0, token1, fee FROM pools")
    latest = reader.rows(
        "SELECT pool, chain_id, dex, source, epoch(window_end) AS window_end, score, "
        "is_anomaly, model_version FROM ("
        "  SELECT *, ROW_NUMBER() OVER (PARTITION BY pool ORDER BY window_end DESC, source)"
        "    AS newest FROM pool_score_history"
        ") AS scored WHERE newest = 1"
    )
    # The sparkline: the newest windows of the pool's busiest source (chain windows; a pool
    # the subgraph path alone scores shows its hours).
    spark = reader.rows(
        "SELECT pool, source, score FROM ("
        "  SELECT pool, source, window_end, score, ROW_NUMBER() OVER ("
        "    PARTITION BY pool, source ORDER BY window_end DESC) AS newest"
        "  FROM pool_score_history"
        "  WHERE window_end >= (SELECT max(window_end) FROM pool_scores) - INTERVAL 1 DAY"
        f") AS recent WHERE newest <= {SPARK_WINDOWS} ORDER BY pool, source, window_end"
    )
    today = reader.rows(
        "SELECT pool, SUM(anomalies) AS anomalies, MAX(CASE max_severity WHEN 'high' THEN 2 "
        "WHEN 'medium' THEN 1 ELSE 0 END) AS severity_rank FROM anomalies_per_pool_day "
        "WHERE day = CAST(CURRENT_TIMESTAMP AS DATE) GROUP BY pool"
    )
    now = time.time()
    sparks: dict[str, dict[str, list[float]]] = {}
    for row in spark:
        sparks.setdefault(row["pool"], {}).setdefault(row["source"], []).append(row["score"])
    latest_of = {row["pool"]: row for row in latest}
    today_of = {row["pool"]: row for row in today}
    # Followed pools: those announced, and any the subgraph path scores without one.
    pools = {row["pool"]: row for row in announced}
    for row in latest:
        pools.setdefault(row["pool"], {**row, "token0": None, "token1": None, "fee": None})
    names = pool_names(settings, list(pools.values()))
    listed = []
    for address, row in pools.items():
        last = latest_of.get(address)
        by_source = sparks.get(address, {})
        source = "chain" if "chain" in by_source else next(iter(by_source), None)
        counted = today_of.get(address)
        listed.append(
            {
                "pool": address,
                "name": names.get(address),
                "chain_id": row["chain_id"],
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
    listed.sort(key=lambda p: (-p["anomalies_today"], p["name"] or p["pool"]))
    return {"now": now, "pools": listed, "models": model_versions(reader, settings.registry_dir)}


def model_versions(reader: DashboardReader, registry_dir: Path) -> dict[str, Any]:
    """The version in production of each registered model, and the versions that scored
    windows in the last hour of scores (a pipeline that has not reloaded keeps its own).

    Args:
        reader: the warehouse.
        registry_dir: the local model registry.
    """
    from model.monitoring import SOURCE_OF_MODEL
    from model.registry import ModelRegistry, registered_model_names

    production = []
    for name in registered_model_names(registry_dir):
        version = ModelRegistry(registry_dir, name).aliases().production
        if version is not None:
            source = SOURCE_OF_MODEL.get(name, "chain")
            production.append({"model": name, "version": version, "source": source})
    scoring = reader.rows(
        "SELECT source, model_version, COUNT(*) AS windows, "
        "epoch(MAX(window_end)) AS last_window_end FROM pool_score_history "
        "WHERE window_end >= (SELECT max(window_end) FROM pool_scores) "
        f"- INTERVAL {IN_USE_S} SECOND GROUP BY source, model_version "
        "ORDER BY source, last_window_end DESC"
    )
    return {"production": production, "scoring": scoring}
