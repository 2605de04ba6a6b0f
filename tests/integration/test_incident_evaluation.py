"""Scoring alerts against injected incidents (model.evaluation.incident_detection) and the
fixed-threshold rule baseline, on hand-made windows with known answers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from dexwatch.core.schemas.tables import ANOMALIES, POOL_SCORES
from dexwatch.core.warehouse import open_warehouse
from model.evaluation import (
    WEEK_S,
    LabelledIncident,
    alert_threads,
    chain_windows,
    incident_detection,
)
from model.rules import RULES, rule_flags
from tests._feature_rows import fill, normal_rows
from tests.conftest import make_settings

T0 = 1_800_000_000
A, B = "0xaa", "0xbb"


def _windows(pool: str, ends: range) -> tuple[list, list, list]:
    """One-minute windows of one pool, one every 15 s."""
    return [pool] * len(ends), [e - 60 for e in ends], list(ends)


def _arrays(*parts: tuple[list, list, list]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pools = np.array([p for part in parts for p in part[0]], dtype=object)
    starts = np.array([s for part in parts for s in part[1]], dtype=float)
    ends = np.array([e for part in parts for e in part[2]], dtype=float)
    return pools, starts, ends


def _incident(pool: str, kind: str, first: int, last: int) -> LabelledIncident:
    def at(t: int) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    return LabelledIncident(f"{pool}:{kind}:{first}", pool, kind, at(first), at(last))


def test_flagged_windows_within_the_cooldown_form_one_alert_per_pool() -> None:
    pools, starts, ends = _arrays(_windows(A, range(T0, T0 + 3600, 15)),
                                  _windows(B, range(T0, T0 + 3600, 15)))  # fmt: skip
    flagged = np.zeros(len(pools), dtype=bool)
    # A: windows ending at +600, +615 and +900 (within 300 s), then +1500: two alerts.
    for t in (600, 615, 900, 1500):
        flagged[(pools == A) & (ends == T0 + t)] = True
    flagged[(pools == B) & (ends == T0 + 900)] = True  # B's own alert, at the same time
    threads = alert_threads(pools, starts, ends, flagged, cooldown_s=300)
    assert [(t.pool, t.start - T0, t.end - T0) for t in threads] == [
        (A, 540, 900), (A, 1440, 1500), (B, 840, 900)
    ]  # fmt: skip


def test_recall_precision_false_alerts_and_delay_follow_the_definitions() -> None:
    week = range(T0, T0 + WEEK_S, 15)
    pools, starts, ends = _arrays(_windows(A, week), _windows(B, week))
    incidents = [
        _incident(A, "rug-pull", T0 + 1000, T0 + 1030),  # flagged 20 s after its first block
        _incident(A, "wash-trading", T0 + 50_000, T0 + 50_200),  # flagged 50 s after its end
        _incident(B, "liquidity-drain", T0 + 9000, T0 + 9030),  # missed
    ]
    flagged = np.zeros(len(pools), dtype=bool)
    flagged[(pools == A) & (ends == T0 + 1020)] = True
    flagged[(pools == A) & (ends == T0 + 50_250)] = True
    flagged[(pools == B) & (ends == T0 + 9000)] = True  # ends at the first block: too early
    flagged[(pools == B) & (ends == T0 + 200_010)] = True  # nothing there: a false alert
    result = incident_detection(pools, starts, ends, flagged, incidents, after_s=60,
                                cooldown_s=300)  # fmt: skip
    assert [(o.kind, o.detected, o.delay_s) for o in result.outcomes] == [
        ("rug-pull", True, 20.0), ("wash-trading", True, 250.0), ("liquidity-drain", False, None)
    ]  # fmt: skip
    assert result.recall == pytest.approx(2 / 3)
    # Four alerts: the rug pull's, the wash trading's, B's early one, B's false one. The early
    # one ends at the drain's first block, before any of it: it holds none of the incident.
    assert (result.threads, result.false_threads) == (4, 2)
    assert result.precision == pytest.approx(0.5)
    # Each pool observed from its first window's start to its last window's end.
    assert result.pool_weeks == pytest.approx(2 * (WEEK_S - 15 + 60) / WEEK_S)
    assert result.false_alerts_per_pool_week == pytest.approx(2 / result.pool_weeks)
    assert result.median_delay_s == pytest.approx(135.0)
    assert result.by_kind()["liquidity-drain"] == {
        "incidents": 1, "detected": 0, "recall": 0.0, "median_delay_s": None
    }  # fmt: skip


def test_a_detected_incidents_kind_is_its_most_anomalous_windows() -> None:
    pools, starts, ends = _arrays(_windows(A, range(T0, T0 + 7200, 15)))
    incidents = [
        _incident(A, "slow-drain", T0 + 600, T0 + 2400),  # should raise liquidity-drain
        _incident(A, "fresh-pool-rug", T0 + 5000, T0 + 5100),  # should raise rug-pull
        _incident(A, "wash-trading", T0 + 6000, T0 + 6100),  # missed: no kind to judge
    ]
    flagged = np.zeros(len(pools), dtype=bool)
    scores = np.full(len(pools), 0.1)
    kinds = np.full(len(pools), "", dtype=object)
    for end, score, kind in (
        (T0 + 900, -0.02, "liquidity-inflow"),  # a provider's mint in the drain's span
        (T0 + 960, -0.3, "liquidity-drain"),  # the drain, most anomalous
        (T0 + 5040, -0.05, "price-dislocation"),  # the pump...
        (T0 + 5100, -0.01, "rug-pull"),  # ...scores further below than the rug itself
        (T0 + 6600, -0.5, "volume-spike"),  # after the wash trading's span
    ):
        at = ends == end
        flagged[at], scores[at], kinds[at] = True, score, kind
    result = incident_detection(
        pools, starts, ends, flagged, incidents, 60, 300, scores=scores, kinds=kinds
    )
    assert result.kinds == [
        ("liquidity-drain", "liquidity-drain"), ("rug-pull", "price-dislocation")
    ]  # fmt: skip
    assert result.kind_accuracy == 0.5
    # Without kinds (the rules), nothing is judged.
    assert incident_detection(pools, starts, ends, flagged, incidents, 60, 300).kinds == []


def test_no_flags_no_alerts_and_no_precision() -> None:
    pools, starts, ends = _arrays(_windows(A, range(T0, T0 + 600, 15)))
    rug = _incident(A, "rug-pull", T0 + 100, T0 + 130)
    nothing = np.zeros(len(pools), dtype=bool)
    result = incident_detection(pools, starts, ends, nothing, [rug], 60, 300)
    assert (result.recall, result.precision, result.threads) == (0.0, None, 0)
    assert result.false_alerts_per_pool_week == 0.0


def test_the_rule_flags_any_threshold_crossed_and_ignores_missing_features() -> None:
    names = [name for name, _, _ in RULES]
    quiet = {name: 0.0 for name in names}
    rows = [quiet, {**quiet, "liquidity_removed_share": 0.25},
            {**quiet, "price_change": math.log(1.06)}, {**quiet, "volume_ratio": math.nan},
            {**quiet, "max_swap_price_impact": math.log(1.04)}]  # fmt: skip
    columns = {name: np.array([row[name] for row in rows]) for name in names}
    assert rule_flags(columns).tolist() == [False, True, True, False, False]


@pytest.mark.stack
def test_an_incident_injected_into_history_is_stamped_in_chain_time(deployed) -> None:
    """Into a history run, an incident's blocks follow the latest block block_interval_s
    apart at once, however far ahead of the wall clock the chain is."""
    from infra.local import evm
    from infra.local.incidents import inject

    settings, deployment = deployed
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        _, head_time = evm.latest_block(rpc)
        ahead = max(head_time, int(datetime.now(UTC).timestamp())) + 86_400
        evm.mine(rpc, ahead)  # a day ahead of the wall clock, as a history run may be
    finally:
        rpc.close()
    live_blocks = settings.model_copy(
        update={"simulator": settings.simulator.model_copy(update={"block_interval_s": 2.0})}
    )
    label = inject(live_blocks, deployment, "liquidity-drain", "sushiswap:WETH/USDC",
                   history=True)  # fmt: skip
    assert label.last_block - label.first_block == 2  # three blocks, one per step
    assert label.first_timestamp.timestamp() == ahead + 2
    assert (label.last_timestamp - label.first_timestamp).total_seconds() == 4


def test_the_threads_a_pipeline_opened_are_read_from_its_anomalies(tmp_path) -> None:
    import duckdb

    from dexwatch.core.schemas.tables import ANOMALIES
    from dexwatch.core.warehouse import WarehouseTarget, open_warehouse
    from model.evaluation import opened_threads

    duckdb.connect(str(tmp_path / "w.duckdb")).close()  # a warehouse without anomalies
    warehouse = open_warehouse(WarehouseTarget(backend="duckdb", path=tmp_path / "w.duckdb"))
    assert opened_threads(warehouse) == []

    def row(pool: str, end: int, alert_id: str, source: str = "chain") -> dict:
        at = datetime.fromtimestamp
        return {
            "window_id": f"1:{pool}:{end}:{source}", "chain_id": 1, "dex": "uniswap_v3",
            "pool": pool, "source": source, "window_start": at(end - 60, UTC),
            "window_end": at(end, UTC), "events": 3, "score": -0.5, "is_anomaly": True,
            "model_version": "m", "top_features": "[]", "severity": "high",
            "kind": "liquidity-drain", "confidence": 1.0, "alert_id": alert_id,
            "scored_at": at(end + 5, UTC),
        }  # fmt: skip

    warehouse.upsert(ANOMALIES, [
        row(A, T0, "a1"), row(A, T0 + 600, "a1"), row(A, T0 + 9000, "a2"), row(B, T0, "b1"),
        row(B, T0 + 30, "b1", source="subgraph"),
    ])  # fmt: skip
    threads = sorted(opened_threads(warehouse), key=lambda t: (t.pool, t.start))
    assert [(t.pool, t.start, t.end) for t in threads] == [
        (A, T0 - 60, T0 + 600), (A, T0 + 9000 - 60, T0 + 9000), (B, T0 - 60, T0),
    ]  # fmt: skip


def test_chain_windows_reads_each_window_with_its_anomalys_kind(tmp_path) -> None:
    warehouse = open_warehouse(make_settings(tmp_path / "state"))
    start = datetime(2026, 11, 30, tzinfo=UTC)
    rows = normal_rows(start, start + timedelta(minutes=30))
    fill(warehouse, rows, [])
    before = chain_windows(warehouse)  # no anomalies table yet: no kinds
    assert len(before["pool"]) == len(rows) and set(before["kind"]) == {""}
    flagged = {**rows[4], "score": -0.2, "is_anomaly": True}
    anomaly = {**flagged, "severity": "high", "kind": "rug-pull", "confidence": 0.9,
               "alert_id": flagged["window_id"]}  # fmt: skip
    warehouse.upsert(POOL_SCORES, [flagged])
    warehouse.upsert(ANOMALIES, [anomaly])
    windows = chain_windows(warehouse)
    assert list(windows["end"]) == sorted(windows["end"])
    (at,) = np.flatnonzero(windows["kind"] != "")
    assert (windows["kind"][at], windows["score"][at], windows["is_anomaly"][at]) == (
        "rug-pull", -0.2, 1.0
    )  # fmt: skip
    assert windows["pool"][at] == flagged["pool"]
    assert windows["end"][at] == flagged["window_end"].timestamp()
    assert windows["liquidity_lost_1h"][at] == flagged["liquidity_lost_1h"]
