"""The dashboard's JSON and files (dexwatch.app.dashboard), over a warehouse holding the rows
the pipeline and the Slack consumer write (tests/_warehouse_rows.py: early panes later
replaced, a retried click, dead letters redelivered), the pools the publisher announced, an
injected incident's label, a market event's thread and the local pipeline's journal."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from dexwatch.app.dashboard import DashboardServer, start_dashboard
from dexwatch.app.dashboard.app import make_app
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.schemas.tables import INCIDENT_LABELS, MARKET_EVENTS, POOLS
from dexwatch.core.schemas.topics import PIPELINE_SUBSCRIPTION
from dexwatch.core.warehouse import open_warehouse
from tests._warehouse_rows import (
    A1,
    A2,
    A3,
    A5,
    D2,
    MARKET,
    P1,
    P2,
    P3,
    S_P1,
    S_P2,
    SUSHI,
    V3,
    WRITES,
    t,
)
from tests.conftest import ROOT, make_settings

WETH, USDC = "0x" + "11" * 20, "0x" + "22" * 20
ASSETS = [{"address": WETH, "symbol": "WETH"}, {"address": USDC, "symbol": "USDC", "peg": "USD"}]


def _pool(pool: str, dex: str, fee: int | None) -> dict:
    return {"pool_id": f"1:{pool}", "chain_id": 1, "dex": dex, "pool": pool, "token0": WETH,
            "token1": USDC, "fee": fee, "created_block": 1, "created_at": t(-60),
            "announcement_id": f"1:{pool}:announce"}  # fmt: skip


def _event(pool: str, block: int, at: datetime, event: str = "Sync") -> dict:
    """A journal record of the pipeline's read: a pool event as the publisher sent it."""
    message = PoolEvent(
        1, "sushiswap", pool, event, block, "0x" + "ab" * 32, int(at.timestamp()),
        "0x" + f"{block:064x}", 0, {"reserve0": "1", "reserve1": "2"},
    )  # fmt: skip
    seconds = int(at.timestamp())
    return {"t": seconds * 1_000_000, "w": seconds * 1000, "a": message.attributes(),
            "m": str(block), "d": message.to_json().decode()}  # fmt: skip


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory):
    settings = make_settings(tmp_path_factory.mktemp("dashboard"), market={"assets": ASSETS})
    warehouse = open_warehouse(settings)
    for table, batches in WRITES:
        for batch in batches:
            warehouse.upsert(table, batch)
    warehouse.upsert(POOLS, [_pool(P1, V3, 500), _pool(P2, SUSHI, None)])
    warehouse.upsert(INCIDENT_LABELS, [{
        "label_id": f"1:{P1}:rug-pull:9", "chain_id": 1, "dex": V3, "pool": P1,
        "kind": "rug-pull", "first_block": 9, "last_block": 11, "first_timestamp": t(8),
        "last_timestamp": t(9), "injected_at": t(8), "details": "pulled 90% of the liquidity",
    }])  # fmt: skip
    warehouse.upsert(MARKET_EVENTS, [{
        "event_id": MARKET, "chain_id": 1, "scope": "market", "kind": "market-move",
        "window_start": D2 - timedelta(hours=1),
        "window_end": D2, "pools": orjson.dumps([{"dex": V3, "pool": P1}]).decode(),
        "size": -0.08, "severity": "medium", "evidence": '["WETH fell 8% against USD"]',
        "alert_id": MARKET,
    }])  # fmt: skip
    # The pipeline's journal from t(1): two events of P1 in the window ending t(10) (from
    # t(5)), one just after, one of another pool in the same window.
    journal = settings.state_dir / "journal" / settings.pubsub.project / PIPELINE_SUBSCRIPTION
    journal.mkdir(parents=True)
    records = [_event(P2, 5, t(1)), _event(P1, 21, t(7)), _event(P1, 20, t(6)),
               _event(P1, 30, t(10)), _event(P2, 22, t(7))]  # fmt: skip
    (journal / "1000.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return settings


def _id(pool: str, end: datetime) -> str:
    """A chain window's id: chain_id:pool:window_end."""
    return f"1:{pool}:{int(end.timestamp())}"


def _get(app, path: str, query: str = "", method: str = "GET") -> tuple[int, bytes, dict]:
    answer = {}

    def start_response(status: str, headers: list) -> None:
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    body = b"".join(app(environ, start_response))
    return answer["status"], body, answer["headers"]


def _json(app, path: str, query: str = "") -> dict:
    status, body, _ = _get(app, path, query)
    assert status == 200, body
    return orjson.loads(body)


@pytest.fixture(scope="module")
def app(settings):
    return make_app(settings)


def test_overview_lists_every_followed_pool_with_its_latest_scores(app):
    pools = {p["pool"]: p for p in _json(app, "/api/overview")["pools"]}
    # Announced pools, and one the pipeline scored without an announcement here.
    assert set(pools) == {P1, P2, P3}
    p1 = pools[P1]
    assert p1["name"] == f"{V3}:WETH/USDC:500" and pools[P2]["name"] == f"{SUSHI}:WETH/USDC"
    assert p1["latest"]["score"] == 0.05 and p1["latest"]["source"] == "chain"
    # The chain windows of the last day of scores, oldest first; the early pane of t(5)
    # (-0.05) replaced by its later one.
    assert p1["spark"] == [0.10, -0.12, -0.30, -0.08, 0.05] and p1["spark_source"] == "chain"
    assert p1["lag_s"] == pytest.approx(datetime.now(UTC).timestamp() - t(20).timestamp(), abs=60)
    # Its anomalies today (UTC): the subgraph hour and three chain windows, if the rows'
    # hour is today's (it is three hours back).
    today = t(0).date() == datetime.now(UTC).date()
    assert p1["anomalies_today"] == (4 if today else 0)
    assert p1["max_severity_today"] == ("high" if today else None)
    scoring = {
        (m["source"], m["model_version"]) for m in _json(app, "/api/overview")["models"]["scoring"]
    }
    assert scoring == {("chain", "chain-v7"), ("subgraph", "hourly-v2")}


def test_alert_threads_newest_first_with_their_verdicts(app):
    threads = _json(app, "/api/alerts")["threads"]
    assert [t["alert_id"] for t in threads] == [A2, A1, A3, MARKET, A5]
    a1 = threads[1]
    assert a1["severity"] == "high" and a1["kinds"] == ["liquidity-drain", "rug-pull"]
    assert a1["windows"] == 4 and a1["sources"] == ["chain", "subgraph"]
    assert a1["worst_score"] == -0.30 and a1["kind"] == "rug-pull"
    assert a1["top_features"] == ["liquidity lost over the hour: 0.9 (6.5 sd above usual)"]
    assert a1["feedback"]["verdict"] == "confirmed" and a1["feedback"]["by"] == "bob"
    assert a1["pool_names"] == [f"{V3}:WETH/USDC:500"]
    assert a1["first_window_start"] == S_P1["hour"]["window_start"].timestamp()
    # The later pane of a window replaces the early one.
    assert threads[0]["latest_score"] == -0.06 and threads[0]["feedback"] is None
    # A click whose message carried no metadata: the verdict by the user's id.
    assert (
        threads[2]["feedback"]["by"] == "U3" and threads[2]["feedback"]["verdict"] == "not-incident"
    )
    # A market event's thread: its evidence in words, the operator's verdict.
    market = threads[3]
    assert market["sources"] == ["market"] and market["pools"] == [P1]
    assert market["top_features"] == ["WETH fell 8% against USD"]
    assert market["feedback"]["by"] == "dave"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("severity=high", [A1, A5]),
        (f"pool={P2}", [A2, A3]),
        ("kind=wash-trading", [A2]),
        ("kind=market-move", [MARKET]),
        ("chain=2", []),
        ("severity=medium&chain=1", [A3, MARKET]),
    ],
)
def test_alert_filters(app, query: str, expected: list[str]):
    assert [t["alert_id"] for t in _json(app, "/api/alerts", query)["threads"]] == expected


def test_alert_filter_options_and_refusals(app):
    options = _json(app, "/api/alerts", "severity=high")["options"]
    assert options["chains"] == [1] and [p["pool"] for p in options["pools"]] == sorted(
        [P1, P2, P3]
    )
    assert "market-move" in options["kinds"] and "wash-trading" in options["kinds"]
    for query in ("severity=urgent", "pool=0x12", "chain=one", "kind=x';drop"):
        status, body, _ = _get(app, "/api/alerts", query)
        assert status == 400, (query, body)


def test_pool_page_has_its_windows_anomalies_labels_and_verdicts(app):
    page = _json(app, "/api/pool", f"pool={P1}&hours=1")
    assert page["span"]["to"] == t(20).timestamp() and page["span"]["from"] == t(-40).timestamp()
    ends = [(w["window_end"], w["source"]) for w in page["windows"]]
    chain = [(t(m).timestamp(), "chain") for m in (0, 5, 10, 15, 20)]
    assert ends == [chain[0], (t(0).timestamp(), "subgraph"), *chain[1:]]
    ten = next(w for w in page["windows"] if w["window_end"] == t(10).timestamp())
    assert ten["score"] == -0.30 and ten["features"]["liquidity_lost_1h"] == 0.5
    assert set(page["anomalies"]) == {_id(P1, t(m)) for m in (5, 10, 15)} | {
        S_P1["hour"]["window_id"]
    }
    assert page["anomalies"][_id(P1, t(10))]["kind"] == "rug-pull"
    assert [label["kind"] for label in page["labels"]] == ["rug-pull"]
    assert [(f["alert_id"], f["verdict"]) for f in page["feedback"]] == [(A1, "confirmed")]
    charts = {c["title"]: [s["feature"] for s in c["series"]] for c in page["charts"]}
    assert charts["Liquidity"] == [
        "net_liquidity_change",
        "liquidity_removed_share",
        "liquidity_lost_1h",
        "tvl_usd",
    ]
    assert _get(app, "/api/pool", "pool=P1")[0] == 400


def test_a_windows_events_are_read_back_from_the_local_journal(app):
    detail = _json(app, "/api/window", f"id={_id(P1, t(10))}")
    assert detail["window"]["score"] == -0.30 and detail["anomaly"]["severity"] == "high"
    # [window_start, window_end): the event at t(10) belongs to the next window; P2's to P2.
    assert [e["block"] for e in detail["events"]] == [20, 21]
    assert "journal" in detail["events_note"] and "gone" not in detail["events_note"]
    older = _json(app, "/api/window", f"id={S_P2['d2']['window_id']}")
    assert older["events"] == [] and "gone" in older["events_note"]
    assert _get(app, "/api/window", f"id={_id(P1, t(11))}")[0] == 400


def test_model_health_counts_rates_and_dead_letters(app):
    health = _json(app, "/api/model-health")
    stages = [(s["stage"], s["letters"]) for s in health["dead_letters"]["stages"]]
    assert stages == [("parse", 2), ("score", 1)]  # a redelivered letter counts once
    totals: dict[str, list[float]] = {}
    for point in health["anomaly_rate"]["points"]:
        windows, flagged = totals.setdefault(point["source"], [0, 0.0])
        totals[point["source"]] = [
            windows + point["windows"],
            flagged + point["rate"] * point["windows"],
        ]
    # The last day of scores: P1's and P2's recent windows (the older ones fall outside).
    assert totals["chain"] == [7, pytest.approx(5)] and totals["subgraph"] == [1, pytest.approx(1)]
    assert health["drift"]["models"] == []  # no model registered here


def test_pages_and_files_and_nothing_else(app):
    for path in ("/", "/alerts", "/pool", "/model-health"):
        status, body, headers = _get(app, path)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        for script in (b"/static/dashboard.js",):
            assert script in body
    status, body, _ = _get(app, "/vendor/uPlot.iife.min.js")
    assert (
        status == 200 and body == (ROOT / "node_modules/uplot/dist/uPlot.iife.min.js").read_bytes()
    )
    for path in ("/static/../app.py", "/static/app.py", "/vendor/uPlot.d.ts", "/api/nothing"):
        assert _get(app, path)[0] == 404, path
    assert _get(app, "/api/overview", method="POST")[0] == 405


def test_before_the_first_write_the_pages_wait(tmp_path: Path):
    app = make_app(make_settings(tmp_path))
    for path in ("/api/overview", "/api/alerts", "/api/model-health"):
        assert "nothing scored so far" in _json(app, path)["waiting"]


def test_server_on_a_free_port_and_another_when_taken(settings):
    with DashboardServer(settings, port=0) as server:
        answer = httpx.get(server.url + "api/overview", timeout=10)
        assert answer.status_code == 200 and len(answer.json()["pools"]) == 3
        second = start_dashboard(settings, port=server.port)
        try:
            assert second.port != server.port
            assert httpx.get(second.url + "healthz", timeout=10).json() == {"status": "ok"}
        finally:
            second.stop()
    with socket.socket() as probe:  # stopped: nothing listens on the port any more
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))
