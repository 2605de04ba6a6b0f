"""The hourly path's local pieces: PoolHours computed from pool events (the hourly
bootstrap's data), and a replay of recorded hours into a warehouse written before the
tables had hourly columns."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from beam_pipelines.options import batch_options
from beam_pipelines.pipeline import build_replay_pipeline
from dexwatch.contracts.deployment import Accounts, LocalDeployment, PoolInfo, TokenInfo
from dexwatch.contracts.features import FEATURE_NAMES
from dexwatch.contracts.hourly_features import HOURLY_FEATURE_NAMES
from dexwatch.contracts.pool_event import PoolEvent
from dexwatch.contracts.pool_hour import HOUR_S, PoolHour
from dexwatch.contracts.tables import POOL_SCORES, Table
from dexwatch.warehouse.duckdb_backend import DuckDBWarehouse
from infra.local.pool_hours import pool_hours_from_events
from model.chain_window import train_detector
from model.hourly import train_hourly_detector
from tests.conftest import make_settings

PAIR = "0x" + "11" * 20
T0 = 1_800_000_000 // HOUR_S * HOUR_S
E18 = 10**18


def _deployment() -> LocalDeployment:
    tokens = {
        symbol: TokenInfo(symbol=symbol, address=f"0x{i:040x}", decimals=18, initial_usd_price=p)
        for i, (symbol, p) in enumerate((("WETH", 3000.0), ("USDC", 1.0)), start=1)
    }
    pair = PoolInfo(
        name="sushiswap:WETH/USDC", dex="sushiswap", protocol="v2", address=PAIR,
        token0="WETH", token1="USDC",
    )  # fmt: skip
    accounts = Accounts(deployer="0x01", liquidity_providers=[], traders=[], adversaries=[])
    return LocalDeployment(
        chain_id=31337, rpc_url="http://127.0.0.1:1", deployed_at_block=1, tokens=tokens,
        factories=[], pools=[pair], periphery={}, accounts=accounts,
    )  # fmt: skip


def _event(n: int, t: int, name: str, tx: int | None = None, **args: int) -> PoolEvent:
    return PoolEvent(
        chain_id=31337, dex="sushiswap", pool=PAIR, event=name, block_number=n,
        block_hash=f"0x{n:064x}", block_timestamp=t, tx_hash=f"0x{tx or n:064x}", log_index=0,
        args={k: str(v) for k, v in args.items()},
    )  # fmt: skip


def test_pool_hours_from_v2_events():
    # Reserves 100 WETH / 300,000 USDC: WETH at 3000 USD, TVL 600k USD.
    sync = dict(reserve0=100 * E18, reserve1=300_000 * E18)
    swap = dict(amount0In=0, amount1In=3000 * E18, amount0Out=E18, amount1Out=0)
    events = [
        _event(1, T0 - 100, "Sync", **sync),  # before the first whole hour: state only
        _event(2, T0 + 10, "Sync", tx=2, **sync),
        _event(3, T0 + 10, "Swap", tx=2, **swap),  # the same transaction
        _event(4, T0 + 20, "Sync", tx=4, **sync),
        _event(5, T0 + 20, "Swap", tx=4, **swap),
        # Nothing in the second hour: filled. The third hour is still open at the end.
        _event(6, T0 + 2 * HOUR_S + 5, "Sync", **sync),
    ]
    hours = pool_hours_from_events(events, _deployment())
    assert [(h.hour_start, h.filled) for h in hours] == [(T0, False), (T0 + HOUR_S, True)]
    first, quiet = hours
    # Each swap: 1 WETH (3000 USD) against 3000 USDC, the mean of both sides.
    assert first.volume_usd == pytest.approx(6000.0)
    assert first.tx_count == 2 and first.tvl_usd == pytest.approx(600_000.0)
    assert first.token0_price == pytest.approx(3000.0)
    assert first.fees_usd == pytest.approx(18.0)
    assert quiet.volume_usd == 0.0 and quiet.tx_count == 0
    assert quiet.tvl_usd == first.tvl_usd and quiet.indexed_block == 6


def test_pool_hours_from_v3_events_count_balances_and_in_range_liquidity():
    v3 = PoolInfo(
        name="uniswap_v3:WETH/USDC:500", dex="uniswap_v3", protocol="v3", address=PAIR,
        token0="WETH", token1="USDC", fee=500,
    )  # fmt: skip
    deployment = _deployment().model_copy(update={"pools": [v3]})
    wide = dict(tickLower=-887220, tickUpper=887220)

    def event(n: int, t: int, name: str, **args: int) -> PoolEvent:
        return dataclasses.replace(_event(n, t, name, **args), dex="uniswap_v3")

    events = [
        event(1, T0 - 50, "Mint", amount=10**21, amount0=10 * E18, amount1=30_000 * E18, **wide),
        # 1 WETH out for 3000 USDC in, at 3000 USDC a WETH.
        event(2, T0 + 10, "Swap", amount0=-E18, amount1=3000 * E18,
              sqrtPriceX96=int(3000**0.5 * 2**96), liquidity=5 * 10**21, tick=80_000),
        event(3, T0 + 20, "Burn", amount=10**21, amount0=E18, amount1=3000 * E18, **wide),
        event(4, T0 + HOUR_S + 5, "Swap", amount0=0, amount1=0,
              sqrtPriceX96=int(3000**0.5 * 2**96), liquidity=4 * 10**21, tick=80_000),
    ]  # fmt: skip
    (hour,) = pool_hours_from_events(events, deployment)
    assert hour.volume_usd == pytest.approx(3000.0)
    assert hour.fees_usd == pytest.approx(1.5)
    # 10 - 1 (swapped out) - 1 (burned) WETH and 30,000 + 3000 - 3000 USDC.
    assert hour.tvl_usd == pytest.approx(8 * 3000 + 30_000)
    assert hour.liquidity == pytest.approx(4e21)  # the swap's level less the burn in range
    assert hour.token0_price == pytest.approx(3000.0) and hour.tx_count == 2


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
    assert rows == [("chain", 1, 0, 1), ("subgraph", 60, 60, 0)]
    dead = warehouse.query("select stage, reason from dead_letters").rows
    assert len(dead) == 1 and dead[0][0] == "parse-hourly"
