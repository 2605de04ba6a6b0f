"""Evaluating a detector on rows it did not train on: anomaly rates, and against labelled
incidents (recall per kind, precision, detection delay)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np

from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.schemas.labels import ALERT_KIND_OF_INCIDENT
from dexwatch.core.warehouse import WarehouseReader


@dataclasses.dataclass(frozen=True)
class LabelledIncident:
    label_id: str
    pool: str
    kind: str
    first_timestamp: datetime
    last_timestamp: datetime
    origin: str = "label"  # an injected incident's label; "feedback": operator-confirmed


@dataclasses.dataclass(frozen=True)
class ScoredRows:
    """Feature rows of one path with the pool and window each came from."""

    pools: np.ndarray  # object: pool address
    window_start: np.ndarray  # object: aware datetimes
    window_end: np.ndarray
    x: np.ndarray  # (rows, features)

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, mask: np.ndarray) -> ScoredRows:
        return ScoredRows(self.pools[mask], self.window_start[mask], self.window_end[mask],
                          self.x[mask])  # fmt: skip

    def overlapping(self, incidents: list[LabelledIncident], padding_s: float) -> np.ndarray:
        """Which rows' windows overlap an incident of their pool (widened by padding_s)."""
        hit = np.zeros(len(self), dtype=bool)
        for incident in incidents:
            hit |= self.overlapping_one(incident, padding_s)
        return hit

    def overlapping_one(self, incident: LabelledIncident, padding_s: float) -> np.ndarray:
        if len(self) == 0:
            return np.zeros(0, dtype=bool)
        starts = np.array([s.timestamp() for s in self.window_start])
        ends = np.array([e.timestamp() for e in self.window_end])
        first = incident.first_timestamp.timestamp() - padding_s
        last = incident.last_timestamp.timestamp() + padding_s
        return (self.pools == incident.pool) & (ends >= first) & (starts <= last)


@dataclasses.dataclass(frozen=True)
class IncidentOutcome:
    label_id: str
    pool: str
    kind: str
    detected: bool
    delay_s: float | None  # first flagged window's end after the incident's first block
    origin: str = "label"  # the LabelledIncident's


@dataclasses.dataclass(frozen=True)
class Evaluation:
    train_scores: np.ndarray
    held_out_scores: np.ndarray
    evaluated_scores: np.ndarray
    evaluated_flagged: np.ndarray
    train_anomaly_rate: float
    held_out_anomaly_rate: float
    incidents: list[IncidentOutcome]
    precision: float | None  # flagged evaluation rows that overlap an incident

    def recall_by_kind(self) -> dict[str, dict[str, Any]]:
        return outcomes_by_kind(self.incidents)

    @property
    def recall(self) -> float | None:
        if not self.incidents:
            return None
        return sum(o.detected for o in self.incidents) / len(self.incidents)

    def as_metrics(self) -> dict[str, Any]:
        """metadata.json's ``metrics``: numbers only, JSON-ready."""
        return {
            "train_rows": len(self.train_scores),
            "held_out_rows": len(self.held_out_scores),
            "train_anomaly_rate": self.train_anomaly_rate,
            "held_out_anomaly_rate": self.held_out_anomaly_rate,
            "held_out_score_quantiles": _quantiles(self.held_out_scores),
            "train_score_quantiles": _quantiles(self.train_scores),
            "incidents": len(self.incidents),
            "operator_confirmed_incidents": sum(o.origin == "feedback" for o in self.incidents),
            "recall": self.recall,
            "precision": self.precision,
            "recall_by_kind": self.recall_by_kind(),
        }


def _quantiles(scores: np.ndarray) -> dict[str, float] | None:
    if len(scores) == 0:
        return None
    q = np.quantile(scores, [0.01, 0.5, 0.99])
    return {"p01": float(q[0]), "p50": float(q[1]), "p99": float(q[2])}


def _rate(scores: np.ndarray) -> float:
    return float((scores < 0).mean()) if len(scores) else 0.0


def evaluate(
    detector: Detector,
    train: Any,
    held_out: Any,
    evaluated: Any,
    incidents: list[LabelledIncident],
    padding_s: float = 300.0,
) -> Evaluation:
    """Scores every slice; an incident counts as detected when one of its pool's evaluation
    windows overlapping it (padded, as in training) is flagged."""

    def scores(rows: ScoredRows) -> np.ndarray:
        return detector.anomaly_score(rows.x) if len(rows) else np.zeros(0)

    train_scores, held_out_scores, evaluated_scores = (
        scores(train),
        scores(held_out),
        scores(evaluated),
    )
    flagged = evaluated_scores < 0
    outcomes = []
    in_any = np.zeros(len(evaluated), dtype=bool)
    for incident in incidents:
        overlap = evaluated.overlapping_one(incident, padding_s)
        if not overlap.any():
            continue  # the incident falls in the training slice: it says nothing here
        in_any |= overlap
        hits = overlap & flagged
        delay = None
        if hits.any():
            first_end = min(e for e, hit in zip(evaluated.window_end, hits, strict=True) if hit)
            delay = max(0.0, (first_end - incident.first_timestamp).total_seconds())
        outcomes.append(
            IncidentOutcome(
                incident.label_id,
                incident.pool,
                incident.kind,
                bool(hits.any()),
                delay,
                incident.origin,
            )
        )
    precision = float((flagged & in_any).sum() / flagged.sum()) if flagged.any() else None
    return Evaluation(
        train_scores=train_scores,
        held_out_scores=held_out_scores,
        evaluated_scores=evaluated_scores,
        evaluated_flagged=flagged,
        train_anomaly_rate=_rate(train_scores),
        held_out_anomaly_rate=_rate(held_out_scores),
        incidents=outcomes,
        precision=precision if incidents else None,
    )


def top_feature_counts(detector: Detector, rows: ScoredRows) -> Counter[str]:
    """How often each feature is the top one among the flagged rows."""
    if len(rows) == 0:
        return Counter()
    scored = detector.score(rows.x)
    return Counter(
        top[0].name
        for top, flagged in zip(scored.top_features, scored.is_anomaly, strict=True)
        if flagged and top
    )


# --- alerts against injected incidents ------------------------------------------------------

WEEK_S = 7 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class AlertThread:
    pool: str
    start: float  # epoch seconds: the first flagged window's start
    end: float  # the last flagged window's end


def opened_threads(warehouse: WarehouseReader) -> list[AlertThread]:
    """The chain alert threads a pipeline opened, from a local (DuckDB) warehouse's anomalies
    and market_events tables (none when neither was written). A thread's pool is its pool,
    or for the market view's threads their scope: ``market``, ``asset:<address>``."""
    spans: dict[str, list] = {}  # alert_id: [place, start, end]
    parts = []
    if _has_table(warehouse, "anomalies"):
        parts.append(
            "select alert_id, pool, min(epoch(window_start)), max(epoch(window_end)) from "
            "anomalies where source = 'chain' and alert_id <> '' group by alert_id, pool"
        )
    if _has_table(warehouse, "market_events"):
        parts.append(
            "select alert_id, scope, min(epoch(window_end)) - 60, max(epoch(window_end)) from "
            "market_events group by alert_id, scope"
        )
    for sql in parts:
        for alert_id, place, start, end in warehouse.query(sql).rows:
            place = _market_scope(alert_id) or place.removeprefix("pool:")
            held = spans.setdefault(alert_id, [place, start, end])
            held[1], held[2] = min(held[1], start), max(held[2], end)
    return [AlertThread(place, start, end) for place, start, end in spans.values()]


def _market_scope(alert_id: str) -> str | None:
    """``market`` or ``asset:<address>`` for the market view's multi-pool threads
    (chain_id:scope:window_end), else None."""
    middle = alert_id.split(":", 1)[-1].rsplit(":", 1)[0]
    return middle if middle == "market" or middle.startswith("asset:") else None


def market_windows(warehouse: WarehouseReader) -> dict[str, np.ndarray]:
    """The market view's findings as flagged one-minute windows of their scope (``market``,
    ``asset:<address>``, or the pool), with their kind and a score of minus their size: to
    append to ``chain_windows``' pool, start, end, is_anomaly, score and kind."""
    rows = (
        warehouse.query(
            "select scope, epoch(window_end), size, kind from market_events order by window_end"
        ).rows
        if _has_table(warehouse, "market_events")
        else []
    )
    return {
        "pool": np.array([scope.removeprefix("pool:") for scope, *_ in rows], dtype=object),
        "start": np.array([end - 60 for _, end, _, _ in rows], dtype=float),
        "end": np.array([end for _, end, _, _ in rows], dtype=float),
        "is_anomaly": np.ones(len(rows)),
        "score": np.array([-abs(size) for _, _, size, _ in rows], dtype=float),
        "kind": np.array([kind for *_, kind in rows], dtype=object),
    }


def _has_anomalies(warehouse: WarehouseReader) -> bool:
    """Whether the pipeline wrote an anomaly (the table is created with its first row)."""
    return _has_table(warehouse, "anomalies")


def _has_table(warehouse: WarehouseReader, table: str) -> bool:
    exists = f"select 1 from information_schema.tables where table_name = '{table}'"
    return bool(warehouse.query(exists).rows)


def chain_windows(warehouse: WarehouseReader) -> dict[str, np.ndarray]:
    """A local (DuckDB) warehouse's scored chain windows as columns, in window-end order:
    pool, start, end (epoch seconds), is_anomaly, score, kind (the anomaly's, '' for a
    normal window) and every feature."""
    anomalies = _has_anomalies(warehouse)
    rows = warehouse.query(
        "select s.pool, epoch(s.window_start), epoch(s.window_end), s.is_anomaly, s.score, "
        + ("coalesce(a.kind, '')" if anomalies else "''")
        + "".join(f", s.{name}" for name in FEATURE_NAMES)
        + " from pool_scores s"
        + (" left join anomalies a using (window_id)" if anomalies else "")
        + " where s.source = 'chain' order by s.window_end"
    ).rows
    keys = ["pool", "start", "end", "is_anomaly", "score", "kind", *FEATURE_NAMES]
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(keys)
    return {
        key: np.array(values, dtype=object if key in ("pool", "kind") else float)
        for key, values in zip(keys, columns, strict=True)
    }


def alert_threads(
    pools: np.ndarray, starts: np.ndarray, ends: np.ndarray, flagged: np.ndarray, cooldown_s: float
) -> list[AlertThread]:
    """Flagged windows grouped into alerts as the pipeline threads them (pipeline
    .alert_cooldown_s): in window order, a flagged window that ends within ``cooldown_s`` of
    its pool's open thread joins it, otherwise it opens a new thread (a new alert)."""
    threads: list[AlertThread] = []
    open_by_pool: dict[str, int] = {}
    order = np.lexsort((ends, pools))  # by pool, then window end
    for i in order[flagged[order]]:
        pool, start, end = str(pools[i]), float(starts[i]), float(ends[i])
        index = open_by_pool.get(pool)
        if index is not None and end <= threads[index].end + cooldown_s:
            held = threads[index]
            threads[index] = AlertThread(pool, held.start, max(held.end, end))
        else:
            open_by_pool[pool] = len(threads)
            threads.append(AlertThread(pool, start, end))
    return threads


@dataclasses.dataclass(frozen=True)
class IncidentDetection:
    """How one detector's flags fare against injected incidents, per incident and per alert."""

    outcomes: list[IncidentOutcome]
    threads: int
    false_alerts: list[AlertThread]
    pool_weeks: float
    # (the alert kind the incident should raise, the kind raised) of each detected incident
    # whose windows' kinds are known: the kind of its most anomalous window.
    kinds: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def false_threads(self) -> int:
        return len(self.false_alerts)

    @property
    def recall(self) -> float | None:
        return _share(sum(o.detected for o in self.outcomes), len(self.outcomes))

    @property
    def precision(self) -> float | None:
        return _share(self.threads - self.false_threads, self.threads)

    @property
    def false_alerts_per_pool_week(self) -> float | None:
        return self.false_threads / self.pool_weeks if self.pool_weeks else None

    @property
    def median_delay_s(self) -> float | None:
        delays = [o.delay_s for o in self.outcomes if o.delay_s is not None]
        return float(np.median(delays)) if delays else None

    @property
    def kind_accuracy(self) -> float | None:
        """The share of detected incidents whose kind, at their most anomalous window, is
        the one they should raise."""
        return _share(sum(expected == found for expected, found in self.kinds), len(self.kinds))

    def by_kind(self) -> dict[str, dict[str, Any]]:
        return outcomes_by_kind(self.outcomes)


def outcomes_by_kind(outcomes: list[IncidentOutcome]) -> dict[str, dict[str, Any]]:
    """Per incident kind: incidents, detected, recall, median detection delay."""
    kinds: dict[str, list[IncidentOutcome]] = {}
    for outcome in outcomes:
        kinds.setdefault(outcome.kind, []).append(outcome)
    summary = {}
    for kind, group in sorted(kinds.items()):
        delays = [o.delay_s for o in group if o.delay_s is not None]
        detected = sum(o.detected for o in group)
        summary[kind] = {
            "incidents": len(group),
            "detected": detected,
            "recall": detected / len(group),
            "median_delay_s": float(np.median(delays)) if delays else None,
        }
    return summary


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def incident_detection(
    pools: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    flagged: np.ndarray,
    incidents: list[LabelledIncident],
    after_s: float,
    cooldown_s: float,
    threads: list[AlertThread] | None = None,
    scores: np.ndarray | None = None,
    kinds: np.ndarray | None = None,
) -> IncidentDetection:
    """Score one detector's flags over windows (epoch-second ``starts``/``ends`` per pool)
    against incidents.

    An incident is detected by a flagged window of its pool that ends after its first block
    and starts no later than ``after_s`` after its last (a window that holds part of it);
    the delay is the first such window's end after the first block (event time). An alert
    thread (``alert_threads``) is true when it overlaps that same span of an incident of its
    pool, false otherwise: aftermath alerts beyond the cooldown count as false. Observed
    time is each pool's span of scored windows.

    Args:
        threads: the alert threads the pipeline itself opened (from its anomalies table);
            default: the flags threaded by ``alert_threads``, for a detector the pipeline did
            not run (the rules).
        scores, kinds: each window's score and alert kind (``chain_windows``), if known:
            a detected incident's kind is its most anomalous flagged window's
            (``IncidentDetection.kinds``).
    """
    outcomes, found_kinds = [], []
    for incident in incidents:
        first = incident.first_timestamp.timestamp()
        last = incident.last_timestamp.timestamp() + after_s
        holds = (pools == incident.pool) & (ends > first) & (starts <= last)
        hits = holds & flagged
        delay = float(ends[hits].min() - first) if hits.any() else None
        if hits.any() and scores is not None and kinds is not None:
            worst = np.flatnonzero(hits)[np.argmin(scores[hits])]
            if kinds[worst]:
                found_kinds.append((ALERT_KIND_OF_INCIDENT[incident.kind], str(kinds[worst])))
        outcomes.append(
            IncidentOutcome(
                incident.label_id, incident.pool, incident.kind, bool(hits.any()), delay
            )  # fmt: skip
        )
    if threads is None:
        threads = alert_threads(pools, starts, ends, flagged, cooldown_s)
    spans = [
        (i.pool, i.first_timestamp.timestamp(), i.last_timestamp.timestamp() + after_s)
        for i in incidents
    ]
    false_alerts = [
        thread
        for thread in threads
        if not any(
            thread.pool == pool and thread.end > first and thread.start <= last
            for pool, first, last in spans
        )
    ]
    # Pool-weeks of pools only: the market's and assets' findings watch no time of their own.
    observed = sum(
        float(ends[pools == pool].max() - starts[pools == pool].min())
        for pool in set(pools)
        if not str(pool).startswith(("market", "asset:"))
    )
    return IncidentDetection(outcomes, len(threads), false_alerts, observed / WEEK_S, found_kinds)
