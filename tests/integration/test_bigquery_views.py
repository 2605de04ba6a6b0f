"""The warehouse's views and documented queries (dexwatch/core/warehouse/views, queries) on a
local BigQuery emulator and on the local DuckDB warehouse: tables made through the API as
the declarations say, rows of the pipeline's shape appended (early panes and their later
replacements, a retried click), and every view and query answering exactly what the rows
say, the same on both. The rows are of two chains, with one address a pool on both: the views
keep each chain's apart.

The emulator runs BigQuery SQL translated for DuckDB: it proves the views' logic and that
the API takes the tables, not that BigQuery's own parser accepts every construct (that is
checked when Terraform creates the views at deploy time). JSON columns come back parsed from
BigQuery and as text from DuckDB: the comparison reads both as JSON, the one difference.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import orjson
import pytest
from google.cloud import bigquery

from beam_pipelines.transforms.sinks import _bigquery_row
from dexwatch.core.schemas.tables import ALERT_FEEDBACK, ANOMALIES, POOL_SCORES, TABLES, Table
from dexwatch.core.warehouse import views
from dexwatch.core.warehouse.bigquery import insert_rows
from dexwatch.core.warehouse.duckdb import DuckDBWarehouse, create_table_sql
from tests._bqemulator import INSERT_RETRY, Emulator, running_bqemulator
from tests._warehouse_rows import (
    A1,
    A2,
    A3,
    A5,
    A_POLY,
    ANOMALIES_EARLY,
    ANOMALY_ROWS,
    D2,
    D10,
    DAVE,
    MARKET,
    MIN,
    P1,
    P2,
    P3,
    POLYGON,
    SCORES,
    SUSHI,
    V2,
    V3,
    WRITES,
    R,
    t,
)  # fmt: skip
from tests.conftest import ROOT


def check_row(table: Table, row: dict) -> None:
    """What BigQuery checks and the emulator does not: known columns, required ones given."""
    assert set(row) <= set(table.column_names), set(row) - set(table.column_names)
    missing = [c.name for c in table.columns if c.required and row.get(c.name) is None]
    assert not missing, f"{table.name}: {missing}"


def _bigquery_rows(table: Table, batch: list[dict]) -> tuple[list[dict], list | None]:
    """The batch as its writer sends it: the pipeline's sink (random insert ids, as Beam's
    streaming inserts) or, for feedback, the warehouse's BigQuery upsert (the natural key)."""
    if table is ALERT_FEEDBACK:
        return insert_rows(table, batch), [row["feedback_id"] for row in batch]
    return [_bigquery_row(row) for row in batch], None


@pytest.fixture(scope="module")
def bq(tmp_path_factory: pytest.TempPathFactory):
    with running_bqemulator(tmp_path_factory.mktemp("bq")) as emulator:
        client, dataset = emulator.client, f"{emulator.project}.{emulator.dataset}"
        for table in TABLES.values():
            created = bigquery.Table(
                f"{dataset}.{table.name}",
                schema=[
                    bigquery.SchemaField.from_api_repr(f) for f in table.bigquery_schema()["fields"]
                ],
            )
            if table.partition_by:
                created.time_partitioning = bigquery.TimePartitioning(
                    type_=bigquery.TimePartitioningType.DAY, field=table.partition_by
                )
            created.clustering_fields = list(table.cluster_by) or None
            client.create_table(created)
        for name in views.view_names():  # as Terraform does: templatefile, then the API
            view = bigquery.Table(f"{dataset}.{name}")
            view.view_query = views.bigquery_view_sql(name, emulator.project, emulator.dataset)
            client.create_table(view)
        for table, batches in WRITES:
            for batch in batches:
                rows, row_ids = _bigquery_rows(table, batch)
                for row in rows:
                    check_row(table, row)
                kwargs = {"row_ids": row_ids} if row_ids else {}
                errors = client.insert_rows_json(
                    f"{dataset}.{table.name}", rows, retry=INSERT_RETRY, **kwargs
                )
                assert errors == []
        yield emulator


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(tmp_path_factory.mktemp("duckdb") / "warehouse.duckdb")
    for table, batches in WRITES:
        for batch in batches:  # each batch one upsert: a later pane replaces an early one
            warehouse.upsert(table, batch)
    return warehouse


def bq_query(emulator: Emulator, sql: str) -> list[dict]:
    config = bigquery.QueryJobConfig(default_dataset=f"{emulator.project}.{emulator.dataset}")
    return [dict(row.items()) for row in emulator.client.query(sql, job_config=config).result()]


def duckdb_query(warehouse: DuckDBWarehouse, sql: str) -> list[dict]:
    result = warehouse.query(sql)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def _answer(request: pytest.FixtureRequest, backend: str, sql: str) -> list[dict]:
    if backend == "bigquery":
        rows = bq_query(request.getfixturevalue("bq"), sql)
    else:
        rows = duckdb_query(request.getfixturevalue("local"), sql)
    # The one dialect difference: BigQuery's client parses JSON columns, DuckDB's gives text.
    return [{k: orjson.loads(v) if k == "top_features" and isinstance(v, str) else v
             for k, v in row.items()} for row in rows]  # fmt: skip


BACKENDS = ["bigquery", "duckdb"]


def _thread(first, last, windows, worst, severity, kinds) -> dict:
    return {
        "thread_first_window_start": first, "thread_last_window_end": last,
        "thread_windows": windows, "thread_worst_score": worst, "thread_severity": severity,
        "thread_kinds": kinds,
    }  # fmt: skip


THREADS = {
    A1: _thread(t(-60), t(15), 4, -0.30, "high", "liquidity-drain, rug-pull"),
    A2: _thread(t(20), t(30), 2, -0.06, "low", "wash-trading"),
    A3: _thread(D2, D2 + 5 * MIN, 1, -0.15, "medium", "price-dislocation"),
    A5: _thread(D10, D10 + 25 * MIN, 5, -0.5, "high", "liquidity-drain, rug-pull"),
    A_POLY: _thread(t(0), t(15), 2, -0.40, "high", "price-dislocation, rug-pull"),
}
VERDICTS = {
    A1: {"verdict": "confirmed", "verdict_by": "bob", "verdict_at": t(40)},
    A_POLY: {"verdict": "acknowledged", "verdict_by": "erin", "verdict_at": t(45)},
    A3: {"verdict": "not-incident", "verdict_by": "U3", "verdict_at": D2 + 60 * MIN},
}
NO_VERDICT = {"verdict": None, "verdict_by": None, "verdict_at": None}
ANOMALY_COLUMNS = (
    "window_id", "chain_id", "dex", "pool", "source", "window_start", "window_end", "events",
    "score", "severity", "kind", "confidence", "model_version", "scored_at", "alert_id",
)  # fmt: skip
SCORE_COLUMNS = (
    "window_id", "chain_id", "dex", "pool", "source", "window_start", "window_end", "events",
    "score", "is_anomaly", "model_version", "scored_at",
)  # fmt: skip


def _latest_anomaly(row: dict) -> dict:
    top = orjson.loads(row["top_features"])
    return {
        **{k: row[k] for k in ANOMALY_COLUMNS}, "top_feature": top[0]["name"],
        "top_features": top, **THREADS[row["alert_id"]],
        **VERDICTS.get(row["alert_id"], NO_VERDICT),
    }  # fmt: skip


def _by_window(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: row["window_id"])


def _pool_day(pool, dex, day, n, chain, hours, alerts, worst, severity, kinds, chain_id=1):
    return {
        "chain_id": chain_id, "dex": dex, "pool": pool, "day": day.date(), "anomalies": n,
        "chain_windows": chain, "subgraph_hours": hours, "alerts": alerts,
        "worst_score": worst, "max_severity": severity, "kinds": kinds,
    }  # fmt: skip


def _verdict(alert_id, verdict, by, at, clicks, first, revision, scope, kind, thread_kinds,
             pools, start, end, windows, worst, severity, chain_id=1) -> dict:  # fmt: skip
    return {
        "alert_id": alert_id, "verdict": verdict, "verdict_by": by, "verdict_at": at,
        "clicks": clicks, "first_clicked_at": first, "revision": revision, "chain_id": chain_id,
        "scope": scope, "kind": kind, "thread_kinds": thread_kinds, "pools": pools,
        "first_window_start": start, "last_window_end": end, "windows": windows,
        "worst_score": worst, "severity": severity,
    }  # fmt: skip


def _letters(stage, day, letters, reasons, first, last, chain_id=None) -> dict:
    return {"stage": stage, "chain_id": chain_id, "day": day.date(), "letters": letters,
            "reasons": reasons, "first_received_at": first, "last_received_at": last}  # fmt: skip


# Every view: the query the test runs on it, and its answer worked out from the rows above.
VIEW_CASES = {
    "latest_anomalies": (
        "SELECT * FROM latest_anomalies ORDER BY window_id",
        [_latest_anomaly(row) for row in _by_window(ANOMALY_ROWS)],
    ),
    "anomalies_per_pool_day": (
        "SELECT * FROM anomalies_per_pool_day ORDER BY chain_id, pool, day",
        [
            _pool_day(P1, V3, R, 4, 3, 1, 1, -0.30, "high", "liquidity-drain, rug-pull"),
            _pool_day(P2, SUSHI, D2, 1, 1, 0, 1, -0.15, "medium", "price-dislocation"),
            _pool_day(P2, SUSHI, R, 2, 2, 0, 1, -0.06, "low", "wash-trading"),
            _pool_day(P3, V2, D10, 5, 5, 0, 1, -0.5, "high", "liquidity-drain, rug-pull"),
            _pool_day(
                P1,
                V3,
                R,
                2,
                2,
                0,
                1,
                -0.40,
                "high",
                "price-dislocation, rug-pull",
                chain_id=POLYGON,
            ),  # the same address on another chain: its own row
        ],  # fmt: skip
    ),
    "pool_score_history": (
        "SELECT * FROM pool_score_history ORDER BY window_id",
        [{k: row[k] for k in SCORE_COLUMNS} for row in _by_window(SCORES)],
    ),
    "top_pools_7d": (
        "SELECT * FROM top_pools_7d ORDER BY pool_rank",
        [
            {
                "pool_rank": 1,
                "chain_pool_rank": 1,
                "chain_id": 1,
                "dex": V3,
                "pool": P1,
                "anomalies": 4,
                "alerts": 1,
                "worst_score": -0.30,
                "max_severity": "high",
                "kinds": "liquidity-drain, rug-pull",
                "last_window_end": t(15),
            },
            {
                "pool_rank": 2,
                "chain_pool_rank": 2,
                "chain_id": 1,
                "dex": SUSHI,
                "pool": P2,
                "anomalies": 3,
                "alerts": 2,
                "worst_score": -0.15,
                "max_severity": "medium",
                "kinds": "price-dislocation, wash-trading",
                "last_window_end": t(30),
            },
            {
                "pool_rank": 3,
                "chain_pool_rank": 1,  # Polygon's first
                "chain_id": POLYGON,
                "dex": V3,
                "pool": P1,
                "anomalies": 2,
                "alerts": 1,
                "worst_score": -0.40,
                "max_severity": "high",
                "kinds": "price-dislocation, rug-pull",
                "last_window_end": t(15),
            },
        ],  # P3's anomalies are 10 days old
    ),  # fmt: skip
    "alert_verdicts": (
        "SELECT * FROM alert_verdicts ORDER BY alert_id",
        [
            _verdict(
                A_POLY,  # "137:..." sorts before "1:..."
                "acknowledged",
                "erin",
                t(45),
                1,
                t(45),
                1,
                "pool",
                "rug-pull",
                "price-dislocation, rug-pull",
                P1,
                t(0),
                t(15),
                2,
                -0.40,
                "high",
                chain_id=POLYGON,
            ),
            _verdict(
                A1,
                "confirmed",
                "bob",
                t(40),
                2,
                t(30),
                1,
                "pool",
                "rug-pull",
                "liquidity-drain, rug-pull",
                P1,
                t(-60),
                t(15),
                4,
                -0.30,
                "high",
            ),
            _verdict(
                A3,
                "not-incident",
                "U3",
                D2 + 60 * MIN,
                1,
                D2 + 60 * MIN,
                None,
                None,
                "price-dislocation",
                "price-dislocation",
                P2,
                D2,
                D2 + 5 * MIN,
                1,
                -0.15,
                "medium",
            ),
            _verdict(
                MARKET,
                "not-incident",
                "dave",
                D2 + 120 * MIN,
                1,
                D2 + 120 * MIN,
                0,
                "market",
                "market-move",
                None,
                None,
                D2 - 60 * MIN,
                D2,
                0,
                None,
                None,
            ),
        ],
    ),  # fmt: skip
    "dead_letters_per_stage_day": (
        "SELECT * FROM dead_letters_per_stage_day ORDER BY stage, day, letters DESC",
        [
            _letters("parse", R, 2, 2, t(10), t(50)),  # their messages named no chain
            _letters("parse", R, 1, 1, t(12), t(12), chain_id=POLYGON),
            _letters("score", D2, 1, 1, D2 + 30 * MIN, D2 + 30 * MIN),
        ],
    ),
}

# Every documented query (dexwatch/core/warehouse/queries), run as written: its answer.
QUERY_CASES = {
    "unreviewed_alerts_24h": [
        {"alert_id": A2, "chain_id": 1, "dex": SUSHI, "pool": P2, "thread_severity": "low",
         "thread_worst_score": -0.06, "thread_windows": 2, "thread_first_window_start": t(20),
         "thread_last_window_end": t(30)},
    ],  # A1 has a verdict, A3 and A5 are older
    "top_pool_score_history": [
        {"window_end": end, "source": source, "score": score, "is_anomaly": score < 0,
         "model_version": "chain-v7" if source == "chain" else "hourly-v2"}
        for end, source, score in (
            (t(0), "chain", 0.10), (t(0), "subgraph", -0.02), (t(5), "chain", -0.12),
            (t(10), "chain", -0.30), (t(15), "chain", -0.08), (t(20), "chain", 0.05),
        )
    ],  # P1's window of 10 days ago is out of the 7 days; P1 on Polygon is another pool
    "verdicts_by_kind": [
        {"kind": kind, "alerts": alerts, "confirmed": confirmed, "false_alarms": false,
         "acknowledged": acknowledged, "false_alarm_share": share}
        for kind, alerts, confirmed, false, acknowledged, share in (
            ("market-move", 1, 0, 1, 0, 1.0), ("price-dislocation", 1, 0, 1, 0, 1.0),
            ("rug-pull", 2, 1, 0, 1, 0.0),  # Ethereum's confirmed, Polygon's acknowledged
        )
    ],
    "anomalies_per_day_7d": [
        {"day": D2.date(), "anomalies": 1, "pools": 1, "pools_with_high_severity": 0},
        {"day": R.date(), "anomalies": 8, "pools": 3, "pools_with_high_severity": 2},
    ],
    "anomalies_per_chain_day_7d": [
        {"chain_id": chain_id, "day": day.date(), "anomalies": n, "chain_windows": windows,
         "subgraph_hours": hours, "pools": pools, "worst_score": worst}
        for chain_id, day, n, windows, hours, pools, worst in (
            (1, D2, 1, 1, 0, 1, -0.15), (1, R, 6, 5, 1, 2, -0.30),
            (POLYGON, R, 2, 2, 0, 1, -0.40),
        )
    ],
}  # fmt: skip


def test_every_view_and_documented_query_has_an_expected_answer() -> None:
    assert sorted(VIEW_CASES) == views.view_names()
    assert sorted(QUERY_CASES) == views.query_names()


def test_tables_are_partitioned_by_day_and_clustered_as_declared(bq: Emulator) -> None:
    for table in TABLES.values():
        made = bq.client.get_table(f"{bq.project}.{bq.dataset}.{table.name}")
        assert [f.name for f in made.schema] == list(table.column_names)
        if table.partition_by:
            assert made.time_partitioning.type_ == bigquery.TimePartitioningType.DAY
            assert made.time_partitioning.field == table.partition_by
        else:
            assert made.time_partitioning is None
        assert (made.clustering_fields or []) == list(table.cluster_by)


def test_every_view_is_made_from_its_file(bq: Emulator) -> None:
    for name in views.view_names():
        assert bq.client.get_table(f"{bq.project}.{bq.dataset}.{name}").table_type == "VIEW"


def test_bigquery_holds_the_duplicates_the_views_remove(bq: Emulator, local) -> None:
    # The sink appends every pane; DuckDB upserts. Without this the dedupe would go untested.
    sql = "SELECT COUNT(*) AS n FROM anomalies"
    assert bq_query(bq, sql) == [{"n": len(ANOMALIES_EARLY) + len(ANOMALY_ROWS)}]
    assert duckdb_query(local, sql) == [{"n": len(ANOMALY_ROWS)}]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(VIEW_CASES))
def test_view_answers(request: pytest.FixtureRequest, name: str, backend: str) -> None:
    sql, expected = VIEW_CASES[name]
    assert _answer(request, backend, sql) == expected


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(QUERY_CASES))
def test_documented_query_answers(request: pytest.FixtureRequest, name: str, backend: str) -> None:
    assert _answer(request, backend, views.query_sql(name)) == QUERY_CASES[name]


def test_the_documented_queries_are_the_tested_files() -> None:
    files = sorted(views.query_sql(n).strip() for n in views.query_names())
    for page in ("docs/bigquery.md", "README.md"):
        text = (ROOT / page).read_text()
        blocks = [b.strip() for b in re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)]
        assert sorted(blocks) == files, page
    doc = (ROOT / "docs" / "bigquery.md").read_text()
    for name in views.view_names():
        assert f"`{name}`" in doc, f"docs/bigquery.md does not describe {name}"


def test_views_render_as_terraform_templatefile_does() -> None:
    sql = views.bigquery_view_sql("latest_anomalies", "proj-1", "dexwatch")
    assert "`proj-1.dexwatch.anomalies`" in sql and "`proj-1.dexwatch.alert_feedback`" in sql
    assert "'$[0].name'" in sql and "${" not in sql  # a JSON path's $ is text
    local = views.duckdb_view_sql("latest_anomalies")
    assert '"anomalies"' in local and "`" not in local and "JSON_VALUE" not in local
    with pytest.raises(KeyError):
        views._TerraformTemplate("SELECT 1 FROM `${project}.${other}.t`").substitute(
            project="p", dataset="d"
        )


def test_local_views_appear_with_the_tables_they_read(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    listing = "SELECT table_name, table_type FROM information_schema.tables ORDER BY 1"
    warehouse.upsert(POOL_SCORES, SCORES[:1])
    assert warehouse.query(listing).rows == [
        ("pool_score_history", "VIEW"),
        ("pool_scores", "BASE TABLE"),
    ]  # no anomalies table: "no table, no anomaly" still holds for readers that ask
    warehouse.upsert(ALERT_FEEDBACK, [DAVE])
    names = dict(warehouse.query(listing).rows)
    assert names["anomalies"] == "BASE TABLE"  # made empty: the feedback views read it
    assert {n for n, kind in names.items() if kind == "VIEW"} == {
        "alert_verdicts", "anomalies_per_pool_day", "latest_anomalies", "pool_score_history",
        "top_pools_7d",
    }  # fmt: skip
    assert duckdb_query(warehouse, "SELECT alert_id, windows FROM alert_verdicts") == [
        {"alert_id": MARKET, "windows": 0}
    ]


def test_local_views_bring_the_tables_of_an_older_file_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    old = create_table_sql(ANOMALIES).replace('"confidence" DOUBLE NOT NULL,', "")
    assert old != create_table_sql(ANOMALIES)
    with duckdb.connect(str(path)) as conn:  # anomalies as an older version wrote them
        conn.execute(old)
        conn.execute(create_table_sql(ALERT_FEEDBACK))
    warehouse = DuckDBWarehouse(path)
    warehouse.upsert(POOL_SCORES, SCORES[:1])  # latest_anomalies reads anomalies.confidence
    assert duckdb_query(warehouse, "SELECT COUNT(confidence) AS n FROM latest_anomalies") == [
        {"n": 0}
    ]
