"""What operators said of alerts (the Slack buttons' ``alert_feedback`` rows), in a training run.

An alert's verdict is its latest *decisive* click (by ``clicked_at``): ``confirmed`` or
``not-incident``; a later decisive click changes the verdict, whoever clicks. ``acknowledged``
only says someone is looking, not whether it was an incident: it never overrides a decisive
click, and an alert with acknowledgements only has no verdict (counted, otherwise unused).

- Confirmed alerts become labelled incidents (origin ``feedback``), one per pool of the
  thread, spanning that pool's windows in the thread (``anomalies`` rows with the alert's
  ``alert_id``): the trained path's windows when it has some, else the other path's, else
  the feedback row's window span (pools the thread holds no window of, as a market or asset
  alert's). They count in evaluation and are kept out of training like injected labels; one
  that overlaps an injected label of its pool is that label's incident, not another.
- Not-incident alerts are false alerts: their windows of the trained path (``pool_scores``
  features by window_id; for pools the thread holds no window of, the path's rows of the
  pool within the feedback's window span) are scored by the new version, for the report.

A run reads the alerts in its data window: by their clicks' window span, or by their
thread's windows when no clicked message carried the alert's metadata (its columns empty).
The SQL is plain enough for BigQuery too (bare table names: the reader sets the dataset).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from dexwatch.core.schemas.tables import ALERT_FEEDBACK, ANOMALIES, POOL_SCORES
from model.evaluation import Evaluation, LabelledIncident, ScoredRows
from model.warehouse_sql import rows_if_tables_exist, sql_time, utc

if TYPE_CHECKING:
    from dexwatch.core.detector import Detector
    from model.train_run import PathSpec

FEEDBACK = "feedback"  # LabelledIncident.origin of an operator-confirmed incident
CONFIRMED, NOT_INCIDENT, ACKNOWLEDGED = "confirmed", "not-incident", "acknowledged"
DECISIVE = (CONFIRMED, NOT_INCIDENT)
_SAFE_LITERAL = re.compile(r"^[0-9A-Za-z_.:-]+$")  # pool addresses, put in SQL as literals


@dataclasses.dataclass(frozen=True)
class AlertVerdict:
    """One alert's clicks, resolved: its verdict (``acknowledged``: none given)."""

    alert_id: str
    verdict: str
    kind: str  # the alert's kind at its latest clicked revision ("" if no click said)
    scope: str
    pools: tuple[str, ...]
    # The clicks' span of the thread; None when no clicked message carried the alert's metadata.
    window_start: datetime | None
    window_end: datetime | None
    decided_by: str  # who clicked the deciding button (or the latest one)
    clicks: int


@dataclasses.dataclass(frozen=True)
class ThreadWindow:
    """A window of an alert's thread (an ``anomalies`` row) or, for pools the thread holds
    none of, a path row within the alert's span; ``x`` is None when a feature is missing."""

    alert_id: str
    window_id: str
    pool: str
    source: str
    window_start: datetime
    window_end: datetime
    production_score: float | None  # as scored when alerted (or, span rows, in pool_scores)
    production_version: str | None
    kind: str  # the anomalies row's ("" for a span row)
    x: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class Feedback:
    """The feedback on alerts in a run's data window, read for one path."""

    clicks: dict[str, int]  # feedback rows by verdict
    alerts: list[AlertVerdict]
    incidents: list[LabelledIncident]  # of the confirmed alerts, one per pool
    not_incident_windows: list[ThreadWindow]  # of the trained path only

    def new_incidents(self, labels: list[LabelledIncident]) -> list[LabelledIncident]:
        """The confirmed incidents that are not already an injected label of their pool."""
        return [i for i in self.incidents if not any(_overlap(i, label) for label in labels)]


@dataclasses.dataclass(frozen=True)
class ConfirmedAlert:
    alert_id: str
    kind: str
    pools: tuple[str, ...]
    decided_by: str
    caught: bool | None  # by the new version; None: no evaluation window of this path


@dataclasses.dataclass(frozen=True)
class FalseAlertWindow:
    alert_id: str
    window_id: str
    pool: str
    window_start: datetime
    window_end: datetime
    production_score: float | None
    production_version: str | None
    new_score: float | None  # None: a feature is missing, not scored
    trained_on: bool  # the window is one of the new version's training rows

    @property
    def new_flags(self) -> bool | None:
        return None if self.new_score is None else self.new_score < 0


@dataclasses.dataclass(frozen=True)
class FeedbackReview:
    """What the run's report and metadata show of the operators' feedback."""

    clicks: dict[str, int]
    alerts: dict[str, int]  # alerts by verdict (acknowledged: no verdict given)
    confirmed: list[ConfirmedAlert]
    false_alert_windows: list[FalseAlertWindow]

    @property
    def given(self) -> bool:
        return bool(self.clicks)

    @property
    def still_flagged(self) -> int:
        return sum(bool(w.new_flags) for w in self.false_alert_windows)

    @property
    def scored(self) -> int:
        return sum(w.new_score is not None for w in self.false_alert_windows)

    def summary(self) -> str:
        """A sentence on the windows operators marked not an incident."""
        if not self.alerts.get(NOT_INCIDENT):
            return "No alert in the data window was marked not an incident."
        if not self.false_alert_windows:
            return (
                f"The {self.alerts[NOT_INCIDENT]} alerts marked not an incident hold no window "
                "of this path."
            )
        unscored = len(self.false_alert_windows) - self.scored
        return (
            f"The new version still flags {self.still_flagged} of {self.scored} windows "
            "operators marked not an incident"
            + (f" ({unscored} more lack features and were not scored)" if unscored else "")
            + "."
        )

    def as_metrics(self) -> dict[str, Any]:
        """metadata.json's ``feedback``: JSON-ready."""
        return {
            "clicks": dict(self.clicks),
            "alerts": dict(self.alerts),
            "confirmed": [dataclasses.asdict(c) for c in self.confirmed],
            "confirmed_caught": sum(bool(c.caught) for c in self.confirmed),
            "not_incident_windows": len(self.false_alert_windows),
            "not_incident_scored": self.scored,
            "not_incident_still_flagged": self.still_flagged,
            "not_incident": [
                {
                    **dataclasses.asdict(w),
                    "window_start": w.window_start.isoformat(),
                    "window_end": w.window_end.isoformat(),
                    "new_flags": w.new_flags,
                }
                for w in self.false_alert_windows
            ],
        }


def resolve_verdicts(rows: list[dict[str, Any]]) -> list[AlertVerdict]:
    """Each alert's verdict from its feedback rows (the module's rule), in alert order. The
    alert's columns (kind, scope, pools, span) are the clicks' that carry them."""
    by_alert: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r["clicked_at"], r["feedback_id"])):
        by_alert.setdefault(row["alert_id"], []).append(row)
    verdicts = []
    for alert_id, clicks in sorted(by_alert.items()):
        decisive = [c for c in clicks if c["verdict"] in DECISIVE]
        deciding = decisive[-1] if decisive else clicks[-1]
        starts = [c["window_start"] for c in clicks if c["window_start"] is not None]
        ends = [c["window_end"] for c in clicks if c["window_end"] is not None]
        verdicts.append(
            AlertVerdict(
                alert_id=alert_id,
                verdict=deciding["verdict"] if decisive else ACKNOWLEDGED,
                kind=next((c["kind"] for c in reversed(clicks) if c["kind"]), ""),
                scope=next((c["scope"] for c in reversed(clicks) if c["scope"]), ""),
                pools=tuple(dict.fromkeys(p for c in clicks for p in c["pools"])),
                window_start=min(starts, default=None),
                window_end=max(ends, default=None),
                decided_by=deciding["user_name"] or deciding["user_id"],
                clicks=len(clicks),
            )
        )
    return verdicts


def read_feedback(warehouse: Any, spec: PathSpec, start: datetime, end: datetime) -> Feedback:
    """The feedback on alerts in [start, end) (their clicks' span, or their thread's windows
    when no click carried the span), for ``spec``'s path; none when the ``alert_feedback``
    table does not exist yet."""
    overlap = f"window_end >= {sql_time(start)} and window_start < {sql_time(end)}"
    select = (
        "select feedback_id, alert_id, verdict, user_id, user_name, scope, pools, kind, "
        f"window_start, window_end, clicked_at from {ALERT_FEEDBACK.name} where alert_id in "
    )
    rows = {
        row[0]: row
        for table in (ALERT_FEEDBACK.name, ANOMALIES.name)  # each may not exist yet
        for row in rows_if_tables_exist(
            warehouse, f"{select}(select alert_id from {table} where {overlap})"
        )
    }
    clicks = [
        {
            "feedback_id": r[0], "alert_id": r[1], "verdict": r[2], "user_id": r[3],
            "user_name": r[4], "scope": r[5], "pools": _pools(r[6]), "kind": r[7],
            "window_start": _time(r[8]), "window_end": _time(r[9]), "clicked_at": _time(r[10]),
        }
        for r in rows.values()
    ]  # fmt: skip
    alerts = resolve_verdicts(clicks)
    decided = [a.alert_id for a in alerts if a.verdict in DECISIVE]
    threads: dict[str, list[ThreadWindow]] = {}
    for window in _thread_windows(warehouse, spec, decided):
        threads.setdefault(window.alert_id, []).append(window)

    incidents = []
    for alert in (a for a in alerts if a.verdict == CONFIRMED):
        mine = threads.get(alert.alert_id, [])
        # The clicks' kind, else the thread's most anomalous window's.
        worst = min(mine, key=lambda w: w.production_score or 0.0, default=None)
        kind = alert.kind or (worst.kind if worst else "") or "unknown"
        for pool in dict.fromkeys([*alert.pools, *(w.pool for w in mine)]):
            of_pool = [w for w in mine if w.pool == pool]
            chosen = [w for w in of_pool if w.source == spec.source] or of_pool
            first = min((w.window_start for w in chosen), default=alert.window_start)
            last = max((w.window_end for w in chosen), default=alert.window_end)
            if first is not None and last is not None:
                incidents.append(
                    LabelledIncident(alert.alert_id, pool, kind, first, last, origin=FEEDBACK)
                )

    windows, spans = [], []
    for alert in (a for a in alerts if a.verdict == NOT_INCIDENT):
        mine = threads.get(alert.alert_id, [])
        windows += [w for w in mine if w.source == spec.source]
        held = {w.pool for w in mine}
        if alert.window_start is not None and alert.window_end is not None:
            spans += [
                (alert.alert_id, pool, alert.window_start, alert.window_end)
                for pool in alert.pools
                if pool not in held
            ]
    windows += _span_windows(warehouse, spec, spans)
    return Feedback(dict(Counter(c["verdict"] for c in clicks)), alerts, incidents, windows)


def review_feedback(
    feedback: Feedback,
    incidents: list[LabelledIncident],
    evaluation: Evaluation,
    detector: Detector,
    train: ScoredRows,
) -> FeedbackReview:
    """The feedback against the new version: confirmed alerts caught (by the evaluation of
    their incidents, or of the injected labels they matched), not-incident windows scored."""
    outcomes = {(o.label_id, o.pool): o.detected for o in evaluation.incidents}
    confirmed = []
    for alert in (a for a in feedback.alerts if a.verdict == CONFIRMED):
        found = [
            outcomes[(i.label_id, i.pool)]
            for mine in feedback.incidents
            if mine.label_id == alert.alert_id
            for i in incidents
            if (i == mine or (i.origin != FEEDBACK and _overlap(mine, i)))
            and (i.label_id, i.pool) in outcomes
        ]
        pools = tuple(i.pool for i in feedback.incidents if i.label_id == alert.alert_id)
        caught = any(found) if found else None
        confirmed.append(
            ConfirmedAlert(alert.alert_id, alert.kind, pools, alert.decided_by, caught)
        )

    windows = feedback.not_incident_windows
    scorable = np.array([w.x for w in windows if w.x is not None])
    new_scores = iter(detector.anomaly_score(scorable) if len(scorable) else [])
    trained = {(p, e.timestamp()) for p, e in zip(train.pools, train.window_end, strict=True)}
    reviewed = [
        FalseAlertWindow(
            w.alert_id,
            w.window_id,
            w.pool,
            w.window_start,
            w.window_end,
            w.production_score,
            w.production_version,
            None if w.x is None else float(next(new_scores)),
            (w.pool, w.window_end.timestamp()) in trained,
        )
        for w in windows
    ]
    return FeedbackReview(
        clicks=feedback.clicks,
        alerts=dict(Counter(a.verdict for a in feedback.alerts)),
        confirmed=confirmed,
        false_alert_windows=reviewed,
    )


def _overlap(a: LabelledIncident, b: LabelledIncident) -> bool:
    return (
        a.pool == b.pool
        and a.first_timestamp <= b.last_timestamp
        and b.first_timestamp <= a.last_timestamp
    )


def _thread_windows(warehouse: Any, spec: PathSpec, alert_ids: list[str]) -> list[ThreadWindow]:
    """Every ``anomalies`` row of the alerts, with the path's features from ``pool_scores``
    (the anomaly row's own when it has none)."""
    listed = ", ".join(f"'{a}'" for a in alert_ids if _SAFE_LITERAL.match(a))
    if not listed:
        return []
    features = ", ".join(f"coalesce(s.{name}, a.{name})" for name in spec.feature_names)
    rows = rows_if_tables_exist(
        warehouse,
        "select a.alert_id, a.window_id, a.pool, a.source, a.window_start, a.window_end, "
        f"a.score, a.model_version, a.kind, {features} from {ANOMALIES.name} a "
        f"left join {POOL_SCORES.name} s on s.window_id = a.window_id "
        f"where a.alert_id in ({listed}) order by a.window_end, a.pool",
    )
    return [_window(r[0], r[1:], spec) for r in rows]


def _span_windows(
    warehouse: Any, spec: PathSpec, spans: list[tuple[str, str, datetime, datetime]]
) -> list[ThreadWindow]:
    """The path's rows of each (alert, pool, first, last) within [first, last]."""
    spans = [span for span in spans if _SAFE_LITERAL.match(span[1])]
    if not spans:
        return []
    within = " or ".join(
        f"(pool = '{pool}' and window_start >= {sql_time(first)} "
        f"and window_end <= {sql_time(last)})"
        for _, pool, first, last in spans
    )
    rows = rows_if_tables_exist(
        warehouse,
        "select window_id, pool, source, window_start, window_end, score, model_version, '', "
        f"{', '.join(spec.feature_names)} from {POOL_SCORES.name} "
        f"where source = '{spec.source}' and ({within}) order by window_end, pool",
    )
    return [
        window
        for alert_id, pool, first, last in spans
        for window in (_window(alert_id, row, spec) for row in rows if row[1] == pool)
        if first <= window.window_start and window.window_end <= last
    ]


def _window(alert_id: str, row: tuple[Any, ...], spec: PathSpec) -> ThreadWindow:
    window_id, pool, source, window_start, window_end, score, version, kind, *x = row
    complete = source == spec.source and all(v is not None for v in x)
    return ThreadWindow(
        alert_id, window_id, pool, source, utc(window_start), utc(window_end),
        None if score is None else float(score), version, kind or "",
        np.array(x, dtype=np.float64) if complete else None,
    )  # fmt: skip


def _time(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def _pools(value: Any) -> list[str]:
    """The pool addresses of a ``pools`` JSON value ([{dex, pool}]; a string from DuckDB)."""
    if isinstance(value, str | bytes):
        value = orjson.loads(value)
    return [p["pool"] if isinstance(p, dict) else str(p) for p in value or []]
