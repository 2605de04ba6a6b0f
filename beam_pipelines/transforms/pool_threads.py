"""One pool's alert threads (``AlertThreads``): which of its anomalies are one incident, and
which revisions to publish; ``transforms.threads`` threads a chain's pools and the market's
findings with them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import orjson

from dexwatch.core.features.chain import HORIZON_OF_FEATURE
from dexwatch.core.features.kinds import Classification, by_top_feature, classify
from dexwatch.core.schemas.alert import SEVERITY_RANK, Alert, PoolRef, TopFeature

__all__ = ["DRAINS", "AlertThreads", "PoolThread", "classification_of", "top_features_of"]


def top_features_of(row: dict) -> list[TopFeature]:
    return [TopFeature(**t) for t in orjson.loads(row["top_features"])]


def classification_of(row: dict, top: list[TopFeature]) -> Classification:
    """A scored row's kind, confidence, severity and evidence."""
    if row["source"] == "chain":
        return classify(row, top, row["score"])
    return by_top_feature(top, row["score"])


@dataclasses.dataclass
class PoolThread:
    """An alert thread of one pool: its id, span (unix s) and what it has said so far."""

    alert_id: str
    start: int
    end: int
    revision: int = 0
    severity: int = 0  # the highest SEVERITY_RANK published
    kinds: frozenset[str] = frozenset()
    # How long after its end it takes a pool's anomalies: the horizon of the slow views that
    # flagged it (HORIZON_OF_FEATURE), else the cooldown.
    reach_s: int = 0


# Kinds whose pool's remains are the incident's aftermath (kept in its thread).
DRAINS = frozenset({"liquidity-drain", "rug-pull"})


class AlertThreads:
    """One pool's alert threads, both sources together: an anomaly joins the latest recent
    thread it overlaps or comes within ``cooldown_s`` of event time of (before its start or
    after its end); otherwise it opens a thread of its own, and an alert. A chain window is
    shorter than the cooldown, so in order only the cooldown decides between chain windows;
    an hourly row overlaps the chain windows of its hour and touches the previous hour, so
    an incident both paths flag, or a run of anomalous hours, is one thread, while an hour
    an hour late still finds the thread of its own time.

    An anomaly that joins a thread with a kind the thread has not shown, or a higher
    severity than it has published, escalates it: the thread's next revision is published,
    so a real incident is never swallowed by an earlier alert of the same pool.

    A thread that has shown a liquidity drain takes every later anomaly of its pool while
    it is kept (``KEEP_S``): a drained pool's remains get one alert, not a stream. A thread
    with a window flagged chiefly for a slow view (its top feature measures an hour or a day:
    ``HORIZON_OF_FEATURE``) takes the pool's anomalies for that long after its end: a drift
    that crosses its limit, falls back and crosses again within its hour is one incident.

    Args:
        cooldown_s: how near in event time an anomaly must come to join a thread.
        threads: the pool's threads so far (from state), if any.
    """

    # Threads this much older than the pool's newest are forgotten: beyond any lateness.
    KEEP_S = 2 * 86400

    def __init__(self, cooldown_s: int, threads: list[PoolThread] | None = None) -> None:
        self._cooldown_s = cooldown_s
        self.threads: list[PoolThread] = threads or []

    def add(self, row: dict, found: Classification | None = None) -> tuple[dict, Alert | None]:
        """The anomaly row with its severity, kind and thread, and the alert to publish if
        it opens or escalates a thread (``found``: the row's classification, if made)."""
        start, end = int(row["window_start"].timestamp()), int(row["window_end"].timestamp())
        top = top_features_of(row)
        found = found or classification_of(row, top)
        kind, severity = found.kind, found.severity
        thread = self._thread_of(start, end)
        publish = thread is None
        if thread is None:
            thread = PoolThread(f"{row['chain_id']}:{row['pool']}:{end}", start, end)
            self.threads.append(thread)
        else:
            thread.start, thread.end = min(thread.start, start), max(thread.end, end)
            if kind not in thread.kinds or SEVERITY_RANK[severity] > thread.severity:
                thread.revision += 1
                publish = True
        if top:
            thread.reach_s = max(thread.reach_s, HORIZON_OF_FEATURE.get(top[0].name, 0))
        if publish:
            thread.kinds |= {kind}
            thread.severity = max(thread.severity, SEVERITY_RANK[severity])
        newest = max(t.end for t in self.threads)
        self.threads = [t for t in self.threads if t.end >= newest - self.KEEP_S]
        anomaly = {
            **row,
            "severity": severity,
            "kind": kind,
            "confidence": found.confidence,
            "alert_id": thread.alert_id,
        }
        return anomaly, _alert(anomaly, top, thread.revision, found.evidence) if publish else None

    def thread_at(self, start: int, end: int) -> str | None:
        """The id of the thread a window [start, end] of this pool would join, if any."""
        thread = self._thread_of(start, end)
        return thread.alert_id if thread else None

    def _thread_of(self, start: int, end: int) -> PoolThread | None:
        """The latest thread the window [start, end] belongs to, if any."""
        for thread in sorted(self.threads, key=lambda t: t.end, reverse=True):
            overlaps = start <= thread.end and end >= thread.start
            # What a drain leaves of a pool (every swap now moves its price far) is the
            # drain's aftermath: its thread's, revised on a new kind, not a stream of alerts.
            reach = self.KEEP_S if DRAINS & thread.kinds else max(self._cooldown_s, thread.reach_s)
            near = thread.start - self._cooldown_s <= end <= thread.end + reach
            if overlaps or near:
                return thread
        return None


def _alert(anomaly: dict, top: list[TopFeature], revision: int, evidence: list[str]) -> Alert:
    return Alert(
        alert_id=anomaly["alert_id"],
        revision=revision,
        window_id=anomaly["window_id"],
        chain_id=anomaly["chain_id"],
        pools=[PoolRef(dex=anomaly["dex"], pool=anomaly["pool"])],
        source=anomaly["source"],
        kind=anomaly["kind"],
        confidence=anomaly["confidence"],
        severity=anomaly["severity"],
        score=anomaly["score"],
        window_start=anomaly["window_start"],
        window_end=anomaly["window_end"],
        top_features=top,
        evidence=evidence,
        model_version=anomaly["model_version"],
        detected_at=datetime.now(UTC),
    )
