"""Chain-window features on hand-made mainnet-shaped V3 event sequences: just-in-time
liquidity, range orders filled and withdrawn, and the floors no training can lift."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from beam_pipelines.transforms.pool_windows import YOUNG_POOL_NEUTRAL, pool_windows
from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import (
    FEATURE_NAMES,
    FEATURES_VERSION,
    INCIDENT_FLOORS,
    LIMITS_AT_FLOOR,
    window_features,
)
from dexwatch.core.features.effects import DEPTH_BAND_TICKS, depth_weight
from dexwatch.core.features.slices import SliceSummary, summarize_slice
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.settings import PipelineSettings
from model.chain_window import TrainingParams, train_detector
from model.training import fit_detector
from tests._blocks import JIT_BOT, LEVEL, LP, POOL, SLICE_S, T0, WIDE, Block
from tests._detectors import chain_rows


def features(blocks: list[Block], current_slices: int = 2) -> dict[str, float]:
    """The features of the window of the last ``current_slices`` blocks (one a slice)."""
    slices = [summarize_slice(POOL, T0 + SLICE_S * b.number, b.events) for b in blocks]
    end = T0 + SLICE_S * (blocks[-1].number + 1)
    result = window_features(slices, end, SLICE_S, current_slices)
    assert result is not None
    return result


def quiet_blocks(count: int, tick: int = 0) -> list[Block]:
    return [Block(n).swap(tick=tick) for n in range(count)]


def test_just_in_time_liquidity_is_netted_out_of_both_sides_and_the_level():
    jit = (
        Block(10)
        .mint(JIT_BOT, -10, 10, 50 * LEVEL)
        .swap(liquidity=51 * LEVEL)
        .burn(JIT_BOT, -10, 10, 50 * LEVEL)
    )
    window = features([*quiet_blocks(10), jit, Block(11).swap()])
    assert window["liquidity_removed_share"] == 0.0
    assert window["net_liquidity_change"] == 0.0
    summary = summarize_slice(POOL, T0 + SLICE_S * 10, jit.events)
    assert summary.jit_liquidity == pytest.approx(50 * LEVEL * depth_weight(-10, 10))
    # The level the next windows compare with is the pool's own, not the block's 51x.
    assert summary.last_liquidity == LEVEL
    # So a real removal of half the pool after it is seen as half.
    drain = Block(12).burn(LP, -100_000, 100_000, LEVEL // 2)
    after = features([*quiet_blocks(10), jit, Block(11).swap(), drain, Block(13).swap()])
    assert after["liquidity_removed_share"] == pytest.approx(0.5)


def test_jit_netting_needs_the_same_owner_and_range_in_the_same_block():
    other_owner = Block(10).mint(JIT_BOT, *WIDE, LEVEL).swap(2 * LEVEL).burn(LP, *WIDE, LEVEL)
    next_block = [Block(10).mint(JIT_BOT, *WIDE, LEVEL).swap(2 * LEVEL), Block(11)]
    next_block[1].burn(JIT_BOT, *WIDE, LEVEL).swap()
    assert features([*quiet_blocks(10), other_owner, Block(11).swap()])[
        "liquidity_removed_share"
    ] == pytest.approx(1.0)
    assert features([*quiet_blocks(10), *next_block])["liquidity_removed_share"] > 0.4


def test_a_range_order_taken_back_minutes_after_it_was_placed_is_a_round_trip():
    """A narrow position placed around the price and withdrawn 7 blocks later (real pools
    do it within seconds to minutes): the pool is back where it was."""
    narrow = (-10, 10)
    counted = int(LEVEL * depth_weight(*narrow))
    placed = Block(3).mint(LP, *narrow, LEVEL).swap(liquidity=LEVEL + counted)
    held = [Block(n).swap(liquidity=LEVEL + counted) for n in range(4, 10)]
    blocks = [*quiet_blocks(3), placed, *held, Block(10).burn(LP, *narrow, LEVEL), Block(11).swap()]
    window = features(blocks)
    assert window["liquidity_removed_share"] == window["net_liquidity_change"] == 0.0
    # Placed and taken back within the window: nothing either way.
    inside = features(
        [
            *quiet_blocks(10),
            Block(10).mint(LP, *narrow, LEVEL).swap(),
            Block(11).burn(LP, *narrow, LEVEL).swap(),
        ]
    )
    assert inside["liquidity_removed_share"] == inside["net_liquidity_change"] == 0.0
    # Taking out more than the order added removes the rest; another owner's order, or
    # another range, is no round trip.
    more = [*blocks[:-2], Block(10).burn(LP, *narrow, 3 * LEVEL), Block(11).swap()]
    assert features(more)["liquidity_removed_share"] == pytest.approx(
        2 * counted / (LEVEL + counted)
    )
    for owner, ticks in ((LP, (-10, 20)), (JIT_BOT, narrow)):
        other = [*blocks[:-2], Block(10).burn(owner, *ticks, LEVEL), Block(11).swap()]
        assert features(other)["liquidity_removed_share"] > 0.0
    # A wide position taken back as soon is a rug's shape: it counts in full.
    wide = Block(3).mint(LP, *WIDE, LEVEL).swap(liquidity=2 * LEVEL)
    rug = [*quiet_blocks(3), wide, *[Block(n).swap(liquidity=2 * LEVEL) for n in range(4, 10)]]
    rug += [Block(10).burn(LP, *WIDE, LEVEL), Block(11).swap()]
    assert features(rug)["liquidity_removed_share"] == pytest.approx(0.5)


def test_a_one_tick_range_order_filled_then_withdrawn_is_not_a_drain():
    # Placed one tick spacing above the price, filled as the price rises through it, then
    # withdrawn (all in the other token) once the price is past it.
    order = [
        Block(10).mint(LP, 10, 20, 8 * LEVEL).swap(tick=5),
        Block(11).swap(liquidity=9 * LEVEL, tick=15),
        Block(12).swap(tick=25),
        Block(13).burn(LP, 10, 20, 8 * LEVEL).swap(tick=26),
    ]
    window = features([*quiet_blocks(10), *order])
    assert window["liquidity_removed_share"] == 0.0
    # Withdrawn while the price is inside it, it is a removal, of its depth: one tick
    # spacing of 10 is a twentieth of DEPTH_BAND_TICKS.
    unfilled = [*order[:2], Block(12).swap(liquidity=9 * LEVEL, tick=15)]
    unfilled.append(Block(13).burn(LP, 10, 20, 8 * LEVEL).swap(tick=15))
    assert features([*quiet_blocks(10), *unfilled])["liquidity_removed_share"] == pytest.approx(
        8 / 9 * 10 / DEPTH_BAND_TICKS
    )


def test_narrow_positions_count_in_proportion_to_their_width():
    assert depth_weight(10, 20) == 10 / DEPTH_BAND_TICKS
    assert depth_weight(-887270, 887270) == depth_weight(0, DEPTH_BAND_TICKS) == 1.0
    narrow = Block(10).mint(LP, -20, 20, LEVEL // 4).swap(liquidity=LEVEL * 5 // 4)
    wide = Block(10).mint(LP, *WIDE, LEVEL // 4).swap(liquidity=LEVEL * 5 // 4)
    for block, expected in ((narrow, 0.25 * 40 / DEPTH_BAND_TICKS), (wide, 0.25)):
        window = features([*quiet_blocks(10), block, Block(11).swap()])
        assert window["net_liquidity_change"] == pytest.approx(expected)


def test_a_withdrawal_before_any_swap_of_its_slice_is_judged_by_the_tick_before():
    filled = [Block(10).swap(tick=25), Block(11).burn(LP, 10, 20, 8 * LEVEL)]
    in_range = [Block(10).swap(tick=15), Block(11).burn(LP, -990, 1010, LEVEL // 2)]
    assert features([*quiet_blocks(10), *filled])["liquidity_removed_share"] == 0.0
    assert features([*quiet_blocks(10), *in_range])["liquidity_removed_share"] == pytest.approx(0.5)


def jit_heavy_rows(n: int) -> list[dict]:
    """Windows as the v3 features saw mainnet: removed shares up to the old cap of 1, from
    just-in-time blocks (as much added as removed) and from ordinary withdrawals."""
    rows = chain_rows(n, seed=5)
    rng = np.random.default_rng(5)
    for index, row in enumerate(rows[: n // 5]):
        share = float(rng.uniform(0.3, 1.0))
        row["liquidity_removed_share"] = share
        row["net_liquidity_change"] = 0.0 if index % 2 else -share
    return rows


def test_a_model_trained_on_jit_heavy_traffic_still_flags_a_half_drain():
    rows = jit_heavy_rows(600)
    detector = train_detector(rows, TrainingParams(n_estimators=50))
    typical = {name: float(np.median([r[name] for r in rows])) for name in FEATURE_NAMES}
    drain = {**typical, "liquidity_removed_share": 0.5, "net_liquidity_change": -0.5}
    row = [[drain[name] for name in FEATURE_NAMES]]
    assert detector.score(row).is_anomaly[0]
    # Without the floors, training's 2.5x its largest removal lets the drain through.
    x = np.array([[r[name] for name in FEATURE_NAMES] for r in rows])
    unfloored = fit_detector(x, FEATURE_NAMES, FEATURES_VERSION, TrainingParams(n_estimators=50))
    assert not unfloored.score(row).is_anomaly[0]


def test_a_deposit_of_many_times_the_pools_liquidity_is_no_alert_on_its_own(tmp_path):
    """Mainnet pools take Mints of many times their in-range liquidity on ordinary days: a
    rise of the net change never flags a window alone, its fall does, from the floor on."""
    rows = chain_rows(600, seed=8)
    detector = train_detector(rows, TrainingParams(n_estimators=50))
    typical = {name: float(np.median([r[name] for r in rows])) for name in FEATURE_NAMES}
    scores = detector.score(
        [[{**typical, "net_liquidity_change": change}[n] for n in FEATURE_NAMES]
         for change in (10.0, 0.5, -0.5)]
    )  # fmt: skip
    assert scores.is_anomaly.tolist() == [False, False, True]
    # Still evidence: the deposit is what stands out in its row.
    assert scores.top_features[0][0].name == "net_liquidity_change"
    # A saved model keeps the side it alarms on; one fitted without the side sees both.
    deposit = [[{**typical, "net_liquidity_change": 10.0}[n] for n in FEATURE_NAMES]]
    detector.save(tmp_path / "model.joblib")
    assert not Detector.load(tmp_path / "model.joblib").score(deposit).is_anomaly[0]
    x = np.array([[r[name] for name in FEATURE_NAMES] for r in rows])
    two_sided = fit_detector(x, FEATURE_NAMES, FEATURES_VERSION, TrainingParams(n_estimators=50))
    assert two_sided.score(deposit).is_anomaly[0]


def test_a_model_trained_with_busy_pairs_still_flags_a_wash_burst():
    """Training whose busiest pairs reach 4 Poisson deviations would learn a limit near 2.5x
    that; the floor keeps a burst of 6 (one pair out-trading the pool) an anomaly."""
    rows = chain_rows(600, seed=6)
    rng = np.random.default_rng(6)
    for row in rows[:60]:
        row["pair_two_way_excess"] = float(rng.uniform(2.0, 4.0))
    detector = train_detector(rows, TrainingParams(n_estimators=50))
    typical = {name: float(np.median([r[name] for r in rows])) for name in FEATURE_NAMES}
    burst = [[{**typical, "pair_two_way_excess": 6.0}[name] for name in FEATURE_NAMES]]
    assert detector.score(burst).is_anomaly[0]
    x = np.array([[r[name] for name in FEATURE_NAMES] for r in rows])
    unfloored = fit_detector(x, FEATURE_NAMES, FEATURES_VERSION, TrainingParams(n_estimators=50))
    assert not unfloored.score(burst).is_anomaly[0]


def test_two_traders_carrying_a_busy_minute_is_no_alert_on_its_own():
    """Routers and arbitrage bots carry most of a busy minute all day (the tuning day's
    recording, without senders: 0.85 to 1.0): top_trader_share informs the forest and the
    kind, and flags nothing alone; the pair trading both ways does."""
    rows = chain_rows(600, seed=9)
    for row in rows:  # a simulator's narrow spread: the top two at 0.4 to 0.5
        row["top_trader_share"] = 0.4 + row["top_trader_share"] / 3 - 0.1
    detector = train_detector(rows, TrainingParams(n_estimators=50))
    typical = {name: float(np.median([r[name] for r in rows])) for name in FEATURE_NAMES}
    carried = {**typical, "top_trader_share": 1.0}
    washed = {**carried, "pair_two_way_excess": 6.0}
    scores = detector.score([[row[n] for n in FEATURE_NAMES] for row in (carried, washed)])
    assert scores.is_anomaly.tolist() == [False, True]
    x = np.array([[r[name] for name in FEATURE_NAMES] for r in rows])
    limited = fit_detector(x, FEATURE_NAMES, FEATURES_VERSION, TrainingParams(n_estimators=50))
    assert limited.score([[carried[n] for n in FEATURE_NAMES]]).is_anomaly[0]


def test_every_floor_names_a_feature_and_flags_its_value_on_an_ordinary_model():
    assert set(INCIDENT_FLOORS) <= set(FEATURE_NAMES)
    rows = chain_rows(400)
    detector = train_detector(rows, TrainingParams(n_estimators=30))
    typical = {name: float(np.median([r[name] for r in rows])) for name in FEATURE_NAMES}
    for name, floor in INCIDENT_FLOORS.items():
        row = [[{**typical, name: floor}[n] for n in FEATURE_NAMES]]
        assert detector.score(row).is_anomaly[0], name


def test_a_calm_days_model_leaves_ordinary_market_moves_alone():
    """Trained where the price barely moved, the learned price limits would flag any 1 %
    minute; they stay at least a fifth of the way to the 10 % floor instead."""
    rows = chain_rows(400)
    for row in rows:
        row["price_change"] = row["price_range"] = row["max_swap_price_impact"] = 1e-4
    rows[0]["price_change"] = rows[0]["price_range"] = 0.002  # the calm day's largest move
    detector = train_detector(rows, TrainingParams(n_estimators=30))
    typical = {name: float(np.median([r[name] for r in rows])) for name in FEATURE_NAMES}

    def flagged(move: float) -> bool:
        row = {**typical, "price_change": move, "price_range": move}
        return bool(detector.score([[row[name] for name in FEATURE_NAMES]]).is_anomaly[0])

    assert not flagged(0.015)  # a market move of 1.5 % in a window
    assert flagged(0.05)
    unlimited = dataclasses.replace(TrainingParams(n_estimators=30), min_share_of_floor=0.0)
    assert (
        train_detector(rows, unlimited)
        .score(
            [[{**typical, "price_change": 0.015, "price_range": 0.015}[n] for n in FEATURE_NAMES]]
        )
        .is_anomaly[0]
    )


def quiet_pool_slices(drain_share: float) -> list:
    """A pool's swaps, an hour of silence, then a swap and a withdrawal of ``drain_share``
    of its liquidity: its slices, one 12 s block each."""
    before = quiet_blocks(5)
    after = [Block(305).swap(), Block(306).burn(LP, *WIDE, int(LEVEL * drain_share)).swap()]
    return [summarize_slice(POOL, T0 + SLICE_S * b.number, b.events) for b in [*before, *after]]


def test_a_quiet_pools_first_events_after_an_hour_are_scored_against_its_last_state():
    slices = quiet_pool_slices(0.6)
    window_end = T0 + SLICE_S * 307
    in_span = [s for s in slices if s.start >= window_end - 24 * SLICE_S]
    assert window_features(in_span, window_end, SLICE_S, 4) is not None  # no baseline: rates
    carry = slices[4]
    window = window_features(in_span, window_end, SLICE_S, 4, carry)
    assert window["liquidity_removed_share"] == pytest.approx(0.6)
    # Nothing to compare the rates with after an hour's silence: neutral, not a spike.
    assert window["volume_ratio"] == window["swap_count_ratio"] == 0.0


def test_the_pipeline_scores_a_drain_after_a_silence_and_a_quiet_swap_as_normal():
    settings = PipelineSettings(slice_s=SLICE_S, current_slices=4, baseline_slices=20)
    key = f"1:uniswap_v3:{POOL}"
    drained = pool_windows((key, quiet_pool_slices(0.6)), settings)
    rows = {row["window_end"].timestamp(): row for row in drained}
    after_silence = [row for end, row in rows.items() if end > T0 + SLICE_S * 305]
    assert after_silence, "the windows after the silence are scored"
    assert max(r["liquidity_removed_share"] for r in after_silence) == pytest.approx(0.6)
    calm = pool_windows((key, quiet_pool_slices(0.0)), settings)
    quiet = {row["window_end"].timestamp(): row for row in calm}
    # The windows whose baseline is the silence: the first two swaps are measured against
    # the pool's habits (five swaps, then an hour of nothing): a few times its usual minute.
    first = [r for end, r in quiet.items() if T0 + SLICE_S * 305 < end <= T0 + SLICE_S * 309]
    assert len(first) == 4
    assert all(r["liquidity_removed_share"] == 0.0 for r in first)
    assert all(0 < r["swap_count_ratio"] < math.log(4) for r in first)
    assert all(0 < r["volume_ratio"] < math.log(4) for r in first)


def two_way_block(number: int) -> Block:
    """One 12 s block in which a pair of traders swap against each other, A buying from B."""
    block = Block(number)
    for trader, amount1 in (("0x" + "a1" * 20, "1000"), ("0x" + "b2" * 20, "-1000")):
        block.swap()
        block.events[-1].args.update(recipient=trader, amount1=amount1,
                                     amount0=str(-int(amount1)))  # fmt: skip
    return block


def pair_excess_by_window(blocks: list[Block], slice_s: int) -> list[float]:
    """pair_two_way_excess of every scored window, the blocks cut into slice_s slices."""
    by_slice: dict[int, list[PoolEvent]] = {}
    for block in blocks:
        for event in block.events:
            by_slice.setdefault(event.block_timestamp // slice_s * slice_s, []).append(event)
    slices = [summarize_slice(POOL, start, events) for start, events in sorted(by_slice.items())]
    settings = PipelineSettings(slice_s=slice_s, current_slices=4, baseline_slices=20)
    rows = pool_windows((f"1:uniswap_v3:{POOL}", slices), settings)
    return [row["pair_two_way_excess"] for row in rows]


def test_slices_of_whole_12_s_blocks_read_steady_trading_as_steady():
    """The same pair trading the same way every block: 12 s slices hold one block each and
    every window reads alike; 15 s slices hold one or two, and the count jitters."""
    blocks = [two_way_block(n) for n in range(120)]
    aligned = pair_excess_by_window(blocks, slice_s=12)
    assert aligned and max(aligned) - min(aligned) < 1e-9
    unaligned = pair_excess_by_window(blocks, slice_s=15)
    assert max(unaligned) - min(unaligned) > 0.5


def test_traders_are_transaction_senders_not_the_router_they_swap_through():
    """Twenty-four swaps of twelve people, all through one router: by recipient the router
    is one trader with all the volume; by transaction sender the volume is spread."""
    blocks = quiet_blocks(10)
    people = ["0x" + f"{n:02x}" * 20 for n in range(12)]
    busy = [Block(10 + k) for k in range(2)]
    for block in busy:
        for person in people:
            block.swap()
            block.events[-1] = dataclasses.replace(block.events[-1], tx_from=person)
    by_recipient = features([*blocks, *[_without_senders(b) for b in busy]])
    by_sender = features([*blocks, *busy])
    assert by_recipient["top_trader_share"] == pytest.approx(1.0)
    assert by_sender["top_trader_share"] == pytest.approx(2 / 12)


def _without_senders(block: Block) -> Block:
    bare = Block(block.number)
    bare.events = [dataclasses.replace(event, tx_from="") for event in block.events]
    return bare


def test_a_fresh_pool_is_scored_from_its_first_minutes_on_its_liquidity():
    """A scam pool: minted, traded for a minute, drained: its windows are scored from the
    start, on the share of its liquidity removed, while its launch (a second provider
    adding, the first price moves) reads as usual."""
    launch = [Block(0).mint(LP, *WIDE, LEVEL).swap(tick=0), Block(1).swap(tick=300)]
    second_provider = Block(2).mint(JIT_BOT, *WIDE, LEVEL).swap(liquidity=2 * LEVEL, tick=310)
    trading = [Block(n).swap(liquidity=2 * LEVEL, tick=310) for n in range(3, 7)]
    rug = (
        Block(7)
        .burn(LP, *WIDE, LEVEL)
        .burn(JIT_BOT, *WIDE, LEVEL * 9 // 10)
        .swap(liquidity=LEVEL // 10, tick=2000)
    )
    blocks = [*launch, second_provider, *trading, rug]
    slices = [summarize_slice(POOL, T0 + SLICE_S * b.number, b.events) for b in blocks]
    settings = PipelineSettings(slice_s=SLICE_S, current_slices=4, baseline_slices=20)
    rows = list(pool_windows((f"1:uniswap_v3:{POOL}", slices), settings))
    # Every window from the pool's first slice on is scored, all of them young (< 2 min).
    assert [r["window_end"].timestamp() for r in rows][:8] == [
        T0 + SLICE_S * (n + 1) for n in range(8)
    ]
    before_rug = [r for r in rows if r["window_end"].timestamp() <= T0 + SLICE_S * 7]
    assert all(r[name] == 0.0 for r in before_rug for name in YOUNG_POOL_NEUTRAL)
    assert max(r["liquidity_removed_share"] for r in before_rug) == 0.0
    drained = max(r["liquidity_removed_share"] for r in rows)
    assert drained == pytest.approx(0.95)  # of the 2 L it held


def test_a_launch_whose_mints_outweigh_the_first_level_seen_is_not_a_negative_drain():
    # A pool's first slice: its first swap saw 100 units of liquidity, then its launch
    # minted 1,000 and a provider took 50 back. The level before it is unknown, not -850:
    # nothing to measure the changes against (a normal day's launches had read as drains of
    # -24 %, two hundred deviations from any model's median).
    launch = SliceSummary(
        POOL, T0, events=4, swaps=1, liquidity_added=1000.0, liquidity_removed=50.0,
        first_liquidity=100.0, last_liquidity=1050.0, first_price=1.0, last_price=1.0,
        min_price=1.0, max_price=1.0,
    )  # fmt: skip
    window = window_features([launch], T0 + SLICE_S, SLICE_S, 4)
    assert window["liquidity_removed_share"] == 0.0
    assert window["net_liquidity_change"] == 0.0
    # With a level that adds up, the changes are measured against it.
    later = dataclasses.replace(launch, first_liquidity=2000.0, last_liquidity=2950.0)
    window = window_features([later], T0 + SLICE_S, SLICE_S, 4)
    assert window["liquidity_removed_share"] == pytest.approx(50 / 1050)


def test_features_judged_by_their_floor_alone_are_not_the_forests():
    """A bootstrap's rows hold no earlier day and no sandwich: the forest learns nothing of
    those features, and their limit is their floor whatever the rows said."""
    detector = train_detector(chain_rows(400), TrainingParams(n_estimators=30))
    learned = {FEATURE_NAMES[j] for j in detector.forest_columns}
    assert learned == set(FEATURE_NAMES) - set(LIMITS_AT_FLOOR)
    typical = {name: float(np.median([r[name] for r in chain_rows(400)])) for name in FEATURE_NAMES}
    below = {**typical, "sandwiches": 0.0, "volume_1h_vs_usual": math.log(9.5)}
    at = {**typical, "sandwiches": 1.0}
    scores = detector.score([[row[n] for n in FEATURE_NAMES] for row in (below, at)])
    assert scores.is_anomaly.tolist() == [False, True]
