"""Round trips (dexwatch.core.features.blocks) on hand-made blocks, and the kind a window of
repeated ones is given (dexwatch.core.features.kinds); real Polygon days repeat none."""

from __future__ import annotations

import math

import pytest

from dexwatch.core.features.blocks import BlockSwap, find_round_trips, round_trips_in
from dexwatch.core.features.kinds import REPEATED_ROUND_TRIPS, classify
from dexwatch.core.features.slices import summarize_slice
from dexwatch.core.schemas.alert import TopFeature
from dexwatch.core.settings import PipelineSettings
from tests._blocks import POOL, SLICE_S, T0, Block, window_rows
from tests._real_days import DAYS, REAL_LOGS, real_blocks

BOT, ALICE, BOB = ("0x" + c * 40 for c in "abc")
SETTINGS = PipelineSettings(slice_s=SLICE_S, current_slices=5, baseline_slices=20)


def trips(block: Block) -> list:
    return summarize_slice(POOL, T0, block.events).round_trips


def test_a_swap_and_its_swap_back_with_nobody_between_is_a_round_trip_with_its_cost():
    # The bot buys 500 token0 for 1,000 token1 and sells the 500 straight back for 990: the
    # trip cost it 10 token1 (fees and impact).
    block = Block(1).trade(BOB, 100, -199).trade(BOT, -500, 1_000).trade(BOT, 500, -990)
    (found,) = trips(block)
    first, second = (e.tx_hash for e in block.events[1:])
    assert (found.trader, found.first_tx, found.second_tx) == (BOT, first, second)
    assert (found.block_number, found.amount0) == (1, 500)
    assert found.cost == pytest.approx(10.0)


def test_a_flash_loans_two_swaps_in_one_transaction_are_a_round_trip():
    swaps = [BlockSwap("0xa", BOT, False, 500, 1_000), BlockSwap("0xa", BOT, True, 500, 1_020)]
    (found,) = find_round_trips(7, swaps)
    assert found.first_tx == found.second_tx == "0xa"
    assert found.cost == pytest.approx(20.0)  # sold 500 for 1,000, bought back for 1,020


@pytest.mark.parametrize(
    "trades",
    [
        # Someone between: a sandwich's shape, or two-sided flow.
        [(BOT, -500, 1_000), (ALICE, -1_000, 2_100), (BOT, 500, -1_050)],
        [(BOT, -500, 1_000), (ALICE, 100, -190), (BOT, 500, -990)],
        # The same way twice: not back.
        [(BOT, -500, 1_000), (BOT, -500, 1_010)],
        # Back only 300 of 500: the position stays open.
        [(BOT, -500, 1_000), (BOT, 300, -590)],
        # Two traders.
        [(BOT, -500, 1_000), (ALICE, 500, -990)],
    ],
)
def test_others_between_one_way_trading_and_open_positions_are_no_round_trips(trades):
    block = Block(1)
    for trader, amount0, amount1 in trades:
        block.trade(trader, amount0, amount1)
    assert trips(block) == []


def round_tripped_pool(blocks: int, at: tuple[int, ...]) -> list[Block]:
    """A pool trading once a block; in the blocks ``at`` the bot also round-trips it."""
    history = []
    for n in range(blocks):
        block = Block(n).trade(BOB, -100 if n % 2 else 100, 200 if n % 2 else -199)
        if n in at:
            block.trade(BOT, -5_000, 10_000).trade(BOT, 5_000, -9_900)
        history.append(block)
    return history


def _flagged_kind(row: dict) -> str:
    """The kind of the row once a model flags it (here: for its volume)."""
    top = [TopFeature(name="volume_ratio", value=row["volume_ratio"], deviation=20.0)]
    return classify(row, top, score=-0.1).kind


def test_round_trips_in_three_blocks_of_a_window_are_its_kind_with_the_trader_and_cost():
    rows = window_rows(round_tripped_pool(40, at=(30, 32, 34)), SETTINGS)
    (row,) = [r for r in rows if int(r["window_end"].timestamp()) == T0 + SLICE_S * 35]
    listed = round_trips_in(row["patterns"])
    assert [t.block_number for t in listed] == [30, 32, 34]
    assert {t.trader for t in listed} == {BOT}
    top = [TopFeature(name="volume_ratio", value=row["volume_ratio"], deviation=20.0)]
    found = classify(row, top, score=-0.1)
    assert found.kind == "round-trips" and REPEATED_ROUND_TRIPS == 3
    words = " ".join(found.evidence)
    assert BOT in words and "3 block(s) (30 to 34)" in words and "cost of 300" in words


def test_one_or_two_round_trips_are_no_incident():
    """An arbitrageur's correction of its own overshoot: the window keeps the kind its sizes
    give (here a volume spike)."""
    rows = window_rows(round_tripped_pool(40, at=(30, 34)), SETTINGS)
    listed = [r for r in rows if round_trips_in(r["patterns"])]
    assert listed and {_flagged_kind(r) for r in listed} == {"volume-spike"}


def test_a_sandwich_and_a_round_trip_in_one_window_keep_their_own_patterns():
    block = (Block(1).trade(BOT, -500, 1_000).trade(ALICE, -1_000, 2_100)
             .trade(BOT, 500, -1_050).trade(BOB, -200, 400).trade(BOB, 200, -396))  # fmt: skip
    summary = summarize_slice(POOL, T0, block.events)
    assert [s.attacker for s in summary.sandwiches] == [BOT]
    assert [t.trader for t in summary.round_trips] == [BOB]


@pytest.mark.skipif(not REAL_LOGS.exists(), reason="../shared/data/real-logs absent")
@pytest.mark.parametrize("day", DAYS)
def test_real_polygon_days_repeat_no_round_trip(day):
    """Thousands of real swaps with arbitrage bots and routers: one round trip in three
    days (2022-01-05), never one trader's in two blocks of a minute."""
    address, by_block = real_blocks(day)
    found = [
        trip
        for events in by_block.values()
        for trip in summarize_slice(address, 0, events).round_trips
    ]
    assert len(found) == (day == "2022-01-05")
    assert math.isfinite(sum(t.cost for t in found))
