"""Alert threads: which anomalies are one incident, and which revisions to publish.

Per pool (``AlertThreads``, ``transforms.pool_threads``); per chain (``ChainThreads``), the
market's findings (``transforms.market``) open threads of their own scope, a market move or
an asset's depeg, naming their pools, and take the pools' anomalies they explain: a pool's
price, volume or activity anomaly (``MARKET_EXPLAINED``) waits ``hold_s`` of event time for
the market's view of its moment, then joins the market or asset thread that names its pool,
if one is open, or its pool's thread otherwise. A market move is one alert, not one per
pool; a drain in the middle of it is still its pool's own. A pool's own move seen by the
market view (scope ``pool:<address>``) is that pool's alert. A peg pool's small price
anomaly (DAI/USDC; the market view's ``PEG_POOL`` notices), or its volume, activity or
inflow anomaly, that no depeg takes is within its peg: recorded, not alerted.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import apache_beam as beam
import orjson
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.transforms.market import PEG_POOL
from beam_pipelines.transforms.pool_threads import (
    DRAINS,
    AlertThreads,
    PoolThread,
    classification_of,
    top_features_of,
)
from dexwatch.core.features.chain import HORIZON_OF_FEATURE
from dexwatch.core.features.kinds import Classification, size_severity
from dexwatch.core.schemas.alert import SEVERITY_RANK, Alert, PoolRef

__all__ = ["DRAINS", "MARKET_EXPLAINED", "AlertThreads", "ChainThreads", "ThreadAnomalies"]


# What a market move or a depeg explains: a pool's price moving, trading with it, and its
# providers moving their ranges after it.
MARKET_EXPLAINED = frozenset(
    {"price-dislocation", "volume-spike", "activity-spike", "liquidity-inflow"}
)
# How long after its last finding a market or asset thread takes its pools' slow views'
# anomalies: the price drift's horizon (a pool's hour-long price anchor takes that long to
# catch up with the move); their fast anomalies, within the cooldown.
SCOPE_REACH_S = 3600
# The version of the market's rule, as the model version of its alerts.
MARKET_VIEW = "market-view-1"


@dataclasses.dataclass
class _ScopeThread:
    """A thread of a market move or of an asset's depeg."""

    alert_id: str
    scope: str
    kind: str
    start: int
    end: int
    pools: frozenset[tuple[str, str]] = frozenset()
    revision: int = 0
    severity: int = 0

    def takes(self, pool: str, end: int, cooldown_s: int, slow: bool) -> bool:
        """Whether a window of ``pool`` ending at ``end`` is this thread's doing: within the
        cooldown of its findings, or for a slow view's anomaly (the hour's price drift
        catching up with the move), within SCOPE_REACH_S. A pool's own fast move half an
        hour after a market move is its own."""
        named = any(address == pool for _, address in self.pools)
        reach = SCOPE_REACH_S if slow else cooldown_s
        return named and self.start - cooldown_s <= end <= self.end + reach


@dataclasses.dataclass
class _ChainState:
    pools: dict[str, list[PoolThread]] = dataclasses.field(default_factory=dict)
    scopes: list[_ScopeThread] = dataclasses.field(default_factory=list)
    # (release, row, its classification)
    held: list[tuple[int, dict, Classification]] = dataclasses.field(default_factory=list)
    peg_pools: set[str] = dataclasses.field(default_factory=set)


class ChainThreads:
    """One chain's alert threads: each pool's (``AlertThreads``), and those of the market's
    findings, which take the anomalies they explain.

    Args:
        cooldown_s: how near in event time an anomaly must come to join a thread.
        hold_s: how long an anomaly the market may explain waits (event time) for the
            market's view of its moment; 0: the market is not watched, nothing waits.
        state: the chain's threads so far (from state), if any.
    """

    def __init__(self, cooldown_s: int, hold_s: int = 0, state: _ChainState | None = None):
        self._cooldown_s = cooldown_s
        self._hold_s = hold_s
        self.state = state or _ChainState()

    def add(self, row: dict, at: int | None = None) -> list[tuple[str, object]]:
        """An anomaly row seen at event time ``at`` (default: its window's end) → the
        outputs due now: ("anomalies", row) and ("alerts", alert); one the market may
        explain is held until ``release`` passes ``at + hold_s``."""
        top = top_features_of(row)
        found = classification_of(row, top)
        if self._hold_s and row["source"] == "chain" and found.kind in MARKET_EXPLAINED:
            release = (at if at is not None else _end(row)) + self._hold_s
            self.state.held.append((release, row, found))
            return []
        return self._to_pool(row, found)

    def next_release(self) -> int | None:
        return min((item[0] for item in self.state.held), default=None)

    def release(self, until: int) -> list[tuple[str, object]]:
        """The held anomalies due by ``until``, in time order, each to the market or asset
        thread that names its pool, or to its pool's."""
        due = sorted((item for item in self.state.held if item[0] <= until), key=lambda x: x[0])
        self.state.held = [item for item in self.state.held if item[0] > until]
        out = []
        for _, row, found in due:
            scope = self._scope_taking(row, found)
            if scope is None and row["pool"] in self.state.peg_pools and _small(row):
                # Held, so of MARKET_EXPLAINED: a peg pool's price, and the trading and
                # providers' moves with it, are the peg check's: short of a depeg, no incident.
                # A move of 5 % or more (a rug's pump of a stable pool) is the pool's own.
                out.append(("anomalies", {
                    **row, "kind": found.kind, "severity": found.severity,
                    "confidence": found.confidence, "alert_id": "",
                }))  # fmt: skip
                continue
            if scope is None:
                out += self._to_pool(row, found)
            else:
                out.append(("anomalies", {
                    **row, "kind": scope.kind, "severity": _severity_name(scope.severity),
                    "confidence": 1.0, "alert_id": scope.alert_id,
                }))  # fmt: skip
        return out

    def add_finding(self, finding: dict) -> list[tuple[str, object]]:
        """A market finding (``transforms.market.finding_row``) → ("market_events", row with
        its thread) and the alert if it opens or escalates a thread."""
        if finding["kind"] == PEG_POOL:
            self.state.peg_pools.add(finding["pool"])
            return []
        at = _end(finding)
        pools = frozenset((p["dex"], p["pool"]) for p in orjson.loads(finding["pools"]))
        rank = SEVERITY_RANK[finding["severity"]]
        if finding["scope"].startswith("pool:"):
            # A pool's own move while its pool's thread is open (a drained pool's swings, a
            # sandwiched pool's) is that thread's: it has alerted already.
            pool = finding["scope"].removeprefix("pool:")
            key = f"{finding['chain_id']}:{pool}"
            own = AlertThreads(self._cooldown_s, self.state.pools.get(key)).thread_at(at - 60, at)
            if own is not None:
                return [("market_events", {**finding, "alert_id": own})]
        # A depeg is one incident while it lasts (its findings come and go about the
        # tolerance); a market's or a pool's move, while its findings follow each other.
        reach = SCOPE_REACH_S if finding["scope"].startswith("asset:") else self._cooldown_s
        thread = next(
            (t for t in reversed(self.state.scopes)
             if t.scope == finding["scope"] and at <= t.end + reach),
            None,
        )  # fmt: skip
        publish = thread is None
        if thread is None:
            # A pool's own move (scope pool:<address>) is that pool's alert thread.
            named = finding["scope"].removeprefix("pool:")
            thread = _ScopeThread(
                f"{finding['chain_id']}:{named}:{at}", finding["scope"],
                finding["kind"], int(finding["window_start"].timestamp()), at,
            )  # fmt: skip
            self.state.scopes.append(thread)
        elif not pools <= thread.pools or rank > thread.severity:
            thread.revision += 1
            publish = True
        thread.end = max(thread.end, at)
        thread.pools |= pools
        thread.severity = max(thread.severity, rank)
        newest = max(t.end for t in self.state.scopes)
        self.state.scopes = [t for t in self.state.scopes if t.end >= newest - AlertThreads.KEEP_S]
        out: list[tuple[str, object]] = [
            ("market_events", {**finding, "alert_id": thread.alert_id})
        ]
        if publish:
            out.append(("alerts", _scope_alert(finding, thread)))
        return out

    def _scope_taking(self, row: dict, found: Classification) -> _ScopeThread | None:
        end = _end(row)
        top = top_features_of(row)
        # Providers re-range their positions around the new price within the hour after a
        # move (the calibrated market's narrow positions): its slow catch-up too.
        slow = (bool(top) and top[0].name in HORIZON_OF_FEATURE) or found.kind == "liquidity-inflow"
        for thread in reversed(self.state.scopes):
            if thread.takes(row["pool"], end, self._cooldown_s, slow):
                return thread
        return None

    def _to_pool(self, row: dict, found: Classification | None) -> list[tuple[str, object]]:
        key = f"{row['chain_id']}:{row['pool']}"
        threads = AlertThreads(self._cooldown_s, self.state.pools.get(key))
        anomaly, alert = threads.add(row, found)
        self.state.pools[key] = threads.threads
        return [("anomalies", anomaly)] + ([("alerts", alert)] if alert else [])


def _small(row: dict) -> bool:
    """Whether a window's incident is small (``size_severity`` low: less than a 5 % move
    and a tenth of the pool)."""
    return size_severity(row) == "low"


def _end(row: dict) -> int:
    return int(row["window_end"].timestamp())


def _severity_name(rank: int) -> str:
    return next(name for name, r in SEVERITY_RANK.items() if r == rank)


def _scope_alert(finding: dict, thread: _ScopeThread) -> Alert:
    return Alert(
        alert_id=thread.alert_id,
        revision=thread.revision,
        window_id=finding["event_id"],
        chain_id=finding["chain_id"],
        scope="pool" if thread.scope.startswith("pool:") else thread.scope,
        pools=[PoolRef(dex=dex, pool=pool) for dex, pool in sorted(thread.pools)],
        source="market",
        kind=thread.kind,
        confidence=1.0,
        severity=_severity_name(thread.severity),
        score=finding["size"],
        window_start=datetime.fromtimestamp(thread.start, UTC),
        window_end=finding["window_end"],
        top_features=[],
        evidence=orjson.loads(finding["evidence"]),
        model_version=MARKET_VIEW,
        detected_at=datetime.now(UTC),
    )


def _emit(outputs: list[tuple[str, object]]):
    for tag, value in outputs:
        yield value if tag == "anomalies" else beam.pvalue.TaggedOutput(tag, value)


class _ChainThreadsFn(beam.DoFn):
    """Streaming: each chain's anomalies and findings threaded as they arrive (windows fire
    in event-time order, so arrival is about time order), held ones at the watermark."""

    STATE = ReadModifyWriteStateSpec("threads", PickleCoder())
    RELEASE = TimerSpec("release", TimeDomain.WATERMARK)

    def __init__(self, cooldown_s: int, hold_s: int) -> None:
        self._cooldown_s = cooldown_s
        self._hold_s = hold_s

    def process(
        self,
        element,
        at=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        release=beam.DoFn.TimerParam(RELEASE),
    ):
        _, (tag, row) = element
        threads = ChainThreads(self._cooldown_s, self._hold_s, state.read())
        if tag == "finding":
            outputs = threads.add_finding(row)
        else:
            outputs = threads.add(row, min(int(at.micros // 1_000_000) + 1, _end(row)))
            due = threads.next_release()
            if due is not None:
                release.set(Timestamp(due))
        state.write(threads.state)
        yield from _emit(outputs)

    @on_timer(RELEASE)
    def release_held(
        self,
        now=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        release=beam.DoFn.TimerParam(RELEASE),
    ):
        threads = ChainThreads(self._cooldown_s, self._hold_s, state.read())
        outputs = threads.release(int(now.seconds()))
        due = threads.next_release()
        if due is not None:
            release.set(Timestamp(due))
        state.write(threads.state)
        yield from _emit(outputs)


def _time_order(item: tuple[str, dict]) -> tuple:
    tag, row = item
    # At one time, the market's finding first: the anomalies it explains come after it.
    return (
        row["window_end"],
        tag != "finding",
        row["window_start"],
        row.get("source", ""),
        (row.get("window_id") or row["event_id"]),
    )


class _SortedChainThreadsFn(beam.DoFn):
    """Batch: each chain's anomalies and findings, all of them, threaded in event-time order
    (held anomalies ``hold_s`` after their window's end), so that the threads do not depend
    on the order in which the runner hands rows over."""

    def __init__(self, cooldown_s: int, hold_s: int) -> None:
        self._cooldown_s = cooldown_s
        self._hold_s = hold_s

    def process(self, element):
        _, items = element
        threads = ChainThreads(self._cooldown_s, self._hold_s)
        for tag, row in sorted(items, key=_time_order):
            end = _end(row)
            due = threads.next_release()
            while due is not None and due < end + (tag != "finding"):
                yield from _emit(threads.release(due))
                due = threads.next_release()
            if tag == "finding":
                yield from _emit(threads.add_finding(row))
            else:
                yield from _emit(threads.add(row))
        yield from _emit(threads.release(2**62))


class ThreadAnomalies(beam.PTransform):
    """Scored rows of either source (in the global window: threads span windows), and the
    market's findings if watched → outputs ``anomalies`` (rows with severity, kind and
    thread), ``alerts`` (each opening and escalating revision) and ``market_events``
    (findings with their thread), threaded per chain (``ChainThreads``).

    Args:
        cooldown_s: how near in event time an anomaly must come to join a thread.
        streaming: thread as rows arrive (with state); in batch, each chain's rows are
            threaded together in event-time order: the same threads whatever the runner.
        hold_s: with findings, how long an anomaly the market may explain waits for them.
    """

    def __init__(self, cooldown_s: int, streaming: bool = True, hold_s: int = 0) -> None:
        super().__init__()
        self._cooldown_s = cooldown_s
        self._streaming = streaming
        self._hold_s = hold_s

    def expand(self, inputs):
        scored, findings = inputs if isinstance(inputs, tuple) else (inputs, None)
        hold_s = self._hold_s if findings is not None else 0
        keyed = (
            scored
            | "OnlyAnomalies" >> beam.Filter(lambda row: row["is_anomaly"])
            | "KeyByChain" >> beam.Map(lambda row: (str(row["chain_id"]), ("anomaly", row)))
        )
        if findings is not None:
            keyed = (
                keyed,
                findings
                | "FindingsByChain"
                >> beam.Map(lambda row: (str(row["chain_id"]), ("finding", row))),
            ) | "AnomaliesAndFindings" >> beam.Flatten()
        if self._streaming:
            threads = beam.ParDo(_ChainThreadsFn(self._cooldown_s, hold_s))
        else:
            keyed = keyed | "GroupByChain" >> beam.GroupByKey()
            threads = beam.ParDo(_SortedChainThreadsFn(self._cooldown_s, hold_s))
        return keyed | "Threads" >> threads.with_outputs(
            "alerts", "market_events", main="anomalies"
        )
