"""The hourly branch on hand-made pool-hourly streams (TestStream, assert_that), and the
alert threading both paths share."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import apache_beam as beam
import orjson
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.transforms.hourly import ParsePoolHours, PoolHourFeatures, hourly_row
from beam_pipelines.transforms.parse import DEAD_LETTERS
from beam_pipelines.transforms.scoring import DetectorModelHandler, ScoreWindows
from beam_pipelines.transforms.threads import AlertThreads, ThreadAnomalies
from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.features.hourly import (
    HOURLY_FEATURE_NAMES,
    HOURLY_FEATURES_VERSION,
    MIN_PREVIOUS_HOURS,
    series_features,
)
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour
from model.hourly import train_hourly_detector

POOL = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20
T0 = 1_800_000_000 // HOUR_S * HOUR_S
HOURS = 40


def _hour(i: int, pool: str = POOL, **fields) -> PoolHour:
    # An even, slightly varying market: volume 100k USD an hour, TVL 2M.
    wobble = ((i * 7919) % 13 - 6) / 100
    values = dict(
        chain_id=31337, dex="sushiswap", pool=pool, hour_start=T0 + i * HOUR_S,
        volume_usd=1e5 * (1 + wobble), tvl_usd=2e6 * (1 + wobble / 10), liquidity=1e22,
        fees_usd=300.0, tx_count=1000 + 10 * (i % 5), token0_price=3000.0,
        token1_price=1 / 3000, indexed_block=100 + i,
    )  # fmt: skip
    values.update(fields)
    return PoolHour(**values)


def _streaming_options() -> PipelineOptions:
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    return options


def _message(hour: PoolHour) -> TimestampedValue:
    return TimestampedValue(hour.to_json(), hour.hour_end)


@pytest.fixture(scope="module")
def hourly_model(tmp_path_factory):
    """A model trained on normal hours of two pools (other hours than the tests')."""
    normal = [
        _hour(i, pool=pool, hour_start=T0 - (200 - i) * HOUR_S)
        for pool in (POOL, OTHER)
        for i in range(100)
    ]
    path = tmp_path_factory.mktemp("hourly-model") / "current.joblib"
    train_hourly_detector(normal).save(path)
    return path


def test_out_of_order_duplicate_filled_and_malformed_hours_settle_on_the_batch_rows(
    hourly_model,
):
    series = [_hour(i) for i in range(HOURS)]
    # The same hour republished as the subgraph indexed further: the later version wins
    # (and recomputes the hours after it).
    corrected_30 = _hour(30, volume_usd=1.04e5, indexed_block=500)
    spike = _hour(HOURS, volume_usd=2.5e6, tx_count=9000)  # 25 times the usual volume
    # Another pool with a quiet hour the publisher filled: it counts in the history.
    other = [_hour(i, pool=OTHER) for i in range(26)]
    other[22] = _hour(22, pool=OTHER, volume_usd=0.0, tx_count=0, filled=True)
    expected = {
        row["window_id"]: row
        for hours in ([*series[:30], corrected_30, *series[31:], spike], other)
        for row in (hourly_row(h, f) for h, f in series_features(hours))
    }

    rng = random.Random(11)
    arrivals = series + series[::4] + other  # redeliveries
    arrivals.sort(key=lambda h: (h.hour_start // (4 * HOUR_S), rng.random()))  # out of order
    stream = TestStream().advance_watermark_to(T0)
    for start in range(0, len(arrivals), 7):
        stream = stream.add_elements([_message(h) for h in arrivals[start : start + 7]])
    stream = stream.add_elements(
        [b'{"schema_version": 1, "pool": "nope"}', _message(corrected_30), _message(spike)]
    )
    stream = stream.advance_watermark_to(T0 + 100 * HOUR_S).advance_watermark_to_infinity()

    def check_rows(rows):
        settled = {}
        for row in rows:  # in order of emission: a later row of an hour replaces earlier ones
            settled[row["window_id"]] = row
        assert settled.keys() == expected.keys()
        for window_id, row in settled.items():
            for name in ("window_start", "window_end", "events", "source", "dex", "pool"):
                assert row[name] == expected[window_id][name], (window_id, name)
            for name in HOURLY_FEATURE_NAMES:
                assert row[name] == expected[window_id][name], (window_id, name)
        # The filled hour is scored, and counts in the next hour's history as zero volume.
        filled = settled[f"31337:{OTHER}:{T0 + 22 * HOUR_S}:hour"]
        assert filled["volume_usd"] == 0.0 and filled["events"] == 0
        after = settled[f"31337:{OTHER}:{T0 + 23 * HOUR_S}:hour"]
        assert after["vol_ma_6h"] == pytest.approx(sum(h.volume_usd for h in other[17:23]) / 6)
        # Scores: of the even pool's hours, the spike alone is anomalous.
        anomalous = {w for w, row in settled.items() if row["is_anomaly"] and POOL in w}
        assert anomalous == {f"31337:{POOL}:{T0 + HOURS * HOUR_S}:hour"}, anomalous
        spike_row = settled[f"31337:{POOL}:{T0 + HOURS * HOUR_S}:hour"]
        assert spike_row["source"] == "subgraph" and spike_row["score"] < 0
        assert orjson.loads(spike_row["top_features"])[0]["name"] in HOURLY_FEATURE_NAMES

    with TestPipeline(options=_streaming_options()) as p:
        parsed = p | stream | ParsePoolHours()
        scored = (
            (parsed.main | PoolHourFeatures(allowed_lateness_h=24))["main"]
            | ScoreWindows(
                DetectorModelHandler(
                    hourly_model,
                    feature_names=HOURLY_FEATURE_NAMES,
                    features_version=HOURLY_FEATURES_VERSION,
                ),
                HOURLY_FEATURE_NAMES,
            )
        )["main"]
        assert_that(scored, check_rows, label="rows")
        reasons = parsed[DEAD_LETTERS] | beam.Map(lambda row: (row["stage"], row["reason"]))

        def check_dead(got):
            assert len(got) == 1 and got[0][0] == "parse-hourly"
            assert "chain_id" in got[0][1] or "pool" in got[0][1]

        assert_that(reasons, check_dead, label="dead")


def test_batch_rows_are_the_series_rows():
    hours = [_hour(i) for i in range(30)] + [_hour(i, pool=OTHER) for i in range(25)]
    expected = [
        row["window_id"]
        for pool in (POOL, OTHER)
        for row in (
            hourly_row(h, f) for h, f in series_features([h for h in hours if h.pool == pool])
        )
    ]
    shuffled = hours + hours[:10]
    random.Random(2).shuffle(shuffled)
    with TestPipeline(options=PipelineOptions(runner="FnApiRunner")) as p:
        rows = (
            p | beam.Create([h.to_json() for h in shuffled]) | ParsePoolHours(stamp_event_time=True)
        ).main | PoolHourFeatures(allowed_lateness_h=24, streaming=False)
        rows = rows["main"]
        assert_that(rows | beam.Map(lambda r: r["window_id"]), equal_to(expected))
    assert len(expected) == (30 - MIN_PREVIOUS_HOURS) + (25 - MIN_PREVIOUS_HOURS)


def test_a_resumed_run_rebuilds_the_state_from_hours_it_had_written():
    """The local journal replays hours the previous run wrote (up to hour 25 of POOL): they
    only rebuild the state; the hours after them, and every hour of a pool not written
    before, are emitted."""
    written = {f"31337:{POOL}": T0 + 26 * HOUR_S}  # hour 25's end
    hours = [_hour(i) for i in range(30)] + [_hour(i, pool=OTHER) for i in range(22)]
    stream = TestStream().advance_watermark_to(T0)
    stream = stream.add_elements([_message(h) for h in hours]).advance_watermark_to_infinity()
    expected = [f"31337:{POOL}:{T0 + i * HOUR_S}:hour" for i in range(26, 30)]
    expected += [f"31337:{OTHER}:{T0 + i * HOUR_S}:hour" for i in range(MIN_PREVIOUS_HOURS, 22)]
    with TestPipeline(options=_streaming_options()) as p:
        rows = ((p | stream | ParsePoolHours()).main | PoolHourFeatures(24, final_before=written))[
            "main"
        ]
        assert_that(rows | beam.Map(lambda r: r["window_id"]), equal_to(expected))


# --- alert threads shared by both paths -------------------------------------------------

MINUTE = 60


def _anomaly(
    source: str, start: int, end: int, pool: str = POOL, feature: str = "price_change"
) -> dict:
    window_id = f"31337:{pool}:{end}" + (":hour" if source == "subgraph" else "")
    feature = "volume_zscore" if source == "subgraph" else feature
    features = {**dict.fromkeys(FEATURE_NAMES, 0.0), feature: 9.0} if source == "chain" else {}
    return {
        **features,
        "window_id": window_id, "chain_id": 31337, "dex": "sushiswap", "pool": pool,
        "source": source, "window_start": datetime.fromtimestamp(start, UTC),
        "window_end": datetime.fromtimestamp(end, UTC), "events": 10, "score": -0.2,
        "is_anomaly": True, "model_version": "m",
        "top_features": orjson.dumps([{"name": feature, "value": 9.0, "deviation": 30.0}]).decode(),
    }  # fmt: skip


def _threads(batches: list[list[dict]], check) -> None:
    """Runs ThreadAnomalies over the rows, batch after batch (arrival order), and calls
    ``check(alert id by anomaly window id, alerts as (alert_id, source, kind, revision))``."""
    stream = TestStream().advance_watermark_to(T0)
    for batch in batches:
        stream = stream.add_elements([TimestampedValue(r, T0) for r in batch])
    stream = stream.advance_watermark_to_infinity()

    def split(got):
        anomalies = {item[1]: item[2] for item in got if item[0] == "anomaly"}
        check(anomalies, [item[1:] for item in got if item[0] == "alert"])

    with TestPipeline(options=_streaming_options()) as p:
        threaded = p | stream | ThreadAnomalies(cooldown_s=5 * MINUTE)
        both = (
            threaded.anomalies
            | "A" >> beam.Map(lambda a: ("anomaly", a["window_id"], a["alert_id"])),
            threaded.alerts
            | "B" >> beam.Map(lambda a: ("alert", a.alert_id, a.source, a.kind, a.revision)),
        ) | beam.Flatten()
        assert_that(both, split)


HOUR_10 = T0 + 10 * HOUR_S


def test_an_incident_both_paths_flag_is_one_alert_thread():
    chain = [_anomaly("chain", HOUR_10 + 20 * MINUTE + 15 * k, HOUR_10 + 21 * MINUTE + 15 * k)
             for k in range(3)]  # fmt: skip
    hourly = _anomaly("subgraph", HOUR_10, HOUR_10 + HOUR_S)  # its hour, an hour later

    # One thread, opened by the path that saw the incident first; the other path's anomaly
    # of another kind joins it as the thread's next revision (an escalation), not as an
    # alert of its own.
    def chain_first(anomalies, alerts):
        opened = [a for a in alerts if a[3] == 0]
        assert len(opened) == 1 and opened[0][1] == "chain", alerts
        assert {a[0] for a in alerts} == {opened[0][0]}
        assert [(a[1], a[2], a[3]) for a in alerts if a[3]] == [("subgraph", "volume-spike", 1)]
        assert set(anomalies.values()) == {opened[0][0]} and len(anomalies) == 4

    _threads([chain, [hourly]], chain_first)

    # The other way round: the hourly path saw it first (a slow drain), the chain path's
    # anomaly in the same hour joins its thread.
    def hourly_first(anomalies, alerts):
        opened = [(a[1], a[2]) for a in alerts if a[3] == 0]
        assert opened == [("subgraph", "volume-spike")], alerts
        assert {a[0] for a in alerts} == {alerts[0][0]}
        assert len(set(anomalies.values())) == 1 and len(anomalies) == 2

    _threads([[hourly], chain[:1]], hourly_first)


def test_anomalies_apart_in_time_or_pool_are_separate_threads():
    hourly = _anomaly("subgraph", HOUR_10, HOUR_10 + HOUR_S)
    # Half an hour after the anomalous hour ended, and another pool in the same hour.
    later_chain = _anomaly("chain", HOUR_10 + 90 * MINUTE, HOUR_10 + 91 * MINUTE)
    other_pool = _anomaly("chain", HOUR_10 + 20 * MINUTE, HOUR_10 + 21 * MINUTE, pool=OTHER)

    def check(anomalies, alerts):
        assert len(alerts) == 3 and len(set(anomalies.values())) == 3, alerts

    _threads([[hourly], [later_chain, other_pool]], check)


def test_an_hour_arriving_after_a_newer_thread_joins_the_thread_of_its_own_time():
    chain_a = _anomaly("chain", HOUR_10 + 20 * MINUTE, HOUR_10 + 21 * MINUTE)
    chain_b = _anomaly("chain", HOUR_10 + 70 * MINUTE, HOUR_10 + 71 * MINUTE)  # 11:10
    hourly = _anomaly("subgraph", HOUR_10, HOUR_10 + HOUR_S)  # published at about 11:15
    earlier_hour = _anomaly("subgraph", HOUR_10 - 3 * HOUR_S, HOUR_10 - 2 * HOUR_S)

    def check(anomalies, alerts):
        thread_a = f"31337:{POOL}:{HOUR_10 + 21 * MINUTE}"
        assert anomalies[hourly["window_id"]] == thread_a
        # An hour near no thread opens its own, even when it comes after newer ones.
        assert anomalies[earlier_hour["window_id"]] not in (
            thread_a,
            anomalies[chain_b["window_id"]],
        )
        opened = [a for a in alerts if a[3] == 0]
        assert len(opened) == 3 and {a[0] for a in opened} == set(anomalies.values())
        # The hour brings a kind thread A had not shown: thread A's revision 1.
        assert [(a[0], a[3]) for a in alerts if a[3]] == [(thread_a, 1)]

    _threads([[chain_a], [chain_b], [hourly], [earlier_hour]], check)


def test_consecutive_anomalous_hours_stay_one_thread():
    hours = [
        _anomaly("subgraph", HOUR_10 + i * HOUR_S, HOUR_10 + (i + 1) * HOUR_S) for i in range(3)
    ]

    def check(anomalies, alerts):
        assert len(alerts) == 1 and len(set(anomalies.values())) == 1 and len(anomalies) == 3

    _threads([[h] for h in hours], check)


def test_a_drained_pools_remains_stay_in_the_drains_thread():
    drain = _anomaly("chain", T0, T0 + MINUTE, feature="liquidity_removed_share")
    # Hours later, the pool's remains: every swap moves the price far.
    remains = [_anomaly("chain", T0 + h * HOUR_S, T0 + h * HOUR_S + MINUTE) for h in (1, 3, 6)]
    threads = AlertThreads(5 * MINUTE)
    anomaly, alert = threads.add(drain)
    assert alert is not None and alert.kind == "liquidity-drain"
    joined = [threads.add(row) for row in remains]
    assert {a["alert_id"] for a, _ in joined} == {anomaly["alert_id"]}
    # A new kind revises the drain's alert once; the rest of the remains publish nothing.
    assert [(alert.kind, alert.revision) for _, alert in joined if alert] == [
        ("price-dislocation", 1)
    ]
    # Another pool, and the same remains after a thread of another kind, open their own.
    elsewhere = AlertThreads(5 * MINUTE)
    elsewhere.add(_anomaly("chain", T0, T0 + MINUTE))
    assert elsewhere.add(remains[0])[1] is not None


def test_a_drift_crossing_its_limit_again_within_its_hour_stays_one_thread():
    # A price drift over the hour flags minutes 0, 8, 16 and 50 (each crossing its limit
    # again), then minute 130, an hour and more after its last.
    minutes = (0, 8, 16, 50, 130)

    def alert_ids(feature: str) -> list[str]:
        threads = AlertThreads(5 * MINUTE)
        rows = [_anomaly("chain", T0 + m * MINUTE, T0 + (m + 1) * MINUTE, feature=feature)
                for m in minutes]  # fmt: skip
        return [threads.add(row)[0]["alert_id"] for row in rows]

    slow = alert_ids("price_drift_1h")
    assert len(set(slow[:4])) == 1 and slow[4] != slow[0]
    # Flagged for a one-minute move, minutes 8 apart are separate incidents.
    assert len(set(alert_ids("price_change"))) == 5


def test_batch_threads_do_not_depend_on_the_order_rows_are_processed_in():
    # Windows 4 minutes apart bridge two runs 8 minutes apart: in time order one thread;
    # in an order that sees both ends before the bridge, an order-bound threading opens two.
    rows = [_anomaly("chain", T0 + m * MINUTE, T0 + (m + 1) * MINUTE) for m in (0, 4, 8, 40)]
    in_time = AlertThreads(5 * MINUTE)
    # One thread, then another 32 minutes later.
    assert len({in_time.add(row)[0]["alert_id"] for row in rows}) == 2
    ends_first = AlertThreads(5 * MINUTE)
    assert len({ends_first.add(rows[i])[0]["alert_id"] for i in (0, 2, 1, 3)}) == 3

    orders = [rows, rows[::-1], [rows[2], rows[0], rows[3], rows[1]]]
    for order in orders:
        with TestPipeline(runner="FnApiRunner") as p:
            threaded = (
                p
                | beam.Create(order, reshuffle=False)
                | ThreadAnomalies(cooldown_s=5 * MINUTE, streaming=False)
            )
            assert_that(
                threaded.anomalies | beam.Map(lambda a: (a["window_id"], a["alert_id"])),
                equal_to([
                    (row["window_id"], f"31337:{POOL}:{T0 + MINUTE}") for row in rows[:3]
                ] + [(rows[3]["window_id"], f"31337:{POOL}:{T0 + 41 * MINUTE}")]),
            )  # fmt: skip
