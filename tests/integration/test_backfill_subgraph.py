"""`dexwatch backfill --source subgraph`: pool hours read through the real subgraph publisher
from the local stand-in for The Graph, scored by the hourly branch in batch; resumed after
an interruption, after indexing lag, and once the hourly model exists."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from dexwatch.app.workflows.backfill import BackfillError, backfill_subgraph
from dexwatch.core.schemas.pool_hour import PoolHour
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import open_warehouse
from infra.local.subgraph.rows import (
    H0,
    HOUR,
    default_sources,
    pool_address,
    v2_pair,
    v2_row,
    v3_pool,
    v3_row,
)
from infra.local.subgraph.schema import StandInSubgraph
from infra.local.subgraph.server import SubgraphStandIn
from model.hourly import train_hourly_detector
from tests.conftest import make_settings

V3_SOURCE, V2_SOURCE = default_sources()
POOL, PAIR = pool_address(0xA), pool_address(0xB)
HOURS = 72
# The backfilled range: the last day of the three, so that its hours have their history.
START, END = H0 + 48 * HOUR, H0 + HOURS * HOUR


def _rows(seed: int = 5) -> tuple[list[dict], list[dict]]:
    """Three days of both pools' hours, volumes with a daily rhythm and noise; every tenth
    hour quiet (no row: the publisher fills it)."""
    rng = np.random.default_rng(seed)
    v3, v2 = [], []
    for i in range(HOURS):
        if i % 10 == 7:
            continue
        rhythm = 1 + 0.5 * np.sin(2 * np.pi * i / 24)
        hour = H0 + i * HOUR
        v3.append(v3_row(POOL, hour, volume=round(50_000 * rhythm * rng.lognormal(0, 0.2), 2)))
        v2.append(v2_row(PAIR, hour, volume=round(20_000 * rhythm * rng.lognormal(0, 0.2), 2)))
    return v3, v2


def _standin(indexed_until: int) -> SubgraphStandIn:
    v3, v2 = _rows()
    return SubgraphStandIn(
        {
            V3_SOURCE.path: StandInSubgraph("v3", v3, [v3_pool(POOL)], block=(10, indexed_until)),
            V2_SOURCE.path: StandInSubgraph("v2", v2, [v2_pair(PAIR)], block=(10, indexed_until)),
        }
    )


def _settings(state_dir: Path, standin: SubgraphStandIn) -> Settings:
    return make_settings(
        state_dir,
        subgraph={
            "endpoint_url": standin.url,
            "hours_per_batch": 6,
            "retry": {"backoff_base_s": 0.001, "backoff_max_s": 0.01},
        },
        model={"hourly_path": str(state_dir / "hourly.joblib")},
    )


def _utc(unix_s: int) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


class _Interrupted(Exception):
    pass


def test_a_subgraph_backfill_resumes_through_interruption_lag_and_a_missing_model(tmp_path):
    start, end = _utc(START), _utc(END)
    calls = []

    def interrupt_on_the_third_call(stage: str, done: int, total: int) -> None:
        calls.append(done)
        # The bar counts what its total counts (hours read against the hours to read).
        assert 0 <= done <= total, (stage, done, total)
        if len(calls) == 3:
            raise _Interrupted

    with _standin(indexed_until=END + 60) as standin:
        settings = _settings(tmp_path, standin)
        with pytest.raises(_Interrupted):
            backfill_subgraph(settings, start, end, interrupt_on_the_third_call)
    with _standin(indexed_until=END - 5 * HOUR) as lagging:
        with pytest.raises(BackfillError, match="not indexed the whole range"):
            backfill_subgraph(_settings(tmp_path, lagging), start, end)
    with _standin(indexed_until=END + 60) as standin:
        settings = _settings(tmp_path, standin)
        with pytest.raises(BackfillError, match="no hourly model"):
            backfill_subgraph(settings, start, end)

        recording = next((tmp_path / "backfill").glob("subgraph-*")) / "recording"
        hours = [
            PoolHour.from_json(line)
            for line in (recording / "pool-hourly.jsonl").read_bytes().splitlines()
        ]
        # The range and the day before it, each pool and hour once, quiet hours filled.
        ids = [hour.hour_id for hour in hours]
        assert len(ids) == len(set(ids)) == 2 * 48
        assert {h.hour_start for h in hours} == set(range(START - 24 * HOUR, END, HOUR))
        assert any(hour.filled for hour in hours)

        # Any hourly model will do. Training takes the hours whose day before is known: these
        # 48 a pool give 24, too few, so the same hours two days earlier come with them.
        earlier = [h.model_copy(update={"hour_start": h.hour_start - 48 * HOUR}) for h in hours]
        train_hourly_detector(earlier + hours).save(settings.hourly_model_path)
        resumed = backfill_subgraph(settings, start, end)
    assert resumed.resumed
    assert (resumed.items, resumed.rows) == (2 * 48, 2 * 24)
    scored = open_warehouse(settings).query(
        "select pool, count(*), min(epoch(window_end)), max(epoch(window_end)) "
        "from pool_scores where source = 'subgraph' group by pool order by pool"
    )
    # Every hour ending in (start, end]: those starting at START .. END - 1 h.
    assert scored.rows == [(POOL, 24, START + HOUR, END), (PAIR, 24, START + HOUR, END)]
