"""The dashboard's JSON and files (dexwatch.app.dashboard), over a warehouse holding the rows
the pipeline and the Slack consumer write (tests/_warehouse_rows.py: early panes later
replaced, a retried click, dead letters redelivered), the pools the publisher announced, an
injected incident's label, a market event's thread and the local pipeline's journal; on two
chains, Ethereum and Polygon, with the address P1 a pool on both: the chain selector
(``?chain=``, a name or an id) narrows every panel, and a pool is its chain and address."""

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
    A_POLY,
    D2,
    MARKET,
    P1,
    P2,
    P3,
    POLYGON,
    S_P1,
    S_P2,
    S_POLY,
    SUSHI,
    V3,
    WRITES,
    t,
)
from tests.conftest import ROOT, make_settings

WETH, USDC = "0x" + "11" * 20, "0x" + "22" * 20
ASSETS = [{"address": WETH, "symbol": "WETH"}, {"address": USDC, "symbol": "USDC", "peg": "USD"}]


MARKET_POLY = f"{POLYGON}:market:{int(t(40).timestamp())}"  # Polygon's market event
CHAINS = [{"chain_id": 1, "explorer_url": "https://eth.example"}, {"chain_id": POLYGON}]


def _pool(pool: str, dex: str, fee: int | None, chain_id: int = 1) -> dict:
    return {"pool_id": f"{chain_id}:{pool}", "chain_id": chain_id, "dex": dex, "pool": pool,
            "token0": WETH, "token1": USDC, "fee": fee, "created_block": 1, "created_at": t(-60),
            "announcement_id": f"{chain_id}:{pool}:announce"}  # fmt: skip


def _event(pool: str, block: int, at: datetime, event: str = "Sync", chain_id: int = 1) -> dict:
    """A journal record of the pipeline's read: a pool event as the publisher sent it."""
    message = PoolEvent(
        chain_id, "sushiswap", pool, event, block, "0x" + "ab" * 32, int(at.timestamp()),
        "0x" + f"{block:064x}", 0, {"reserve0": "1", "reserve1": "2"},
    )  # fmt: skip
    seconds = int(at.timestamp())
    return {"t": seconds * 1_000_000, "w": seconds * 1000, "a": message.attributes(),
            "m": str(block), "d": message.to_json().decode()}  # fmt: skip


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory):
    settings = make_settings(
        tmp_path_factory.mktemp("dashboard"), market={"assets": ASSETS}, chains=CHAINS
    )
    warehouse = open_warehouse(settings)
    for table, batches in WRITES:
        for batch in batches:
            warehouse.upsert(table, batch)
    warehouse.upsert(
        POOLS, [_pool(P1, V3, 500), _pool(P2, SUSHI, None), _pool(P1, V3, 3000, POLYGON)]
    )
    warehouse.upsert(INCIDENT_LABELS, [{
        "label_id": f"{chain_id}:{P1}:{kind}:9", "chain_id": chain_id, "dex": V3, "pool": P1,
        "kind": kind, "first_block": 9, "last_block": 11, "first_timestamp": t(8),
        "last_timestamp": t(9), "injected_at": t(8), "details": "pulled 90% of the liquidity",
    } for chain_id, kind in ((1, "rug-pull"), (POLYGON, "liquidity-drain"))])  # fmt: skip
    warehouse.upsert(MARKET_EVENTS, [{
        "event_id": event_id, "chain_id": chain_id, "scope": "market", "kind": "market-move",
        "window_start": end - timedelta(hours=1),
        "window_end": end, "pools": orjson.dumps([{"dex": V3, "pool": P1}]).decode(),
        "size": -0.08, "severity": "medium", "evidence": '["WETH fell 8% against USD"]',
        "alert_id": event_id,
    } for event_id, chain_id, end in ((MARKET, 1, D2), (MARKET_POLY, POLYGON, t(40)))])  # fmt: skip
    # The pipeline's journal from t(1): two events of P1 in the window ending t(10) (from
    # t(5)), one just after, one of another pool in the same window, one of P1 on Polygon.
    journal = settings.state_dir / "journal" / settings.pubsub.project / PIPELINE_SUBSCRIPTION
    journal.mkdir(parents=True)
    records = [_event(P2, 5, t(1)), _event(P1, 21, t(7)), _event(P1, 20, t(6)),
               _event(P1, 30, t(10)), _event(P2, 22, t(7)),
               _event(P1, 23, t(8), chain_id=POLYGON)]  # fmt: skip
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


def _ids(app, query: str = "") -> list[str]:
    return [t["alert_id"] for t in _json(app, "/api/alerts", query)["threads"]]


def test_overview_lists_every_followed_pool_with_its_latest_scores(app):
    pools = {(p["chain_id"], p["pool"]): p for p in _json(app, "/api/overview")["pools"]}
    # Announced pools, and one the pipeline scored without an announcement here; P1 on each
    # chain is a pool of its own.
    assert set(pools) == {(1, P1), (1, P2), (1, P3), (POLYGON, P1)}
    p1, p1_polygon = pools[(1, P1)], pools[(POLYGON, P1)]
    assert p1["name"] == f"{V3}:WETH/USDC:500" and pools[(1, P2)]["name"] == f"{SUSHI}:WETH/USDC"
    assert p1["chain"] == "ethereum" and p1_polygon["chain"] == "polygon"
    assert p1["latest"]["score"] == 0.05 and p1["latest"]["source"] == "chain"
    # The chain windows of the last day of scores, oldest first; the early pane of t(5)
    # (-0.05) replaced by its later one. Polygon's P1 has its own.
    assert p1["spark"] == [0.10, -0.12, -0.30, -0.08, 0.05] and p1["spark_source"] == "chain"
    assert p1_polygon["spark"] == [-0.20, 0.10, -0.40]
    assert p1_polygon["name"] == f"{V3}:WETH/USDC:3000" and p1_polygon["latest"]["score"] == -0.40
    assert p1["lag_s"] == pytest.approx(datetime.now(UTC).timestamp() - t(20).timestamp(), abs=60)
    # Its anomalies today (UTC): the subgraph hour and three chain windows, if the rows'
    # hour is today's (it is three hours back).
    today = t(0).date() == datetime.now(UTC).date()
    assert p1["anomalies_today"] == (4 if today else 0)
    assert p1_polygon["anomalies_today"] == (2 if today else 0)
    assert p1["max_severity_today"] == ("high" if today else None)
    scoring = {
        (m["source"], m["model_version"]) for m in _json(app, "/api/overview")["models"]["scoring"]
    }
    assert scoring == {("chain", "chain-v7"), ("subgraph", "hourly-v2")}


def test_overview_shows_each_chain_at_a_glance(app):
    chains = _json(app, "/api/overview")["chains"]
    figures = [
        (c["name"], c["pools"], c["windows_24h"], c["events_24h"], c["anomalies_24h"])
        for c in chains
    ]
    # Ethereum: P1's six windows and hour, P2's two; 12 events a chain window (the subgraph
    # hour's transactions are not chain events); Polygon: P1's three windows.
    assert figures == [("ethereum", 3, 8, 7 * 12, 6), ("polygon", 1, 3, 3 * 12, 2)]
    assert [c["last_window_end"] for c in chains] == [t(30).timestamp(), t(15).timestamp()]
    now = datetime.now(UTC).timestamp()
    assert chains[1]["lag_s"] == pytest.approx(now - t(15).timestamp(), abs=60)
    assert chains[0]["explorer_url"] == "https://eth.example" and chains[1]["configured"]


@pytest.mark.parametrize("chain", ["polygon", str(POLYGON), "chain-137"])
def test_the_chain_narrows_the_overview(app, chain: str):
    overview = _json(app, "/api/overview", f"chain={chain}")
    assert [(p["chain_id"], p["pool"]) for p in overview["pools"]] == [(POLYGON, P1)]
    assert [c["name"] for c in overview["chains"]] == ["polygon"]
    scoring = {(m["source"], m["model_version"]) for m in overview["models"]["scoring"]}
    assert scoring == {("chain", "chain-v7")}  # Polygon has no subgraph hours
    ethereum = _json(app, "/api/overview", "chain=ethereum")
    assert {p["chain_id"] for p in ethereum["pools"]} == {1} and len(ethereum["pools"]) == 3


def test_the_chains_configured_and_present(app):
    assert _json(app, "/api/chains")["chains"] == [
        {"chain_id": 1, "name": "ethereum", "explorer_url": "https://eth.example",
         "configured": True},
        {"chain_id": POLYGON, "name": "polygon", "explorer_url": "https://polygonscan.com",
         "configured": True},
    ]  # fmt: skip
    for query in ("chain=one", "chain=x';drop", "chain=-1"):
        for path in ("/api/overview", "/api/alerts", "/api/pool", "/api/model-health"):
            status, body, _ = _get(app, path, f"{query}&pool={P1}")
            assert status == 400 and b"no chain" in body, (path, query, body)


def test_chains_not_configured_are_named_apart(tmp_path: Path):
    from dexwatch.app.dashboard.chains import chain_id_of, chain_list

    # A chain configured under the known name of another: the other is chain-<id>.
    settings = make_settings(tmp_path, chains=[{"chain_id": 5, "name": "polygon"}])
    chains = chain_list(settings, {POLYGON, 999, 5})
    assert [(c["chain_id"], c["name"], c["configured"]) for c in chains] == [
        (5, "polygon", True), (POLYGON, "chain-137", False), (999, "chain-999", False)
    ]  # fmt: skip
    assert chain_id_of(settings, "polygon") == 5 and chain_id_of(settings, "chain-999") == 999
    assert chain_id_of(settings, "ethereum") == 1 and chain_id_of(settings, "") is None


def test_alert_threads_newest_first_with_their_verdicts(app):
    threads = _json(app, "/api/alerts")["threads"]
    # A1 and Polygon's thread end together: by id ("137:..." < "1:...").
    assert [t["alert_id"] for t in threads] == [MARKET_POLY, A2, A_POLY, A1, A3, MARKET, A5]
    by_id = {t["alert_id"]: t for t in threads}
    a1 = by_id[A1]
    assert a1["severity"] == "high" and a1["kinds"] == ["liquidity-drain", "rug-pull"]
    assert a1["windows"] == 4 and a1["sources"] == ["chain", "subgraph"]
    assert a1["worst_score"] == -0.30 and a1["kind"] == "rug-pull"
    assert a1["top_features"] == ["liquidity lost over the hour: 0.9 (6.5 sd above usual)"]
    assert a1["feedback"]["verdict"] == "confirmed" and a1["feedback"]["by"] == "bob"
    assert a1["pool_names"] == [f"{V3}:WETH/USDC:500"] and a1["chain"] == "ethereum"
    assert a1["first_window_start"] == S_P1["hour"]["window_start"].timestamp()
    # The same address on Polygon: its own thread, name and verdict.
    polygon = by_id[A_POLY]
    assert polygon["chain"] == "polygon" and polygon["pool_names"] == [f"{V3}:WETH/USDC:3000"]
    assert polygon["windows"] == 2 and polygon["feedback"]["by"] == "erin"
    # The later pane of a window replaces the early one.
    assert by_id[A2]["latest_score"] == -0.06 and by_id[A2]["feedback"] is None
    # A click whose message carried no metadata: the verdict by the user's id.
    assert (
        by_id[A3]["feedback"]["by"] == "U3" and by_id[A3]["feedback"]["verdict"] == "not-incident"
    )
    # A market event's thread: its evidence in words, the operator's verdict.
    market = by_id[MARKET]
    assert market["sources"] == ["market"] and market["pools"] == [P1]
    assert market["top_features"] == ["WETH fell 8% against USD"]
    assert market["feedback"]["by"] == "dave"
    assert by_id[MARKET_POLY]["chain"] == "polygon" and by_id[MARKET_POLY]["feedback"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("severity=high", [A_POLY, A1, A5]),
        (f"pool={P2}", [A2, A3]),
        (f"pool={P1}", [MARKET_POLY, A_POLY, A1, MARKET]),
        ("kind=wash-trading", [A2]),
        ("kind=market-move", [MARKET_POLY, MARKET]),
        ("chain=2", []),
        ("severity=medium&chain=1", [A3, MARKET]),
        ("chain=polygon", [MARKET_POLY, A_POLY]),
        (f"chain={POLYGON}", [MARKET_POLY, A_POLY]),
        ("chain=ethereum", [A2, A1, A3, MARKET, A5]),
        (f"chain=ethereum&pool={P1}", [A1, MARKET]),
        (f"chain=polygon&pool={P1}&kind=rug-pull", [A_POLY]),
    ],
)
def test_alert_filters(app, query: str, expected: list[str]):
    assert _ids(app, query) == expected


def test_alert_filter_options_and_refusals(app):
    options = _json(app, "/api/alerts", "severity=high")["options"]
    assert options["chains"] == [1, POLYGON] and [p["pool"] for p in options["pools"]] == sorted(
        [P1, P2, P3]
    )
    assert "market-move" in options["kinds"] and "wash-trading" in options["kinds"]
    # Of one chain: its pools and kinds (every chain still to choose from).
    polygon = _json(app, "/api/alerts", "chain=polygon")["options"]
    assert polygon["chains"] == [1, POLYGON] and [p["pool"] for p in polygon["pools"]] == [P1]
    assert polygon["pools"][0]["name"] == f"{V3}:WETH/USDC:3000"
    assert polygon["kinds"] == ["market-move", "price-dislocation", "rug-pull"]
    for query in ("severity=urgent", "pool=0x12", "chain=one", "kind=x';drop", "limit=x"):
        status, body, _ = _get(app, "/api/alerts", query)
        assert status == 400, (query, body)


def test_pool_page_has_its_windows_anomalies_labels_and_verdicts(app):
    # No chain given: the chain where the address was scored last (Ethereum's t(20)).
    page = _json(app, "/api/pool", f"pool={P1}&hours=1")
    assert page["pool"]["chain_id"] == 1 and page["pool"]["chain"] == "ethereum"
    assert page["pool"]["explorer_url"] == "https://eth.example"
    assert page["pool"]["name"] == f"{V3}:WETH/USDC:500" and page["pool"]["fee"] == 500
    assert page["chains"] == [
        {"chain_id": 1, "chain": "ethereum"}, {"chain_id": POLYGON, "chain": "polygon"}
    ]  # fmt: skip
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


@pytest.mark.parametrize("chain", ["polygon", str(POLYGON)])
def test_a_pool_is_its_chain_and_address(app, chain: str):
    page = _json(app, "/api/pool", f"pool={P1}&chain={chain}&hours=1")
    assert page["pool"]["chain_id"] == POLYGON and page["pool"]["fee"] == 3000
    assert page["pool"]["explorer_url"] == "https://polygonscan.com"
    assert page["span"]["to"] == t(15).timestamp()
    assert [w["window_id"] for w in page["windows"]] == [
        S_POLY[m]["window_id"] for m in (5, 10, 15)
    ]
    assert set(page["anomalies"]) == {S_POLY[5]["window_id"], S_POLY[15]["window_id"]}
    assert [label["kind"] for label in page["labels"]] == ["liquidity-drain"]
    assert [(f["alert_id"], f["verdict"]) for f in page["feedback"]] == [(A_POLY, "acknowledged")]
    # On a chain where the address is no pool: nothing of the others'.
    elsewhere = _json(app, "/api/pool", f"pool={P2}&chain=polygon")
    assert elsewhere["windows"] == [] and elsewhere["span"]["to"] is None
    assert elsewhere["chains"] == [{"chain_id": 1, "chain": "ethereum"}]


def test_a_windows_events_are_read_back_from_the_local_journal(app):
    detail = _json(app, "/api/window", f"id={_id(P1, t(10))}")
    assert detail["window"]["score"] == -0.30 and detail["anomaly"]["severity"] == "high"
    # [window_start, window_end): the event at t(10) belongs to the next window; P2's to P2,
    # P1's on Polygon to Polygon's window.
    assert [e["block"] for e in detail["events"]] == [20, 21]
    assert "journal" in detail["events_note"] and "gone" not in detail["events_note"]
    polygon = _json(app, "/api/window", f"id={S_POLY[10]['window_id']}")
    assert [e["block"] for e in polygon["events"]] == [23]
    older = _json(app, "/api/window", f"id={S_P2['d2']['window_id']}")
    assert older["events"] == [] and "gone" in older["events_note"]
    assert _get(app, "/api/window", f"id={_id(P1, t(11))}")[0] == 400


def _rates(health: dict) -> dict[str, list[float]]:
    totals: dict[str, list[float]] = {}
    for point in health["anomaly_rate"]["points"]:
        windows, flagged = totals.setdefault(point["source"], [0, 0.0])
        totals[point["source"]] = [
            windows + point["windows"],
            flagged + point["rate"] * point["windows"],
        ]
    return totals


def test_model_health_counts_rates_and_dead_letters(app):
    health = _json(app, "/api/model-health")
    stages = [(s["stage"], s["letters"]) for s in health["dead_letters"]["stages"]]
    assert stages == [("parse", 3), ("score", 1)]  # a redelivered letter counts once
    # The last day of scores: P1's and P2's recent windows on Ethereum, P1's on Polygon (the
    # older ones fall outside).
    totals = _rates(health)
    assert totals["chain"] == [10, pytest.approx(7)]
    assert totals["subgraph"] == [1, pytest.approx(1)]
    assert health["drift"]["models"] == []  # no model registered here


def test_the_chain_narrows_model_health(app):
    ethereum = _json(app, "/api/model-health", "chain=ethereum")
    totals = _rates(ethereum)
    assert totals["chain"] == [7, pytest.approx(5)] and totals["subgraph"] == [1, pytest.approx(1)]
    # Polygon's letter is left out; those whose message named no chain stay.
    stages = [(s["stage"], s["letters"]) for s in ethereum["dead_letters"]["stages"]]
    assert stages == [("parse", 2), ("score", 1)]
    assert "missing field dex" not in {
        letter["reason"] for letter in ethereum["dead_letters"]["latest"]
    }
    polygon = _json(app, "/api/model-health", "chain=polygon")
    assert _rates(polygon) == {"chain": [3, pytest.approx(2)]}
    assert {(m["source"], m["model_version"]) for m in polygon["models"]["scoring"]} == {
        ("chain", "chain-v7")
    }
    assert POLYGON in {letter["chain_id"] for letter in polygon["dead_letters"]["latest"]}


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
    # The selector has the configured chains already.
    assert [c["name"] for c in _json(app, "/api/chains")["chains"]] == ["local"]


def test_server_on_a_free_port_and_another_when_taken(settings):
    with DashboardServer(settings, port=0) as server:
        answer = httpx.get(server.url + "api/overview", timeout=10)
        assert answer.status_code == 200 and len(answer.json()["pools"]) == 4
        second = start_dashboard(settings, port=server.port)
        try:
            assert second.port != server.port
            assert httpx.get(second.url + "healthz", timeout=10).json() == {"status": "ok"}
        finally:
            second.stop()
    with socket.socket() as probe:  # stopped: nothing listens on the port any more
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))
