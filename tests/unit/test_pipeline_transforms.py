"""The pipeline's transforms on hand-made event streams: TestStream with late and
out-of-order events, duplicates and retractions, checked with assert_that."""

from __future__ import annotations

import dataclasses
import math
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.transforms.features import PoolWindowFeatures, pool_key
from beam_pipelines.transforms.parse import DEAD_LETTERS, ParsePoolEvents
from beam_pipelines.transforms.pool_windows import pool_windows
from beam_pipelines.transforms.scoring import DetectorModelHandler, ScoreWindows
from dexwatch.core.features.chain import FEATURE_NAMES, window_features
from dexwatch.core.features.slices import SliceSummary, summarize_slice
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.settings import PipelineSettings
from model.chain_window import train_detector
from tests._detectors import chain_rows

POOL = "0x" + "ab" * 20
T0 = 1_800_000_000  # a multiple of the 10 s slices below
SETTINGS = PipelineSettings(
    slice_s=10, current_slices=2, baseline_slices=6, min_baseline_share=0.5,
    allowed_lateness_s=60, alert_cooldown_s=60,
)  # fmt: skip


def _event(n: int, t: int, name: str = "Sync", **args: str) -> PoolEvent:
    defaults = {
        "Sync": {"reserve0": "1000000", "reserve1": "2000000"},
        "Swap": {"amount0In": "0", "amount1In": "1000", "amount0Out": "499", "amount1Out": "0",
                 "sender": f"0x{1:040x}", "to": f"0x{n % 5:040x}"},
        "Burn": {"amount0": "100000", "amount1": "200000", "sender": f"0x{1:040x}",
                 "to": f"0x{2:040x}"},
        "Mint": {"amount0": "1000", "amount1": "2000", "sender": f"0x{1:040x}"},
    }  # fmt: skip
    return PoolEvent(
        chain_id=31337, dex="sushiswap", pool=POOL, event=name, block_number=n,
        block_hash=f"0x{n:064x}", block_timestamp=t, tx_hash=f"0x{n:064x}", log_index=0,
        args={**defaults[name], **args},
    )  # fmt: skip


def _streaming_options() -> PipelineOptions:
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    return options


def _in_chunks_and_in_batch(events: list[PoolEvent]) -> tuple[TestStream, dict[str, dict]]:
    """``events`` (one a slice) as a stream of bundles of ten, the watermark ten minutes
    after each bundle's first; and the batch rows of their windows, by window id."""
    stream = TestStream().advance_watermark_to(T0)
    for chunk in range(0, len(events), 10):
        stream = _burst(stream, events[chunk : chunk + 10])
        stream = stream.advance_watermark_to(events[chunk].block_timestamp + 600)
    stream = stream.advance_watermark_to_infinity()
    slices = [summarize_slice(POOL, e.block_timestamp, [e]) for e in events]
    expected = {
        row["window_id"]: row for row in pool_windows((pool_key(events[0]), slices), SETTINGS)
    }
    return stream, expected


def _assert_streaming_settles_on(stream: TestStream, expected: dict[str, dict]) -> None:
    """Runs the streaming transforms over ``stream``: the last row of every window is the
    batch row ``expected`` holds for it (by window id), and no other window comes out."""

    def check(rows):
        settled = {row["window_id"]: row for row in rows}
        assert settled == expected

    with TestPipeline(options=_streaming_options()) as p:
        assert_that((p | stream | PoolWindowFeatures(SETTINGS))["main"], check)


def test_slice_summary_reads_prices_volumes_and_liquidity():
    events = [
        _event(1, T0, "Sync"),
        _event(2, T0 + 1, "Swap", amount1In="3000"),
        _event(3, T0 + 2, "Sync", reserve0="900000", reserve1="2222222"),
        _event(4, T0 + 3, "Burn"),
    ]
    summary = summarize_slice(POOL, T0, events)
    assert summary.swaps == 1 and summary.volume == 3000 and summary.events == 4
    assert summary.first_price == 2.0 and summary.last_price == pytest.approx(2222222 / 900000)
    assert summary.max_swap_impact == pytest.approx(math.log(2222222 / 900000 / 2.0))
    assert summary.liquidity_removed == pytest.approx(math.sqrt(100000 * 200000))


def test_window_features_compare_the_window_with_its_baseline():
    quiet = [summarize_slice(POOL, T0 + 10 * i, [_event(i, T0 + 10 * i, "Swap")]) for i in range(6)]
    busy = [
        summarize_slice(POOL, T0 + 60, [_event(100 + k, T0 + 60, "Swap") for k in range(20)]),
        summarize_slice(POOL, T0 + 70, [_event(200, T0 + 70, "Sync")]),
    ]
    features = window_features(quiet + busy, T0 + 80, 10, 2)
    assert features is not None and list(features) == list(FEATURE_NAMES)
    assert features["swap_count_ratio"] > 1.5  # 60/min against 6/min
    assert features["volume_ratio"] > 1.0
    assert features["liquidity_removed_share"] == 0.0


def _swap(n: int, t: int, trader: str, buy: bool) -> PoolEvent:
    """A V2 swap by ``trader``: buying token0 pays token1 in, selling takes token1 out."""
    amounts = (
        {"amount0In": "0", "amount1In": "1000", "amount0Out": "499", "amount1Out": "0"}
        if buy
        else {"amount0In": "500", "amount1In": "0", "amount0Out": "0", "amount1Out": "998"}
    )
    return _event(n, t, "Swap", to=trader, **amounts)


def test_two_addresses_trading_back_and_forth_stand_out_from_one_sided_flow():
    a, b = "0x" + "a1" * 20, "0x" + "b2" * 20
    # Baseline: two swaps per slice by five ordinary traders.
    history = [
        summarize_slice(
            POOL, T0 + 10 * i, [_event(10 * i + k, T0 + 10 * i, "Swap") for k in (0, 1)]
        )
        for i in range(6)
    ]
    wash = [_swap(100 + k, T0 + 60, (a, b)[k % 2], buy=k % 2 == 0) for k in range(20)]
    one_sided = [_swap(200 + k, T0 + 60, (a, b)[k % 2], buy=True) for k in range(20)]
    # One address buying and selling is an arbitrageur's everyday, not a colluding pair.
    alone = [_swap(300 + k, T0 + 60, a, buy=k % 2 == 0) for k in range(20)]
    washed, bought = summarize_slice(POOL, T0 + 60, wash), summarize_slice(POOL, T0 + 60, one_sided)
    assert washed.pair_two_way_swaps == 20 and bought.pair_two_way_swaps == 0
    assert summarize_slice(POOL, T0 + 60, alone).pair_two_way_swaps == 0
    # A third address's swaps do not count: only the two busiest addresses form the pair.
    mixed = summarize_slice(POOL, T0 + 60, [*wash[:10], _swap(400, T0 + 60, "0x03", buy=False)])
    assert mixed.pair_two_way_swaps == 10

    def excess(window: SliceSummary) -> float:
        features = window_features([*history, window], T0 + 80, 10, 2)
        assert features is not None
        return features["pair_two_way_excess"]

    assert excess(washed) == pytest.approx((20 - 2) / math.sqrt(2 + 1))
    assert excess(bought) < 0


def _burst(stream: TestStream, events: list[PoolEvent]) -> TestStream:
    return stream.add_elements([TimestampedValue(e, e.block_timestamp) for e in events])


def test_duplicates_and_retractions_are_not_counted_and_late_events_are():
    history = [_event(i, T0 + 5 * i, "Swap") for i in range(12)]  # 60 s of 1 swap / 5 s
    window_events = [_event(100 + i, T0 + 60 + i, "Swap") for i in range(6)]
    orphaned = _event(500, T0 + 65, "Swap", amount1In="999999")
    late = _event(600, T0 + 75, "Swap")
    stream = TestStream()
    stream = _burst(stream.advance_watermark_to(T0), history)
    stream = _burst(stream, window_events + window_events[:3] + [orphaned])  # duplicates
    stream = stream.advance_watermark_to(T0 + 70)
    stream = _burst(stream, [orphaned.retraction()])  # a reorg dropped it
    stream = stream.advance_watermark_to(T0 + 90)  # the window [T0+60, T0+80) closes
    stream = _burst(stream, [late])  # late but within allowed lateness
    stream = stream.advance_watermark_to_infinity()

    with TestPipeline(options=_streaming_options()) as p:
        rows = (p | stream | PoolWindowFeatures(SETTINGS))["main"]
        final = (
            rows
            | beam.Filter(lambda r: int(r["window_end"].timestamp()) == T0 + 80)
            | beam.Map(lambda r: r["events"])
        )

        def check(counts):
            # Early, on-time and late panes: the window's final count is 6 + the late one,
            # never the duplicates nor the retracted swap.
            assert counts, "no pane for the window"
            assert max(counts) == 7, counts
            assert 9 not in counts and 10 not in counts

        assert_that(final, check)


def test_parse_sends_malformed_messages_to_dead_letters():
    good = _event(1, T0, "Swap").to_json()
    lacking = dataclasses.replace(_event(2, T0), args={"reserve0": "1"}).to_json()
    with TestPipeline() as p:
        parsed = p | beam.Create([good, b"not json", lacking]) | ParsePoolEvents()
        assert_that(parsed.main | beam.Map(lambda e: e.block_number), equal_to([1]), label="main")
        reasons = parsed[DEAD_LETTERS] | beam.Map(lambda row: row["reason"])

        def check(got):
            assert len(got) == 2
            assert any("not JSON" in r for r in got)
            assert any("Sync arguments: missing reserve1" in r for r in got)

        assert_that(reasons, check, label="dead")


def test_scoring_flags_a_drained_window_and_names_the_feature(tmp_path):
    detector = train_detector(chain_rows(2000))
    path = tmp_path / "model.joblib"
    detector.save(path)
    normal = chain_rows(50, seed=2)
    drained = {**normal[0], "liquidity_removed_share": 0.7, "net_liquidity_change": -0.7}
    rows = [{**r, "window_id": f"n{i}"} for i, r in enumerate(normal)] + [
        {**drained, "window_id": "drain"}
    ]
    with TestPipeline() as p:
        scored = (p | beam.Create(rows) | ScoreWindows(DetectorModelHandler(path)))["main"]

        def check(got):
            by_id = {r["window_id"]: r for r in got}
            assert by_id["drain"]["is_anomaly"] and by_id["drain"]["score"] < 0
            assert '"liquidity_removed_share"' in by_id["drain"]["top_features"][:40]
            assert sum(r["is_anomaly"] for r in got) <= 2
            assert {r["model_version"] for r in got} == {detector.version}

        assert_that(scored, check)


def test_a_model_of_other_feature_definitions_is_refused_not_used(tmp_path):
    detector = train_detector(chain_rows(200))
    path = tmp_path / "model.joblib"
    dataclasses.replace(detector, features_version=detector.features_version - 1).save(path)
    with pytest.raises(ValueError, match="trained on features version .*: retrain it"):
        DetectorModelHandler(path).load_model()
    detector.save(path)
    assert DetectorModelHandler(path).load_model().version == detector.version


def test_batch_plumbing_gives_the_streaming_result():
    """Replay and backfill use explicit keys instead of windows and triggers: the same
    stream gives the same final window, duplicates and retractions included."""
    history = [_event(i, T0 + 5 * i, "Swap") for i in range(12)]
    window_events = [_event(100 + i, T0 + 60 + i, "Swap") for i in range(6)]
    orphaned = _event(500, T0 + 65, "Swap", amount1In="999999")
    late = _event(600, T0 + 75, "Swap")
    stream = history + window_events + window_events[:3] + [orphaned, orphaned.retraction(), late]
    with TestPipeline(options=PipelineOptions(runner="FnApiRunner")) as p:
        rows = (
            p
            | beam.Create(stream)
            | beam.Map(lambda e: TimestampedValue(e, e.block_timestamp))
            | PoolWindowFeatures(SETTINGS, streaming=False)
        )["main"]
        final = (
            rows
            | beam.Filter(lambda r: int(r["window_end"].timestamp()) == T0 + 80)
            | beam.Map(lambda r: (r["events"], r["window_id"]))
        )
        assert_that(final, equal_to([(7, f"31337:{POOL}:{T0 + 80}")]))


def test_a_price_jump_that_opens_a_slice_counts_as_swap_impact():
    calm = [summarize_slice(POOL, T0 + 10 * i, [_event(i, T0 + 10 * i, "Sync")]) for i in range(6)]
    # The first event of the window's slice already carries the manipulated price.
    jumped = summarize_slice(
        POOL, T0 + 60, [_event(100, T0 + 60, "Sync", reserve0="900000", reserve1="2420000")]
    )
    features = window_features([*calm, jumped], T0 + 80, 10, 2)
    assert features["max_swap_price_impact"] == pytest.approx(math.log(2420000 / 900000 / 2.0))


def test_streaming_rows_settle_on_the_batch_rows_whatever_the_arrival_order():
    """Out-of-order arrival within a slice (rebuilt from raw events), duplicates and
    retractions across bundles: the last streaming row of every window is the batch row."""
    rng = random.Random(5)
    events = []
    for i in range(300):
        reserve0 = 1_000_000 + rng.randrange(-50_000, 50_000)
        events.append(_event(i, T0 + i, "Sync", reserve0=str(reserve0)))
        if i % 3 == 0:
            events.append(_event(1000 + i, T0 + i, "Swap", amount1In=str(rng.randrange(1, 5000))))
    orphans = [_event(5000 + i, T0 + 29 * i, "Swap", amount1In="888888") for i in range(10)]
    arrivals = events + events[::7] + orphans
    # Shuffle within 4-second stretches: Pub/Sub does not keep order.
    arrivals.sort(key=lambda e: (e.block_timestamp // 4, rng.random()))
    arrivals += [orphan.retraction() for orphan in orphans]

    stream = TestStream().advance_watermark_to(T0)
    for start in range(0, len(arrivals), 25):
        stream = _burst(stream, arrivals[start : start + 25])
    # Past every window's end first: rows that timers emit as the watermark jumps straight
    # to infinity would reach assert_that's grouping after it has fired.
    stream = stream.advance_watermark_to(T0 + 1000).advance_watermark_to_infinity()

    by_slice: dict[int, list[PoolEvent]] = {}
    for event in events:
        by_slice.setdefault(event.block_timestamp // 10 * 10, []).append(event)
    key = pool_key(events[0])
    slices = [summarize_slice(POOL, start, group) for start, group in by_slice.items()]
    expected = {row["window_id"]: row for row in pool_windows((key, slices), SETTINGS)}

    def check(rows):
        settled = {}
        for row in rows:  # in order of emission: a later row of a window replaces earlier ones
            settled[row["window_id"]] = row
        assert settled.keys() == expected.keys()
        for window_id, row in settled.items():
            diff = {
                k: (v, expected[window_id][k])
                for k, v in row.items()
                if v != expected[window_id][k]
            }
            assert not diff, (window_id, diff)

    with TestPipeline(options=_streaming_options()) as p:
        assert_that((p | stream | PoolWindowFeatures(SETTINGS))["main"], check)
    assert len(expected) > 20


def test_after_an_hours_silence_streaming_scores_the_pool_as_batch_does():
    """The first events after a silence longer than every window's span and the allowed
    lateness: streaming has pruned the pool's slices, and keeps the newest as its state."""
    first = [_event(i, T0 + 10 * i, "Sync") for i in range(10)]
    later = T0 + 3600
    second = [
        _event(200, later, "Sync", reserve0="1000000", reserve1="2000000"),
        _event(201, later + 1, "Burn", amount0="600000", amount1="1200000"),
        _event(202, later + 2, "Sync", reserve0="400000", reserve1="800000"),
    ]
    stream = _burst(TestStream().advance_watermark_to(T0), first)
    stream = stream.advance_watermark_to(later - 10)
    stream = _burst(stream, second).advance_watermark_to(later + 1000)
    stream = stream.advance_watermark_to_infinity()
    key = pool_key(first[0])
    slices = [
        summarize_slice(POOL, e.block_timestamp // 10 * 10, [x for x in [*first, *second]
                        if x.block_timestamp // 10 == e.block_timestamp // 10])
        for e in [*first, second[0]]
    ]  # fmt: skip
    expected = {row["window_id"]: row for row in pool_windows((key, slices), SETTINGS)}
    after = [row for row in expected.values() if row["window_end"].timestamp() > later]
    assert max(row["liquidity_removed_share"] for row in after) == pytest.approx(0.6)

    _assert_streaming_settles_on(stream, expected)


def _v2_drained(steps: int) -> list[PoolEvent]:
    """A V2 pair's Sync, then ``steps`` Burns of 2 % of its reserves, one every 10 s."""
    events, reserve0 = [_event(0, T0, "Sync")], 1_000_000
    for i in range(1, steps + 1):
        kept = reserve0 * 98 // 100
        t = T0 + 10 * i
        events.append(_event(2 * i, t, "Sync", reserve0=str(kept), reserve1=str(2 * kept)))
        taken = reserve0 - kept
        events.append(_event(2 * i + 1, t, "Burn", amount0=str(taken), amount1=str(2 * taken)))
        reserve0 = kept
    return events


def test_streaming_keeps_an_hour_of_liquidity_steps_after_it_prunes_the_slices():
    """A V2 pair drained by 2 % every 10 s for ten minutes: streaming prunes each slice
    a window's span and the lateness after it, and still adds the hour up as batch does."""
    events = _v2_drained(60)
    stream = TestStream().advance_watermark_to(T0)
    for burst, start in enumerate(range(0, len(events), 6)):
        # Three slices a burst; the watermark follows the burst's first slice.
        stream = _burst(stream, events[start : start + 6]).advance_watermark_to(T0 + 30 * burst + 1)
    stream = stream.advance_watermark_to(T0 + 2000).advance_watermark_to_infinity()
    by_slice: dict[int, list[PoolEvent]] = {}
    for event in events:
        by_slice.setdefault(event.block_timestamp // 10 * 10, []).append(event)
    slices = [summarize_slice(POOL, start, group) for start, group in by_slice.items()]
    expected = {
        row["window_id"]: row for row in pool_windows((pool_key(events[0]), slices), SETTINGS)
    }
    last = expected[f"31337:{POOL}:{T0 + 610}"]
    assert last["liquidity_lost_1h"] == pytest.approx(1 - 0.98**60, rel=1e-3)
    assert max(row["liquidity_removed_share"] for row in expected.values()) < 0.05

    _assert_streaming_settles_on(stream, expected)


def test_streaming_keeps_a_day_of_liquidity_steps_after_the_hour_has_passed():
    """A V2 pair drained by 2 % every 10 s for five minutes, then a swap every ten minutes
    for three hours: two hours on, the hour has forgotten the drain and the day has not, in
    streaming as in batch."""
    events = _v2_drained(30)
    for i in range(1, 19):
        events.append(_event(100 + i, T0 + 300 + 600 * i, "Swap"))
    by_slice: dict[int, list[PoolEvent]] = {}
    for event in events:
        by_slice.setdefault(event.block_timestamp // 10 * 10, []).append(event)
    stream = TestStream().advance_watermark_to(T0 - 1)
    for start, group in by_slice.items():  # the watermark a slice behind, pruning as it goes
        stream = _burst(stream, group).advance_watermark_to(start + 1)
    stream = stream.advance_watermark_to(start + 1000).advance_watermark_to_infinity()
    slices = [summarize_slice(POOL, start, group) for start, group in by_slice.items()]
    expected = {
        row["window_id"]: row for row in pool_windows((pool_key(events[0]), slices), SETTINGS)
    }
    late = [row for row in expected.values() if row["window_end"].timestamp() > T0 + 2 * 3600]
    assert late and all(row["liquidity_lost_1h"] == 0.0 for row in late)
    for row in late:
        assert row["liquidity_lost_24h"] == pytest.approx(1 - 0.98**30, rel=1e-3)

    _assert_streaming_settles_on(stream, expected)


def test_a_burst_after_a_silence_is_scored_against_the_pools_habits_in_both_modes():
    """An hour of a swap a minute, twenty minutes of silence, then twelve swaps in twenty
    seconds: streaming has pruned the hour (its decayed rates kept as state) and scores the
    burst as batch does, against the pool's habits."""
    history = []
    for i in range(60):
        history += [_event(2 * i, T0 + 60 * i, "Sync"), _event(2 * i + 1, T0 + 60 * i, "Swap")]
    later = T0 + 60 * 60 + 20 * 60
    burst = [_event(500 + i, later + i, "Swap") for i in range(12)]
    stream = _burst(TestStream().advance_watermark_to(T0), history)
    stream = _burst(stream.advance_watermark_to(later - 10), burst)
    stream = stream.advance_watermark_to(later + 1000).advance_watermark_to_infinity()
    by_slice: dict[int, list[PoolEvent]] = {}
    for event in [*history, *burst]:
        by_slice.setdefault(event.block_timestamp // 10 * 10, []).append(event)
    slices = [summarize_slice(POOL, start, group) for start, group in by_slice.items()]
    expected = {
        row["window_id"]: row for row in pool_windows((pool_key(burst[0]), slices), SETTINGS)
    }
    after = [row for row in expected.values() if row["window_end"].timestamp() > later]
    # 12 swaps in a 20 s window: 36 a minute against the pool's usual one (decayed).
    assert max(row["swap_count_ratio"] for row in after) > math.log(37 / 2)

    _assert_streaming_settles_on(stream, expected)


def test_a_slow_price_drift_stands_out_against_the_pools_price_habits_in_both_modes():
    """Three hours of a pair whose price wanders a few basis points a minute, then forty
    minutes of a steady slide of 0.25 % a minute: no window moves much, the drift from the
    pool's hour-long anchor does. Streaming prunes as it goes (its price habits kept as
    state) and gives batch's numbers."""
    rng = random.Random(5)
    price, events = 2.0, []
    for i in range(220):
        price *= math.exp(rng.gauss(0, 0.0005) if i < 180 else -0.0025)
        reserve0 = 1_000_000_000
        events.append(_event(i, T0 + 60 * i, "Sync", reserve0=str(reserve0),
                             reserve1=str(round(reserve0 * price))))  # fmt: skip
    stream, expected = _in_chunks_and_in_batch(events)
    slide = T0 + 60 * 180

    def drift(start: int, end: int) -> list[float]:
        return [row["price_drift_1h"] for row in expected.values()
                if start <= row["window_end"].timestamp() < end]  # fmt: skip

    # Calm: within a few usual gaps. Half an hour into the slide (7 %): several times the
    # calm's largest (a pool with three hours of habits: a longer history makes it more),
    # while no window's own price change passes 0.6 %.
    calm = max(drift(T0 + 3600, slide))
    assert 0 < calm < 3.5
    assert min(drift(slide + 1800, slide + 2400)) > 3 * calm
    assert max(row["price_change"] for row in expected.values()) < 0.006

    _assert_streaming_settles_on(stream, expected)


def test_the_usual_hour_outlives_pruned_slices_in_both_modes():
    """A swap every ten minutes for a day, then a swap a minute: a day on, streaming has
    pruned every slice of the day before (its hours kept as state) and sets the busier hour
    against the pool's usual hour as batch does."""
    events = [_event(i, T0 + 600 * i, "Swap") for i in range(150)]
    busy_from = T0 + 600 * 150
    events += [_event(200 + i, busy_from + 60 * i, "Swap") for i in range(40)]
    stream, expected = _in_chunks_and_in_batch(events)

    def hour_vs_usual(start: int, end: int) -> list[float]:
        return [row["volume_1h_vs_usual"] for row in expected.values()
                if start <= row["window_end"].timestamp() < end]  # fmt: skip

    assert set(hour_vs_usual(T0, T0 + 86_400)) == {0.0}  # no earlier day
    assert max(map(abs, hour_vs_usual(T0 + 86_400, busy_from))) < 0.2
    # Forty minutes of ten times the pool's swaps: the last hour is several times its usual.
    assert hour_vs_usual(busy_from + 2340, busy_from + 2420)[-1] > math.log(4)

    _assert_streaming_settles_on(stream, expected)


def test_a_sandwich_arriving_in_parts_is_listed_as_batch_lists_it():
    """A V2 pair's sandwich (the bot's buy, a victim's buy, the bot's sell in one block),
    its three swaps arriving in two bundles: streaming's windows count and list it as
    batch's do."""
    bot, victim = f"0x{0xB0:040x}", f"0x{0xCC:040x}"
    history = [_event(i, T0 + 10 * i, "Swap") for i in range(6)]
    block, t = 50, T0 + 70

    def leg(n: int, log_index: int, trader: str, **amounts: str) -> PoolEvent:
        swap = _event(n, t, "Swap", to=trader, **amounts)
        return dataclasses.replace(swap, block_number=block, log_index=log_index)

    sandwich = [
        leg(100, 1, bot, amount0In="0", amount1In="1000", amount0Out="500", amount1Out="0"),
        leg(101, 2, victim, amount0In="0", amount1In="2100", amount0Out="1000", amount1Out="0"),
        leg(102, 3, bot, amount0In="500", amount1In="0", amount0Out="0", amount1Out="1050"),
    ]
    stream = _burst(TestStream().advance_watermark_to(T0), history)
    stream = _burst(stream, [sandwich[2], sandwich[0]])  # out of order, then the victim
    stream = _burst(stream, [sandwich[1]]).advance_watermark_to(t + 1000)
    stream = stream.advance_watermark_to_infinity()
    slices = [summarize_slice(POOL, e.block_timestamp, [e]) for e in history]
    slices.append(summarize_slice(POOL, t, sandwich))
    expected = {
        row["window_id"]: row for row in pool_windows((pool_key(history[0]), slices), SETTINGS)
    }
    listed = [row for row in expected.values() if row["sandwiches"]]
    assert listed and all(
        bot in row["patterns"] and "1000" not in row["patterns"] for row in listed
    )

    _assert_streaming_settles_on(stream, expected)
