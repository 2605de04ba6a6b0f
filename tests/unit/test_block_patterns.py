"""Same-block patterns (dexwatch.core.features.blocks) on hand-made blocks: a sandwich is
found with its attacker, victims and the value it took; round trips, two-sided flow and
losing patterns are not sandwiches; real Polygon days have none."""

from __future__ import annotations

import orjson
import pytest

from beam_pipelines.transforms.threads import AlertThreads
from dexwatch.core.features.blocks import BlockSwap, find_sandwiches, sandwiches_in
from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.features.slices import SliceBuilder, summarize_slice
from dexwatch.core.settings import PipelineSettings
from model.chain_window import TrainingParams, train_detector
from tests._blocks import POOL, SLICE_S, T0, Block, window_rows
from tests._detectors import chain_rows
from tests._real_days import DAYS, REAL_LOGS, real_blocks

BOT, ALICE, BOB = ("0x" + c * 40 for c in "abc")
SETTINGS = PipelineSettings(slice_s=SLICE_S, current_slices=4, baseline_slices=20)


def sandwiched(block: Block) -> list:
    return summarize_slice(POOL, T0, block.events).sandwiches


def test_a_sandwich_is_found_with_its_attacker_victims_and_take():
    # The bot buys 500 token0 for 1,000 token1, Alice buys after it at a worse price, the
    # bot sells its 500 back for 1,050: it took 50 token1.
    block = (Block(1).trade(BOT, -500, 1_000).trade(ALICE, -1_000, 2_100)
             .trade(BOT, 500, -1_050))  # fmt: skip
    (found,) = sandwiched(block)
    front, victim, back = (e.tx_hash for e in block.events)
    assert (found.attacker, found.front_tx, found.back_tx) == (BOT, front, back)
    assert found.victim_txs == (victim,)
    assert found.extracted == pytest.approx(50.0)
    assert found.block_number == 1


def test_selling_first_and_buying_back_is_a_sandwich_too():
    # The bot sells 500 token0 for 1,000, Alice sells after it, the bot buys 480 back for
    # 930: on the 480 it closed, 480 * (1000/500 - 930/480) = 30 token1.
    block = Block(1).trade(BOT, 500, -1_000).trade(ALICE, 800, -1_500).trade(BOT, -480, 930)
    (found,) = sandwiched(block)
    assert found.extracted == pytest.approx(480 * (1_000 / 500 - 930 / 480))


def test_two_victims_and_two_sandwiches_in_one_block():
    block = (
        Block(1).trade(BOT, -500, 1_000).trade(ALICE, -100, 210).trade(BOB, -100, 212)
        .trade(BOT, 500, -1_040)
        .trade(BOB, 300, -600).trade(ALICE, 100, -190).trade(BOB, -300, 580)
    )  # fmt: skip
    first, second = sandwiched(block)
    assert (first.attacker, len(first.victim_txs)) == (BOT, 2)
    assert (second.attacker, len(second.victim_txs)) == (BOB, 1)


@pytest.mark.parametrize(
    "trades",
    [
        # A round trip with nobody between: an arbitrageur's, not a sandwich.
        [(BOT, -500, 1_000), (BOT, 500, -1_050), (ALICE, -100, 210)],
        # Another trader going the other way between: two-sided flow.
        [(BOT, -500, 1_000), (ALICE, 100, -190), (BOT, 500, -1_050)],
        # The "victim" trades against the front-run's direction after a same-way one.
        [(BOT, -500, 1_000), (ALICE, -100, 210), (BOB, 100, -190), (BOT, 500, -1_050)],
        # The bot sells back at a loss: no value taken.
        [(BOT, -500, 1_000), (ALICE, -1_000, 2_100), (BOT, 500, -990)],
        # The bot buys twice: not back.
        [(BOT, -500, 1_000), (ALICE, -1_000, 2_100), (BOT, -500, 1_100)],
        # The bot sells back 300 of its 500, at a profit: it did not close its position.
        [(BOT, -500, 1_000), (ALICE, -1_000, 2_100), (BOT, 300, -640)],
    ],
)
def test_round_trips_two_sided_flow_and_losing_patterns_are_not_sandwiches(trades):
    block = Block(1)
    for trader, amount0, amount1 in trades:
        block.trade(trader, amount0, amount1)
    assert sandwiched(block) == []


def test_front_and_back_in_one_transaction_is_not_a_sandwich():
    swaps = [BlockSwap("0xa", BOT, True, 500, 1_000), BlockSwap("0xb", ALICE, True, 1_000, 2_100),
             BlockSwap("0xa", BOT, False, 500, 1_050)]  # fmt: skip
    assert find_sandwiches(1, swaps) == []


def test_a_slice_of_several_blocks_keeps_each_blocks_sandwiches_once():
    one = Block(1).trade(BOT, -500, 1_000).trade(ALICE, -1_000, 2_100).trade(BOT, 500, -1_050)
    # The bot's back-run in the next block is no sandwich: blocks are apart.
    two = Block(2).trade(BOT, -500, 1_000).trade(ALICE, -1_000, 2_100)
    three = Block(3).trade(BOT, 500, -1_050)
    builder = SliceBuilder(POOL, T0)
    for event in [*one.events, *two.events, *three.events]:
        builder.add(event)
        # Streaming reads a slice's summary after every bundle: reading adds nothing.
        assert len(builder.summary.sandwiches) <= 1
    assert [s.block_number for s in builder.summary.sandwiches] == [1]


@pytest.mark.skipif(not REAL_LOGS.exists(), reason="../shared/data/real-logs absent")
@pytest.mark.parametrize("day", DAYS)
def test_real_polygon_days_have_no_sandwich(day):
    """Thousands of real swaps in 2 s blocks, with arbitrage bots and routers: in the pool's
    blocks of three or more swaps, no trader went the same way just before others and back
    just after them at a profit. One did buy and sell in one block around another's buy
    (2023-11-25, block 50,379,805), with another trader's sell between: not a sandwich."""
    address, by_block = real_blocks(day)
    busy = [events for events in by_block.values() if sum(e.event == "Swap" for e in events) >= 3]
    assert busy or day == "2021-12-22"
    found = [s for events in busy for s in summarize_slice(address, 0, events).sandwiches]
    assert found == []


def sandwiched_pool(blocks: int = 60, every: int = 0) -> list[Block]:
    """A pool trading once a block for ``blocks`` blocks; every ``every``-th block from the
    30th (none if 0) the bot sandwiches Alice's purchase in it."""
    history = []
    for n in range(blocks):
        block = Block(n)
        if every and n >= 30 and (n - 30) % every == 0:
            block.trade(BOT, -500, 1_000).trade(ALICE, -1_000, 2_100).trade(BOT, 500, -1_050)
        else:
            block.trade(BOB, -100 if n % 2 else 100, 200 if n % 2 else -199)
        history.append(block)
    return history


def test_a_window_counts_its_sandwiches_and_lists_them_in_its_row():
    rows = window_rows(sandwiched_pool(40, every=100), SETTINGS)
    hits = [r for r in rows if r["sandwiches"]]
    # The four windows whose minute holds block 30.
    ends = [int(r["window_end"].timestamp()) for r in hits]
    assert ends == [T0 + SLICE_S * n for n in (31, 32, 33, 34)]
    assert {r["sandwiches"] for r in hits} == {1.0}
    for hit in hits:
        (sandwich,) = sandwiches_in(hit["patterns"])
        assert sandwich.attacker == BOT and sandwich.extracted == pytest.approx(50.0)
    assert all(r["patterns"] is None for r in rows if not r["sandwiches"])


def test_any_model_flags_a_sandwich_names_it_and_keeps_a_repeated_one_in_one_thread():
    """A model that never saw a sandwich (its limit is the feature's floor: one), and the
    bot sandwiching every fourth block for a minute: one thread, kind sandwich, with the
    attacker, the victim's transaction and the take in its evidence."""
    detector = train_detector(chain_rows(400), TrainingParams(n_estimators=30))
    rows = window_rows(sandwiched_pool(50, every=4), SETTINGS)
    scores = detector.score([[r[name] for name in FEATURE_NAMES] for r in rows])
    flagged = [(r, s, top) for r, s, hit, top in
               zip(rows, scores.score, scores.is_anomaly, scores.top_features, strict=True)
               if hit]  # fmt: skip
    assert flagged and all(r["sandwiches"] >= 1 for r, _, _ in flagged)
    assert sum(r["sandwiches"] >= 1 for r in rows) == len(flagged)
    threads = AlertThreads(300)
    alerts = []
    for row, score, top in flagged:
        top_json = orjson.dumps([t.model_dump() for t in top]).decode()
        anomaly = {**row, "score": float(score), "is_anomaly": True, "model_version": "m",
                   "top_features": top_json}  # fmt: skip
        anomaly, alert = threads.add(anomaly)
        alerts += [alert] if alert else []
    (alert,) = alerts
    assert alert.kind == "sandwich"
    victim = sandwiched_pool(50, every=4)[30].events[1].tx_hash
    words = " ".join(alert.evidence)
    assert BOT in words and victim in words and "taking about 50" in words
