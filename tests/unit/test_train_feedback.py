"""`dexwatch train` reads the operators' verdicts on alerts (alert_feedback): confirmed alerts
are labelled incidents kept out of training, not-incident windows are scored by the new
version and shown in the report. A DuckDB warehouse with the real table schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.schemas.tables import ALERT_FEEDBACK, ANOMALIES
from dexwatch.core.warehouse.duckdb import DuckDBWarehouse
from model.evaluation import LabelledIncident
from model.feedback import resolve_verdicts
from model.registry import ModelRegistry
from model.train_run import TrainingRun, TrainingRunParams, run_training
from tests._detectors import HOURLY_NAMES, hourly_rows
from tests._feature_rows import (
    CHAIN_ID,
    POOLS,
    aligned,
    drain_features,
    fill,
    incident,
    normal_rows,
    score_row,
)

START = datetime(2026, 11, 20, tzinfo=UTC)
END = START + timedelta(days=2)
MINUTE = timedelta(minutes=1)
PARAMS = TrainingRunParams(days=2, n_estimators=30, seed=2)
ASSET = "0x" + "d4" * 20


def anomaly(row: dict, alert_id: str, kind: str = "liquidity-drain", score: float = -0.05) -> dict:
    """The anomalies row the pipeline writes beside a flagged pool_scores row."""
    return {
        **row, "score": score, "is_anomaly": True, "model_version": "prod-1", "severity": "medium",
        "kind": kind, "confidence": 0.8, "alert_id": alert_id,
    }  # fmt: skip


def click(
    alert_id: str, verdict: str, user: str, at: datetime, pools: list[str],
    span: tuple[datetime, datetime], kind: str = "liquidity-drain", scope: str = "pool",
    metadata: bool = True,
) -> dict:  # fmt: skip
    """One alert_feedback row (one button click), as the Slack consumer writes it; without
    ``metadata`` (the clicked message carried none) the alert's columns are empty."""
    alert = {
        "chain_id": CHAIN_ID, "scope": scope,
        "pools": orjson.dumps([{"dex": "sushiswap", "pool": p} for p in pools]).decode(),
        "kind": kind, "revision": 1, "window_start": span[0], "window_end": span[1],
    }  # fmt: skip
    return {
        "feedback_id": f"{alert_id}:{user}:{at.timestamp()}", "alert_id": alert_id,
        "verdict": verdict, "user_id": f"U{user.upper()}", "user_name": user,
        "channel": "C1", "message_ts": "1.0", "clicked_at": at,
        **(alert if metadata else dict.fromkeys(alert)),
    }  # fmt: skip


def alert_id_of(pool: str, first_end: datetime) -> str:
    return f"{CHAIN_ID}:{pool}:{int(first_end.timestamp())}"


def span_of(rows: list[dict]) -> tuple[datetime, datetime]:
    return min(r["window_start"] for r in rows), max(r["window_end"] for r in rows)


class Scenario:
    """Two days of three pools' windows with six alerts and their clicks:

    - A (training part, pool 1, drain windows): not-incident, then confirmed, then
      acknowledged: confirmed; no clicked message carried the alert's metadata.
    - B (held out, pool 2, one drain and two normal windows, and an hourly row): confirmed,
      then not-incident (a message without metadata), then acknowledged: not-incident.
    - C (pool 0): acknowledged only: no verdict.
    - D (market, pools 0 and 2, no anomalies row): confirmed, from its clicks' span.
    - E (asset depeg, pool 0, no anomalies row): not-incident, the path's rows in its span.
    - F (held out, pool 0): confirmed, and an injected label of the same windows.
    """

    def __init__(self, path: Path) -> None:
        rng = np.random.default_rng(7)
        scores = normal_rows(START, END)
        by_key = {(r["pool"], r["window_end"]): r for r in scores}
        anomalies, clicks = [], []
        t0 = END + timedelta(hours=1)  # clicks come after the windows

        a_first = aligned(START + timedelta(hours=10))
        _, self.a_rows = incident(POOLS[1], "liquidity-drain", a_first, 15, rng)
        self.a = alert_id_of(POOLS[1], self.a_rows[0]["window_end"])
        anomalies += [anomaly(r, self.a) for r in self.a_rows]
        self.a_span = span_of(self.a_rows)
        # Messages without metadata: A is placed, and its kind found, by its thread's windows.
        clicks += [
            click(self.a, verdict, user, t0 + i * MINUTE, [], self.a_span, metadata=False)
            for i, (verdict, user) in enumerate(
                [("not-incident", "alice"), ("confirmed", "bob"), ("acknowledged", "carol")]
            )
        ]

        b_end = aligned(END - timedelta(hours=5))
        self.b_rows = [by_key[(POOLS[2], b_end + i * timedelta(minutes=5))] for i in range(3)]
        self.b_rows[0] = {**self.b_rows[0], **drain_features(rng)}
        self.b = alert_id_of(POOLS[2], b_end)
        hour = b_end.replace(minute=0)
        hourly = {
            **score_row(POOLS[2], hour + timedelta(hours=1), {n: 0.0 for n in FEATURE_NAMES}),
            "window_id": f"{CHAIN_ID}:{POOLS[2]}:{int(hour.timestamp())}:hour",
            "source": "subgraph", "window_start": hour,
            **{n: None for n in FEATURE_NAMES}, **{n: 1.0 for n in HOURLY_NAMES},
        }  # fmt: skip
        anomalies += [anomaly(r, self.b, "wash-trading") for r in [*self.b_rows, hourly]]
        clicks += [
            click(
                self.b,
                verdict,
                user,
                t0 + i * MINUTE,
                [POOLS[2]],
                span_of(self.b_rows),
                metadata=user != "bob",
            )
            for i, (verdict, user) in enumerate(
                [("confirmed", "alice"), ("not-incident", "bob"), ("acknowledged", "carol")]
            )
        ]

        c_end = aligned(START + timedelta(hours=20))
        c_rows = [by_key[(POOLS[0], c_end + i * timedelta(minutes=5))] for i in range(2)]
        self.c = alert_id_of(POOLS[0], c_end)
        anomalies += [anomaly(r, self.c) for r in c_rows]
        clicks.append(click(self.c, "acknowledged", "dan", t0, [POOLS[0]], span_of(c_rows)))

        d_start = aligned(START + timedelta(hours=30))
        self.d_span = (d_start, d_start + timedelta(minutes=15))
        self.d = f"{CHAIN_ID}:market:{int(self.d_span[1].timestamp())}"
        clicks.append(
            click(self.d, "confirmed", "erin", t0, [POOLS[0], POOLS[2]], self.d_span,
                  "market-move", "market")
        )  # fmt: skip

        e_end = aligned(END - timedelta(hours=3))
        self.e_rows = [by_key[(POOLS[0], e_end + i * timedelta(minutes=5))] for i in range(3)]
        self.e = f"{CHAIN_ID}:asset:{ASSET}:{int(e_end.timestamp())}"
        clicks.append(
            click(self.e, "not-incident", "erin", t0, [POOLS[0]], span_of(self.e_rows),
                  "depeg", f"asset:{ASSET}")
        )  # fmt: skip

        label, self.f_rows = incident(
            POOLS[0], "rug-pull", aligned(END - timedelta(hours=2)), 15, rng
        )
        self.f_label = label["label_id"]
        self.f = alert_id_of(POOLS[0], self.f_rows[0]["window_end"])
        anomalies += [anomaly(r, self.f, "rug-pull") for r in self.f_rows]
        clicks.append(click(self.f, "confirmed", "bob", t0, [POOLS[0]], span_of(self.f_rows)))

        scores += self.a_rows + self.b_rows + self.f_rows  # replace the normal rows by key
        warehouse = DuckDBWarehouse(path)
        fill(warehouse, scores, [label])
        warehouse.upsert(ANOMALIES, anomalies)
        warehouse.upsert(ALERT_FEEDBACK, clicks)
        self.not_incident_rows = [*self.b_rows, *self.e_rows]


def _run(tmp_path: Path) -> tuple[Scenario, TrainingRun]:
    scenario = Scenario(tmp_path / "warehouse.duckdb")
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    return scenario, run_training(warehouse, tmp_path / "registry", PARAMS, now=END)


def test_feedback_labels_exclude_and_score_windows(tmp_path):
    s, run = _run(tmp_path)

    # Confirmed alerts are labelled incidents of operator feedback, one per pool: A spans its
    # windows, D (no anomalies row) its clicks' span; F is already an injected label.
    from_feedback = {(i.label_id, i.pool): i for i in run.incidents if i.origin == "feedback"}
    assert from_feedback == {
        (s.a, POOLS[1]): LabelledIncident(s.a, POOLS[1], "liquidity-drain", *s.a_span, "feedback"),
        (s.d, POOLS[0]): LabelledIncident(s.d, POOLS[0], "market-move", *s.d_span, "feedback"),
        (s.d, POOLS[2]): LabelledIncident(s.d, POOLS[2], "market-move", *s.d_span, "feedback"),
    }
    assert [i.label_id for i in run.incidents if i.origin == "label"] == [s.f_label]

    # Kept out of training: A's windows and D's span (padded 5 minutes) are in no training row.
    for confirmed_incident in from_feedback.values():
        first = confirmed_incident.first_timestamp - timedelta(minutes=5)
        last = confirmed_incident.last_timestamp + timedelta(minutes=5)
        assert not any(
            pool == confirmed_incident.pool and end >= first and start <= last
            for pool, start, end in zip(
                run.train.pools, run.train.window_start, run.train.window_end, strict=True
            )
        )
    # A: its 3 windows and 2 within the padding; D: 6 windows of each of its 2 pools.
    assert run.metadata["training_range"]["excluded_incident_rows"] == 5 + 2 * 6
    # ... and evaluated: A's drain is caught, and F through its injected label.
    outcomes = {(o.label_id, o.pool): o for o in run.evaluation.incidents}
    assert outcomes[(s.a, POOLS[1])].detected and outcomes[(s.a, POOLS[1])].origin == "feedback"
    assert run.metadata["metrics"]["operator_confirmed_incidents"] == 3
    assert run.metadata["metrics"]["incidents"] == 4
    confirmed = {c.alert_id: c for c in run.feedback.confirmed}
    assert set(confirmed) == {s.a, s.d, s.f}
    assert confirmed[s.a].caught is True and confirmed[s.a].decided_by == "bob"
    assert confirmed[s.f].caught is outcomes[(s.f_label, POOLS[0])].detected is True
    assert confirmed[s.d].pools == (POOLS[0], POOLS[2])

    # Latest decisive click wins; acknowledging changes nothing; C has no verdict.
    assert run.feedback.alerts == {"confirmed": 3, "not-incident": 2, "acknowledged": 1}
    assert run.feedback.clicks == {"confirmed": 4, "not-incident": 3, "acknowledged": 3}

    # Not-incident windows: B's chain windows (not its hourly row) and E's span, scored by
    # the new version on their features.
    windows = run.feedback.false_alert_windows
    assert [(w.alert_id, w.window_id) for w in windows] == [
        *((s.b, r["window_id"]) for r in s.b_rows),
        *((s.e, r["window_id"]) for r in s.e_rows),
    ]
    expected = run.detector.anomaly_score(
        np.array([[r[n] for n in FEATURE_NAMES] for r in s.not_incident_rows])
    )
    np.testing.assert_allclose([w.new_score for w in windows], expected)
    assert [w.new_flags for w in windows] == list(expected < 0)
    assert windows[0].new_flags  # B's drain window: the new version still flags it
    # Production's score at the time: the anomalies row's, or pool_scores' for E's span.
    assert [w.production_score for w in windows] == [-0.05] * 3 + [0.1] * 3
    assert not any(w.trained_on for w in windows)  # both in the held-out slice
    flagged = int((expected < 0).sum())
    sentence = (
        f"The new version still flags {flagged} of 6 windows operators marked not an incident."
    )
    assert run.feedback.summary() == sentence

    # The same in the version's metadata.json ...
    meta = ModelRegistry(tmp_path / "registry", run.spec.model_name).get(run.version).metadata
    assert meta["feedback"]["alerts"] == run.feedback.alerts
    assert meta["feedback"]["not_incident_still_flagged"] == flagged
    assert [w["window_id"] for w in meta["feedback"]["not_incident"]] == [
        w.window_id for w in windows
    ]
    assert meta["feedback"]["not_incident"][0]["new_score"] == windows[0].new_score

    # ... and in the report.
    html = (run.directory / "report.html").read_text()
    section = html[html.index("Operator feedback") : html.index("Against the production")]
    assert sentence in section
    counts = "10 button clicks on 6 alerts: 3 confirmed incidents, 2 not an incident, 1 ack"
    assert counts in section
    assert section.count("<tr>") == 1 + 3 + 1 + 6  # confirmed table, not-incident table
    assert s.b not in section  # the alert's pool address is shortened
    assert f"{CHAIN_ID}:0xc3c3c3…c3c3:{int(s.b_rows[0]['window_end'].timestamp())}" in section
    assert "operator-confirmed alert" in html and "injected label" in html


def test_verdict_is_the_latest_decisive_click():
    at = START
    span = (START, START + MINUTE)

    def verdict(*clicks: str) -> str:
        rows = [click("x", v, f"u{i}", at + i * MINUTE, [POOLS[0]], span)
                for i, v in enumerate(clicks)]  # fmt: skip
        rows.reverse()  # the table's order is no order: clicked_at decides
        (resolved,) = resolve_verdicts(rows)
        return resolved.verdict

    assert verdict("confirmed", "not-incident") == "not-incident"
    assert verdict("not-incident", "confirmed") == "confirmed"
    assert verdict("confirmed", "acknowledged") == "confirmed"
    assert verdict("acknowledged", "not-incident", "acknowledged") == "not-incident"
    assert verdict("acknowledged", "acknowledged") == "acknowledged"  # no verdict


def test_no_feedback_table_means_no_feedback(tmp_path):
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    fill(warehouse, normal_rows(START, END), [])
    run = run_training(warehouse, tmp_path / "registry", PARAMS, now=END)
    assert not run.feedback.given and run.feedback.false_alert_windows == []
    assert not any(i.origin == "feedback" for i in run.incidents)
    assert run.metadata["feedback"]["clicks"] == {}
    html = (run.directory / "report.html").read_text()
    assert "Operator feedback" in html
    assert "No operator feedback was given on alerts in the data window." in html


def test_hourly_run_takes_the_hourly_windows_of_a_thread(tmp_path):
    """A thread holding chain windows and an hour: the hourly run scores the hour only; a
    confirmed thread of chain windows only still labels its span for the hourly rows."""
    x = hourly_rows(240)
    rows = []
    for i, vector in enumerate(x):
        hour = START + timedelta(hours=i // 3)
        rows.append({
            **score_row(POOLS[i % 3], hour + timedelta(hours=1), {n: 0.0 for n in FEATURE_NAMES}),
            "window_id": f"{CHAIN_ID}:{POOLS[i % 3]}:{int(hour.timestamp())}:hour",
            "source": "subgraph", "window_start": hour, **{n: None for n in FEATURE_NAMES},
            **dict(zip(HOURLY_NAMES, vector, strict=True)),
        })  # fmt: skip
    hour_row = rows[3 * 70 + 1]  # pool 1's hour in the held-out part
    chain = [score_row(POOLS[1], hour_row["window_start"] + k * timedelta(minutes=5),
                       {n: 0.0 for n in FEATURE_NAMES}) for k in (1, 2)]  # fmt: skip
    confirmed_chain = [score_row(POOLS[2], START + timedelta(hours=10, minutes=k * 5),
                                 {n: 0.0 for n in FEATURE_NAMES}) for k in (1, 2)]  # fmt: skip
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    fill(warehouse, rows + chain + confirmed_chain, [])
    no, yes = "not-incident-alert", "confirmed-alert"
    warehouse.upsert(
        ANOMALIES,
        [anomaly(r, no) for r in [*chain, hour_row]] + [anomaly(r, yes) for r in confirmed_chain],
    )
    warehouse.upsert(ALERT_FEEDBACK, [
        click(no, "not-incident", "bob", END, [POOLS[1]], span_of([*chain, hour_row])),
        click(yes, "confirmed", "bob", END, [POOLS[2]], span_of(confirmed_chain)),
    ])  # fmt: skip
    run = run_training(
        warehouse, tmp_path / "registry",
        TrainingRunParams(path="hourly", days=30, n_estimators=30), now=START + timedelta(days=5),
    )  # fmt: skip
    (window,) = run.feedback.false_alert_windows
    assert window.window_id == hour_row["window_id"]
    assert (
        window.new_score
        == run.detector.anomaly_score(np.array([[hour_row[n] for n in HOURLY_NAMES]]))[0]
    )
    (label,) = [i for i in run.incidents if i.origin == "feedback"]
    assert (label.pool, label.first_timestamp, label.last_timestamp) == (
        POOLS[2],
        *span_of(confirmed_chain),
    )
