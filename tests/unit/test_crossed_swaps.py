"""Crossed swaps (dexwatch.core.features.blocks): two traders swapping the same amount back
and forth next to each other in a block. Found on hand-made blocks; a wash of 12 s blocks
that the per-slice pair count cannot see is flagged by any model and named wash trading; the
real Polygon days never cross more than once a minute."""

from __future__ import annotations

import pytest

from dexwatch.core.features.blocks import BlockSwap, crossed_swaps
from dexwatch.core.features.chain import FEATURE_NAMES, INCIDENT_FLOORS
from dexwatch.core.features.kinds import classify
from dexwatch.core.features.slices import summarize_slice
from dexwatch.core.settings import PipelineSettings
from model.chain_window import TrainingParams, train_detector
from tests._blocks import POOL, SLICE_S, T0, Block, window_rows
from tests._detectors import chain_rows
from tests._real_days import DAYS, REAL_LOGS, real_blocks

BUYER, SELLER, ALICE, BOB = ("0x" + c * 40 for c in "abcd")
TRADERS = ["0x" + f"{n:02x}" * 20 for n in range(16, 24)]
SETTINGS = PipelineSettings(slice_s=SLICE_S, current_slices=4, baseline_slices=20)


def crossed(block: Block) -> int:
    return summarize_slice(POOL, T0, block.events).crossed_swaps


def test_two_traders_trading_the_same_amount_back_and_forth_cross_once_a_pair():
    # Buyer, seller, buyer, seller: two pairs (each swap in one), the seller's 495 within a
    # tenth of the buyer's 500.
    block = (Block(1).trade(BUYER, -500, 1_000).trade(SELLER, 495, -985)
             .trade(BUYER, -500, 1_001).trade(SELLER, 495, -986))  # fmt: skip
    assert crossed(block) == 2
    swaps = [BlockSwap("0x1", BUYER, True, 500, 1_000), BlockSwap("0x2", SELLER, False, 460, 900)]
    assert crossed_swaps(swaps) == 1


@pytest.mark.parametrize(
    "trades",
    [
        # One trader back and forth: a round trip, not two traders crossing.
        [(BUYER, -500, 1_000), (BUYER, 500, -990)],
        # The same way.
        [(BUYER, -500, 1_000), (SELLER, -500, 1_010)],
        # Back another amount: ordinary two-sided flow.
        [(BUYER, -500, 1_000), (SELLER, 300, -590)],
        # Someone between.
        [(BUYER, -500, 1_000), (ALICE, -80, 161), (SELLER, 500, -990)],
    ],
)
def test_round_trips_one_way_trading_other_amounts_and_others_between_do_not_cross(trades):
    block = Block(1)
    for trader, amount0, amount1 in trades:
        block.trade(trader, amount0, amount1)
    assert crossed(block) == 0


def washed_pool(blocks: int, wash_from: int) -> list[Block]:
    """A pool of 12 s blocks, four ordinary swaps a block (two each way, sizes that never
    close one another); from ``wash_from`` on, two addresses add four swaps a block, two
    crossed pairs, as many swaps as the rest of the pool."""
    history = []
    for n in range(blocks):
        block = Block(n)
        for i, size in enumerate((100, 230, 170, 310)):
            trader = TRADERS[(n + i) % len(TRADERS)]
            sign = 1 if (n + i) % 2 else -1
            block.trade(trader, sign * size, -sign * 2 * size)
        if n >= wash_from:
            for _ in range(2):
                block.trade(BUYER, -500, 1_000).trade(SELLER, 495, -985)
        history.append(block)
    return history


def test_a_wash_as_busy_as_its_pool_is_flagged_by_crossed_swaps_in_its_third_block():
    """On 12 s blocks a wash at the pool's own swap rate does not out-trade the pool in any
    slice (pair_two_way_excess stays far from its floor). Two crossed pairs a block reach the
    floor of six in the wash's third block: any model flags the window, as wash trading, and
    none of the windows before."""
    assert INCIDENT_FLOORS["crossed_swaps"] == 6.0
    detector = train_detector(chain_rows(400), TrainingParams(n_estimators=30))
    rows = window_rows(washed_pool(40, wash_from=30), SETTINGS)
    scores = detector.score([[r[name] for name in FEATURE_NAMES] for r in rows])
    by_end = {
        (int(r["window_end"].timestamp()) - T0) // SLICE_S: (r, hit, top)
        for r, hit, top in zip(rows, scores.is_anomaly, scores.top_features, strict=True)
    }
    assert [by_end[n][0]["crossed_swaps"] for n in (31, 32, 33, 34)] == [2, 4, 6, 8]
    assert max(r["pair_two_way_excess"] for r in rows) < 1.0
    first = min(n for n, (_, hit, _) in by_end.items() if hit)
    assert first == 33
    row, _, top = by_end[33]
    assert classify(row, top, score=-0.1).kind == "wash-trading"


@pytest.mark.skipif(not REAL_LOGS.exists(), reason="../shared/data/real-logs absent")
@pytest.mark.parametrize("day", DAYS)
def test_real_polygon_days_cross_at_most_once_a_minute(day):
    """Thousands of real swaps in 2 s blocks, arbitrage bots and routers among them: a
    crossed pair is rare, and no minute holds two (the floor is six)."""
    address, by_block = real_blocks(day)
    per_block = {
        events[0].block_timestamp: summarize_slice(address, 0, events).crossed_swaps
        for events in by_block.values()
    }
    busiest = max(
        sum(n for t, n in per_block.items() if start <= t < start + 60) for start in per_block
    )
    assert busiest <= 1
    assert sum(per_block.values()) >= (day != "2021-12-22")


def test_a_crossed_pair_or_two_below_the_floor_never_names_a_window():
    """The forest does not see crossed swaps: a window flagged for its price, with one
    crossed pair in it (0 is the median, so one is "1,000 robust sd" off), is named for its
    price; six name it."""
    detector = train_detector(chain_rows(400), TrainingParams(n_estimators=30))
    moved = {**chain_rows(1, seed=9)[0], "price_change": 0.2, "price_range": 0.2}
    rows = [{**moved, "crossed_swaps": n} for n in (0.0, 1.0, 5.0, 6.0)]
    scores = detector.score([[r[name] for name in FEATURE_NAMES] for r in rows])
    assert scores.is_anomaly.all()
    named = [[t.name for t in top] for top in scores.top_features]
    assert all("crossed_swaps" not in names for names in named[:3])
    assert named[0] == named[1] == named[2] and named[0][0].startswith("price")
    assert named[3][0] == "crossed_swaps"
