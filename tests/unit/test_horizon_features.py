"""liquidity_lost_1h and liquidity_lost_24h on hand-made 12 s blocks: a drain too slow for any
one window adds up over the hour, one too slow for the hour over the day, while providers
moving their liquidity around and just-in-time liquidity do not."""

from __future__ import annotations

import numpy as np
import pytest

from beam_pipelines.transforms.pool_windows import pool_windows
from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.features.horizon import hour_steps, liquidity_step
from dexwatch.core.features.slices import summarize_slice
from dexwatch.core.schemas.alert import kind_of
from dexwatch.core.settings import PipelineSettings
from model.chain_window import TrainingParams, train_detector
from tests._blocks import JIT_BOT, LEVEL, LP, POOL, SLICE_S, T0, WIDE, Block
from tests._detectors import chain_rows

SETTINGS = PipelineSettings(slice_s=SLICE_S, current_slices=4, baseline_slices=20)
KEY = f"1:uniswap_v3:{POOL}"


def rows_of(blocks: list[Block]) -> list[dict]:
    slices = [summarize_slice(POOL, T0 + SLICE_S * b.number, b.events) for b in blocks]
    return list(pool_windows((KEY, slices), SETTINGS))


def slow_drain(share_per_block: float, blocks: int, start: int = 30) -> list[Block]:
    """Half an hour... of quiet swaps, then a provider taking ``share_per_block`` of the
    pool's liquidity every block."""
    quiet = [Block(n).swap() for n in range(start)]
    level, drained = float(LEVEL), []
    for n in range(start, start + blocks):
        taken = level * share_per_block
        level -= taken
        drained.append(Block(n).burn(LP, *WIDE, int(taken)).swap(liquidity=int(level)))
    return [*quiet, *drained]


def model_with_ordinary_exits():
    """Trained on windows where providers take up to 5 % of a pool in a minute now and then:
    a window that removes 2 % is ordinary to it."""
    rows = chain_rows(600, seed=11)
    rng = np.random.default_rng(11)
    for row in rows[::10]:
        share = float(rng.uniform(0.0, 0.05))
        row["liquidity_removed_share"], row["net_liquidity_change"] = share, -share
    return train_detector(rows, TrainingParams(n_estimators=50))


def scores(detector, rows: list[dict]):
    return detector.score([[row[name] for name in FEATURE_NAMES] for row in rows])


def test_a_slow_drain_adds_up_over_the_hour_while_each_window_stays_ordinary():
    # Half a percent a block: 53 % of the pool in 30 minutes, 2 % in any one window.
    rows = rows_of(slow_drain(0.005, 150))
    assert max(row["liquidity_removed_share"] for row in rows) < 0.021
    last = next(r for r in rows if r["window_end"].timestamp() == T0 + SLICE_S * 180)
    assert last["liquidity_lost_1h"] == pytest.approx(1 - 0.995**150, rel=1e-6)
    detector = model_with_ordinary_exits()
    found = scores(detector, rows)
    flagged = [row for row, hit in zip(rows, found.is_anomaly, strict=True) if hit]
    assert flagged, "the slow drain is flagged"
    first = flagged[0]
    # Within a few minutes of the drain's start, long before half the pool is gone.
    assert first["window_end"].timestamp() <= T0 + SLICE_S * (30 + 40)
    assert first["liquidity_lost_1h"] < 0.2
    top = found.top_features[rows.index(first)][0]
    assert top.name == "liquidity_lost_1h"
    assert kind_of(top.name, top.value, top.deviation) == "liquidity-drain"
    # The same windows without the hour's view (nor the day's, which sees the same): nothing
    # to see.
    blind = [{**row, "liquidity_lost_1h": 0.0, "liquidity_lost_24h": 0.0} for row in rows]
    assert not scores(detector, blind).is_anomaly.any()


def test_a_drain_of_three_percent_an_hour_adds_up_over_the_day():
    # A quarter of a percent every five minutes for eight hours: 3 % an hour, under the
    # hour's limit every hour; 21 % of the pool by the end.
    blocks = [Block(n).swap() for n in range(30)]
    level = float(LEVEL)
    for n in range(30, 30 + 8 * 300, 5):
        if n % 25 == 0:
            taken = level * 0.0025
            level -= taken
            blocks.append(Block(n).burn(LP, *WIDE, int(taken)).swap(liquidity=int(level)))
        else:
            blocks.append(Block(n).swap(liquidity=int(level)))
    rows = rows_of(blocks)
    assert max(row["liquidity_lost_1h"] for row in rows) < 0.031
    assert rows[-1]["liquidity_lost_24h"] == pytest.approx(1 - 0.9975**96, rel=1e-3)
    detector = model_with_ordinary_exits()
    found = scores(detector, rows)
    flagged = [row for row, hit in zip(rows, found.is_anomaly, strict=True) if hit]
    assert flagged, "the day's loss is flagged"
    first = flagged[0]
    # When the day's loss passes its limit (a fifth of the way to its floor of half the pool,
    # for this model), hours before the drain ends.
    assert 0.09 < first["liquidity_lost_24h"] < 0.12
    top = found.top_features[rows.index(first)][0]
    assert top.name == "liquidity_lost_24h"
    assert kind_of(top.name, top.value, top.deviation) == "liquidity-drain"
    blind = [{**row, "liquidity_lost_24h": 0.0} for row in rows]
    assert not scores(detector, blind).is_anomaly.any()


def test_providers_moving_liquidity_within_the_hour_and_jit_blocks_lose_nothing():
    blocks = [Block(n).swap() for n in range(30)]
    for n in range(30, 300, 10):
        # Every two minutes a provider moves a third of the pool to a new wide range, and a
        # bot wraps a swap in 50 times the pool's liquidity for one block.
        blocks.append(Block(n).burn(LP, *WIDE, LEVEL // 3).swap(liquidity=LEVEL - LEVEL // 3))
        blocks.append(Block(n + 1).mint(LP, -900, 1100, LEVEL // 3).swap())
        blocks.append(
            Block(n + 2)
            .mint(JIT_BOT, -10, 10, 50 * LEVEL)
            .swap()
            .burn(JIT_BOT, -10, 10, 50 * LEVEL)
        )
        blocks.extend(Block(m).swap() for m in range(n + 3, n + 10))
    rows = rows_of(blocks)
    # A third of the pool is gone for one block at a time, and back the next: the hour
    # never adds the moves up.
    assert max(row["liquidity_lost_1h"] for row in rows) == pytest.approx(1 / 3)
    assert rows[-1]["liquidity_lost_1h"] < 1e-9
    assert sum(row["liquidity_lost_1h"] > 1e-9 for row in rows) <= 27 * 5
    # Each move is a step down then a step back up, each a share of the level before it.
    slices = [summarize_slice(POOL, T0 + SLICE_S * b.number, b.events) for b in blocks]
    steps = [step for _, step in hour_steps(slices)[0]]
    assert len(steps) == 2 * 27
    assert steps[0] == pytest.approx(np.log(1 - 1 / 3), rel=1e-6)


def test_a_pools_first_slice_has_no_level_before_it_to_lose_from():
    launch = summarize_slice(POOL, T0, Block(0).mint(LP, *WIDE, LEVEL).swap().events)
    assert liquidity_step(None, launch) == 0.0
    # A rug a minute later: everything the launch put in.
    rug = summarize_slice(POOL, T0 + 60, Block(5).burn(LP, *WIDE, LEVEL).swap(liquidity=1).events)
    assert liquidity_step(launch, rug) == pytest.approx(np.log(1e-6))
    rows = rows_of(
        [Block(0).mint(LP, *WIDE, LEVEL).swap(), Block(5).burn(LP, *WIDE, LEVEL).swap(liquidity=1)]
    )
    assert max(row["liquidity_lost_1h"] for row in rows) == pytest.approx(1.0, abs=1e-5)


def test_the_hour_looks_back_one_hour_only():
    # A 30 % loss in one block, then an hour and more of quiet trading.
    blocks = [Block(n).swap() for n in range(10)]
    blocks.append(Block(10).burn(LP, *WIDE, LEVEL * 3 // 10).swap(liquidity=LEVEL * 7 // 10))
    blocks += [Block(n).swap(liquidity=LEVEL * 7 // 10) for n in range(11, 330, 5)]
    burn_end = T0 + SLICE_S * 11
    lost = {int(row["window_end"].timestamp()): row["liquidity_lost_1h"] for row in rows_of(blocks)}
    assert lost[burn_end] == pytest.approx(0.3)
    within = [v for end, v in lost.items() if burn_end <= end <= burn_end - SLICE_S + 3600]
    after = [v for end, v in lost.items() if end > burn_end - SLICE_S + 3600]
    assert len(within) > 50 and within == pytest.approx([0.3] * len(within))
    assert after and set(after) == {0.0}


def test_burns_between_a_quiet_pools_swaps_count_against_the_level_they_left():
    # No swap reports the level between the Burns: it carries over, moved by each of them.
    blocks = [Block(n).swap() for n in range(5)]
    blocks += [Block(n).burn(LP, *WIDE, LEVEL // 10) for n in range(5, 9)]
    blocks.append(Block(9).swap(liquidity=LEVEL * 6 // 10))
    last = rows_of(blocks)[-1]
    assert last["liquidity_lost_1h"] == pytest.approx(0.4)


def test_a_fast_drain_is_the_windows_and_the_hours_not_the_days():
    # Half the pool in one block, then two hours of quiet swaps: the window and the hour see
    # it; the day leaves it out, so that the pool's next hours are judged afresh.
    blocks = [Block(n).swap() for n in range(30)]
    blocks.append(Block(30).burn(LP, *WIDE, LEVEL // 2).swap(liquidity=LEVEL - LEVEL // 2))
    blocks += [Block(n).swap(liquidity=LEVEL - LEVEL // 2) for n in range(31, 31 + 600, 5)]
    rows = rows_of(blocks)
    assert max(row["liquidity_removed_share"] for row in rows) == pytest.approx(0.5, rel=1e-3)
    assert max(row["liquidity_lost_1h"] for row in rows) == pytest.approx(0.5, rel=1e-3)
    assert max(row["liquidity_lost_24h"] for row in rows) == 0.0
