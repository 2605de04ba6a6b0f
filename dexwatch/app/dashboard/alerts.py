"""The alerts page's data: every alert thread, newest first, with what Slack shows of it and
the operators' verdict when there is one; filterable by chain, pool, kind and severity.

A thread is what the ``latest_anomalies`` view has of one alert_id (its pool anomalies,
chain windows and subgraph hours alike), joined by the market events of the same thread
(``market_events``: a market move or a depeg, several pools); verdicts come from the
``alert_verdicts`` view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from dexwatch.app.dashboard.chains import chain_id_of, chain_name
from dexwatch.app.dashboard.reader import (
    ADDRESS,
    BadRequest,
    DashboardReader,
    pool_names,
    sql_text,
)
from dexwatch.app.slack.messages import FEATURE_WORDS, VERDICT_WORDS
from dexwatch.core.schemas.alert import SEVERITY_RANK
from dexwatch.core.settings import Settings

SOURCE_WORDS = {"chain": "chain events", "subgraph": "subgraph hours", "market": "market view"}
MAX_THREADS = 500
_KIND = re.compile(r"[a-z][a-z0-9-]{0,40}")


@dataclass(frozen=True)
class Filters:
    chain_id: int | None = None
    pool: str | None = None
    kind: str | None = None
    severity: str | None = None
    limit: int = 200

    @classmethod
    def parse(cls, query: dict[str, str], settings: Settings) -> Filters:
        """The filters of a query string (``chain``: a chain's name or id); empty values are
        no filter. Raises BadRequest."""
        chain_id = chain_id_of(settings, query.get("chain"))
        pool = (query.get("pool") or "").lower() or None
        kind, severity = query.get("kind") or None, query.get("severity") or None
        try:
            limit = min(int(query.get("limit") or 200), MAX_THREADS)
        except ValueError:
            raise BadRequest("limit is a number") from None
        if pool is not None and not ADDRESS.fullmatch(pool):
            raise BadRequest(f"pool {pool!r} is not an address")
        if kind is not None and not _KIND.fullmatch(kind):
            raise BadRequest(f"no kind {kind!r}")
        if severity is not None and severity not in SEVERITY_RANK:
            raise BadRequest(f"severity is one of {', '.join(SEVERITY_RANK)}")
        return cls(chain_id, pool, kind, severity, max(limit, 1))

    def where(self) -> str:
        """The filters as a WHERE clause over threads (columns chain_id, pools, kinds,
        severity)."""
        tests = ["TRUE"]
        if self.chain_id is not None:
            tests.append(f"chain_id = {self.chain_id}")
        if self.pool is not None:
            tests.append(f"list_contains(pools, {sql_text(self.pool)})")
        if self.kind is not None:
            tests.append(f"list_contains(kinds, {sql_text(self.kind)})")
        if self.severity is not None:
            tests.append(f"severity = {sql_text(self.severity)}")
        return " AND ".join(tests)

    def keeps(self, thread: dict[str, Any]) -> bool:
        return (
            (self.chain_id is None or thread["chain_id"] == self.chain_id)
            and (self.pool is None or self.pool in thread["pools"])
            and (self.kind is None or self.kind in thread["kinds"])
            and (self.severity is None or thread["severity"] == self.severity)
        )


_THREADS = """
SELECT * FROM (
  SELECT
    alert_id,
    MIN(chain_id) AS chain_id,
    list(DISTINCT pool ORDER BY pool) AS pools,
    list(DISTINCT dex ORDER BY dex) AS dexes,
    list(DISTINCT kind ORDER BY kind) AS kinds,
    list(DISTINCT source ORDER BY source) AS sources,
    ANY_VALUE(thread_severity) AS severity,
    arg_min(kind, score) AS kind,
    MIN(score) AS worst_score,
    arg_max(score, window_end) AS latest_score,
    arg_min(top_features, score) AS top_features,
    epoch(MIN(thread_first_window_start)) AS first_window_start,
    epoch(MAX(thread_last_window_end)) AS last_window_end,
    COUNT(*) AS windows,
    epoch(MAX(scored_at)) AS updated_at
  FROM latest_anomalies
  GROUP BY alert_id
) AS thread
WHERE {where}
ORDER BY last_window_end DESC, alert_id
LIMIT {limit}
"""

_MARKET_THREADS = """
SELECT
  alert_id,
  MIN(chain_id) AS chain_id,
  ANY_VALUE(scope) AS scope,
  list(DISTINCT kind ORDER BY kind) AS kinds,
  arg_max(kind, window_end) AS kind,
  MAX(CASE severity WHEN 'high' THEN 2 WHEN 'medium' THEN 1 ELSE 0 END) AS severity_rank,
  arg_max(size, window_end) AS size,
  arg_max(pools, window_end) AS pools,
  arg_max(evidence, window_end) AS evidence,
  epoch(MIN(window_start)) AS first_window_start,
  epoch(MAX(window_end)) AS last_window_end,
  COUNT(*) AS windows
FROM market_events
GROUP BY alert_id
"""


def alert_threads(reader: DashboardReader, settings: Settings, filters: Filters) -> dict[str, Any]:
    """Args:
    reader: the warehouse.
    settings: names of pools.
    filters: what to keep.
    """
    threads = {
        row["alert_id"]: _pool_thread(row)
        for row in reader.rows(_THREADS.format(where=filters.where(), limit=filters.limit))
    }
    # A market event joins its thread; one whose pool anomalies the filters left out stays
    # out with them.
    filtered_out = set()
    if filters.where() != "TRUE":
        all_ids = {r["alert_id"] for r in reader.rows("SELECT DISTINCT alert_id FROM anomalies")}
        filtered_out = all_ids - threads.keys()
    for row in reader.rows(_MARKET_THREADS):
        if row["alert_id"] not in filtered_out:
            _join_market(threads, row)
    verdicts = {
        row["alert_id"]: row
        for row in reader.rows(
            "SELECT alert_id, verdict, verdict_by, epoch(verdict_at) AS verdict_at, clicks "
            "FROM alert_verdicts"
        )
    }
    kept = [t for t in threads.values() if filters.keeps(t)]
    kept.sort(key=lambda t: (-t["last_window_end"], t["alert_id"]))
    kept = kept[: filters.limit]
    for thread in kept:
        verdict = verdicts.get(thread["alert_id"])
        thread["feedback"] = verdict and {
            "verdict": verdict["verdict"],
            "words": VERDICT_WORDS.get(verdict["verdict"], verdict["verdict"]),
            "by": verdict["verdict_by"],
            "at": verdict["verdict_at"],
            "clicks": verdict["clicks"],
        }
    announced = reader.rows("SELECT pool, chain_id, dex, token0, token1, fee FROM pools")
    names = pool_names(settings, announced)
    for thread in kept:
        thread["chain"] = chain_name(settings, thread["chain_id"])
        thread["pool_names"] = [names.get((thread["chain_id"], p)) for p in thread["pools"]]
    return {
        "threads": kept,
        "options": _options(reader, threads.values(), names, filters.chain_id),
        "filters": {k: v for k, v in vars(filters).items() if v is not None},
    }


def _pool_thread(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: row[k] for k in (
            "alert_id", "chain_id", "pools", "dexes", "kinds", "kind", "severity",
            "worst_score", "latest_score", "first_window_start", "last_window_end", "windows",
            "updated_at")},
        "scope": "pool" if len(row["pools"]) == 1 else "pools",
        "sources": row["sources"],
        "source_words": [SOURCE_WORDS.get(s, s) for s in row["sources"]],
        "top_features": feature_words(row["top_features"]),
    }  # fmt: skip


def _join_market(threads: dict[str, dict[str, Any]], row: dict[str, Any]) -> None:
    """A market event's thread: on its own, or with the pool anomalies that joined it."""
    pools = sorted({p["pool"] for p in orjson.loads(row["pools"] or "[]")})
    evidence = [str(e) for e in orjson.loads(row["evidence"] or "[]")]
    severity = ("low", "medium", "high")[row["severity_rank"]]
    thread = threads.get(row["alert_id"])
    if thread is None:
        threads[row["alert_id"]] = {
            **{k: row[k] for k in ("alert_id", "chain_id", "kind", "kinds",
                                   "first_window_start", "last_window_end", "windows")},
            "pools": pools, "dexes": [], "severity": severity, "scope": row["scope"],
            "worst_score": None, "latest_score": None, "updated_at": row["last_window_end"],
            "sources": ["market"], "source_words": [SOURCE_WORDS["market"]],
            "top_features": evidence, "size": row["size"],
        }  # fmt: skip
        return
    thread["kinds"] = sorted({*thread["kinds"], *row["kinds"]})
    thread["pools"] = sorted({*thread["pools"], *pools})
    thread["sources"] = sorted({*thread["sources"], "market"})
    thread["source_words"] = [SOURCE_WORDS.get(s, s) for s in thread["sources"]]
    thread["scope"] = row["scope"]
    thread["top_features"] = evidence + thread["top_features"]
    if SEVERITY_RANK[severity] > SEVERITY_RANK[thread["severity"]]:
        thread["severity"] = severity
    thread["first_window_start"] = min(thread["first_window_start"], row["first_window_start"])
    thread["last_window_end"] = max(thread["last_window_end"], row["last_window_end"])


def feature_words(top_features: str | None) -> list[str]:
    """The top features of an anomaly (its JSON column) in words, as Slack puts them."""
    words = []
    for feature in orjson.loads(top_features or "[]"):
        name, value, deviation = feature["name"], feature["value"], feature.get("deviation", 0.0)
        side = "above" if deviation >= 0 else "below"
        words.append(
            f"{FEATURE_WORDS.get(name, name.replace('_', ' '))}: {value:.4g} "
            f"({abs(deviation):.1f} sd {side} usual)"
        )
    return words


def _options(
    reader: DashboardReader,
    threads: Any,
    names: dict[tuple[int, str], str],
    chain_id: int | None,
) -> dict[str, list[Any]]:
    """What the filters can choose from: every chain of any thread; the pools and kinds of
    any thread of the chain chosen (of every chain when none is)."""
    rows = reader.rows("SELECT DISTINCT chain_id, pool, kind FROM latest_anomalies")
    chains = {r["chain_id"] for r in rows} | {t["chain_id"] for t in threads}
    rows = [r for r in rows if chain_id in (None, r["chain_id"])]
    threads = [t for t in threads if chain_id in (None, t["chain_id"])]
    pools = {r["pool"]: names.get((r["chain_id"], r["pool"])) for r in rows}
    kinds = {r["kind"] for r in rows} | {k for t in threads for k in t["kinds"]}
    return {
        "chains": sorted(chains),
        "pools": [{"pool": p, "name": pools[p]} for p in sorted(pools)],
        "kinds": sorted(kinds),
        "severities": list(SEVERITY_RANK),
    }
