"""The hourly path in batch: a replay of recorded hours into a warehouse written before the
tables had hourly columns."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from beam_pipelines.options import batch_options
from beam_pipelines.pipeline import build_replay_pipeline
from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.features.hourly import HOURLY_FEATURE_NAMES, MIN_PREVIOUS_HOURS
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour
from dexwatch.core.schemas.tables import POOL_SCORES, Table
from dexwatch.core.warehouse.duckdb import DuckDBWarehouse
from model.chain_window import train_detector
from model.hourly import train_hourly_detector
from tests.conftest import make_settings

PAIR = "0x" + "11" * 20
T0 = 1_800_000_000 // HOUR_S * HOUR_S


def _old_pool_scores() -> Table:
    """pool_scores as declared before the hourly path: chain features required."""
    columns = tuple(
        dataclasses.replace(c, required=True) if c.name in FEATURE_NAMES else c
        for c in POOL_SCORES.columns
        if c.name not in HOURLY_FEATURE_NAMES
    )
    return dataclasses.replace(POOL_SCORES, columns=columns)


def test_hours_replay_into_a_warehouse_of_the_old_schema(tmp_path):
    settings = make_settings(
        tmp_path / "state",
        model={"path": str(tmp_path / "chain.joblib"), "hourly_path": str(tmp_path / "h.joblib")},
    )
    old = _old_pool_scores()
    chain_row = {
        "window_id": "31337:0xaa:1", "chain_id": 31337, "dex": "sushiswap", "pool": "0xaa",
        "source": "chain", "window_start": datetime.fromtimestamp(0, UTC),
        "window_end": datetime.fromtimestamp(1, UTC), "events": 3, "score": 0.1,
        "is_anomaly": False, "top_features": "[]", "model_version": "m",
        "scored_at": datetime.now(UTC), **dict.fromkeys(FEATURE_NAMES, 0.5),
    }  # fmt: skip
    warehouse = DuckDBWarehouse(settings.warehouse_path)
    warehouse.upsert(old, [chain_row])
    columns_sql = "select column_name from information_schema.columns where table_name = "
    assert "volume_usd" not in {r[0] for r in warehouse.query(columns_sql + "'pool_scores'").rows}

    hours = [
        PoolHour(chain_id=31337, dex="sushiswap", pool=PAIR, hour_start=T0 + i * HOUR_S,
                 volume_usd=1e5 * (1 + (i % 5) / 50), tvl_usd=2e6, tx_count=900 + i % 7,
                 liquidity=1e22, fees_usd=1.0, token0_price=1.0, token1_price=1.0,
                 indexed_block=i)
        for i in range(80)
    ]  # fmt: skip
    train_hourly_detector(hours).save(settings.hourly_model_path)
    train_detector([dict.fromkeys(FEATURE_NAMES, float(i % 9)) for i in range(60)]).save(
        settings.model_path
    )
    recorded = tmp_path / "hours.jsonl"
    recorded.write_bytes(b"".join(h.to_json() + b"\n" for h in hours) + b"{broken\n")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"")

    build_replay_pipeline(
        settings, batch_options(), events, hours_file=recorded
    ).run().wait_until_finish()

    # The old table gained the hourly columns, its chain columns became nullable, and its
    # row is still there.
    rows = warehouse.query(
        "select source, count(*), count(volume_usd), count(volume_ratio) from pool_scores "
        "group by source order by source"
    ).rows
    scored = len(hours) - MIN_PREVIOUS_HOURS  # every hour after the warm-up
    assert rows == [("chain", 1, 0, 1), ("subgraph", scored, scored, 0)]
    dead = warehouse.query("select stage, reason from dead_letters").rows
    assert len(dead) == 1 and dead[0][0] == "parse-hourly"
