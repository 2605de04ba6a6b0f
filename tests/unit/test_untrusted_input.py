"""No bad message can stop, skew or silence the pipeline: strict parsing, dead letters from
every step, admission of announced pools with each event id once, escalating alert threads,
and a watermark no single message can move. Unit tests on hand-made messages; the live run
is tests/integration/test_bad_input_live.py."""

from __future__ import annotations

import dataclasses
import math
import time
from datetime import UTC, datetime

import apache_beam as beam
import numpy as np
import orjson
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines.transforms.admission import POOLS, AdmitEvents
from beam_pipelines.transforms.parse import DEAD_LETTERS, ParsePoolEvents
from beam_pipelines.transforms.scoring import DetectorModelHandler, ScoreWindows
from beam_pipelines.transforms.sinks import alert_messages
from beam_pipelines.transforms.threads import ThreadAnomalies
from dexwatch.core.features.chain import FEATURE_NAMES, window_features
from dexwatch.core.features.effects import effect_of
from dexwatch.core.features.slices import SliceBuilder
from dexwatch.core.schemas.alert import (
    V1_COPY_ATTRIBUTE,
    Alert,
    AlertV1,
    PoolRef,
    TopFeature,
    parse_alert,
)
from dexwatch.core.schemas.pool_event import MessageError, PoolEvent
from dexwatch.core.settings import PipelineSettings
from infra.local.sample_events import (
    POISON,
    V2_POOL,
    V3_POOL,
    announcement,
    v2_burn,
    v2_sync_swap,
    v3_swap,
)
from tests._detectors import chain_detector, chain_rows

T0 = 1_700_000_000 // 60 * 60
SETTINGS = PipelineSettings(
    slice_s=10, current_slices=2, baseline_slices=6, min_baseline_share=0.5,
    allowed_lateness_s=60, alert_cooldown_s=60,
)  # fmt: skip


# What pipelines emit, by label: runners pickle DoFns, so a closure's list would be a copy;
# this module's global is the same object in the (in-process) runners.
_COLLECTED: dict[str, list] = {}


def _store(element, label: str) -> None:
    _COLLECTED.setdefault(label, []).append(element)


def _collect(pcoll, label: str) -> list:
    """Collect ``pcoll``'s elements into the returned list (filled when the pipeline ran)."""
    _COLLECTED[label] = []
    pcoll | f"Collect{label}" >> beam.Map(_store, label)
    return _COLLECTED[label]


def _streaming_options() -> PipelineOptions:
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    return options


# --- parsing checks what later steps use ------------------------------------------------


@pytest.mark.parametrize("case", sorted(POISON))
def test_every_poison_message_is_refused_with_a_reason(case):
    data = POISON[case](v3_swap(5, T0), v2_burn(6, T0, 10, 20))
    with pytest.raises(MessageError) as refused:
        PoolEvent.from_json(data)
    assert str(refused.value)


def test_valid_messages_of_every_kind_parse_back_equal():
    events = [
        announcement(V3_POOL, "uniswap_v3", T0),
        announcement(V2_POOL, "sushiswap", T0, 1),
        v3_swap(5, T0),
        *v2_sync_swap(6, T0),
        v2_burn(7, T0, 10, 20),
    ]
    for event in events:
        assert PoolEvent.from_json(event.to_json()) == event


def test_an_announcement_must_name_the_pool_it_created():
    created = announcement(V3_POOL, "uniswap_v3", T0)
    wrong = dataclasses.replace(created, pool=V2_POOL)
    with pytest.raises(MessageError, match="not the created pool"):
        PoolEvent.from_json(wrong.to_json())


def _parse(messages, max_ahead_s=None, stamp=False):
    """Runs ParsePoolEvents; returns (parsed, dead letter rows)."""
    with TestPipeline() as p:
        parsed = p | beam.Create(messages) | ParsePoolEvents(stamp, max_ahead_s)
        main = _collect(parsed.main, "main")
        dead = _collect(parsed[DEAD_LETTERS], "dead")
    return main, dead


def test_the_event_time_attribute_must_be_the_block_time():
    event = v3_swap(5, T0)
    good = PubsubMessage(event.to_json(), event.attributes(), message_id="1")
    shifted = PubsubMessage(
        event.to_json(), {**event.attributes(), "event_time": "2031-01-01T00:00:00Z"}, "2"
    )
    missing = PubsubMessage(
        event.to_json(),
        {k: v for k, v in event.attributes().items() if k != "event_time"},
        message_id="3",
    )
    parsed, dead = _parse([good, shifted, missing])
    assert [e.event_id for e in parsed] == [event.event_id]
    reasons = sorted(row["reason"] for row in dead)
    assert any("not the record's own time" in r for r in reasons), reasons
    assert any("no event_time attribute" in r for r in reasons), reasons
    assert {row["stage"] for row in dead} == {"parse"}
    # Each Pub/Sub message is its own dead letter, even with the same payload.
    assert len({row["letter_id"] for row in dead}) == 2


def test_live_reads_refuse_events_from_ahead_of_the_clock_and_replays_do_not():
    now = int(time.time())
    ahead = v3_swap(5, now + 86_400)
    fine = v3_swap(6, now + 5)
    messages = [
        PubsubMessage(e.to_json(), e.attributes(), message_id=str(i))
        for i, e in enumerate((ahead, fine))
    ]
    parsed, dead = _parse(messages, max_ahead_s=15)
    assert [e.block_number for e in parsed] == [6]
    assert "ahead of the clock" in dead[0]["reason"]
    replayed, none = _parse([ahead.to_json()], max_ahead_s=None)
    assert len(replayed) == 1 and not none


# --- property: nothing escapes, everything is counted once or dead-lettered ----------------

_numbers = st.one_of(
    st.integers(min_value=-(2**300), max_value=2**300).map(str),
    st.sampled_from(["1.5", "0x1f", "NaN", "Infinity", "-0", "+1", " 1", "1e3", "", "٣"]),
    st.text(max_size=12),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arg=st.sampled_from(sorted(v3_swap(1, T0).args)),
    value=_numbers,
    field=st.sampled_from(["block_number", "log_index", "block_timestamp", "chain_id", "pool"]),
    # orjson writes 64-bit integers at most (and reads larger ones as floats).
    field_value=st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=50)
    ),
)
def test_a_parsed_event_never_fails_a_later_step(arg, value, field, field_value):
    """Whatever the message, parsing either refuses it with a MessageError or returns an
    event whose contribution and window features are finite numbers."""
    for data in (
        dataclasses.replace(v3_swap(1, T0), args={**v3_swap(1, T0).args, arg: value}).to_json(),
        orjson.dumps({**v3_swap(1, T0).to_dict(), field: field_value}),
    ):
        try:
            event = PoolEvent.from_json(data)
        except MessageError:
            continue
        effect_of(event)  # raises nothing
        builder = SliceBuilder(event.pool, T0)
        builder.add(event)
        quiet = SliceBuilder(event.pool, T0 - 60)
        quiet.add(v3_swap(0, T0 - 60))
        features = window_features([quiet.summary, builder.summary], T0 + 20, 10, 2)
        assert features is not None and all(math.isfinite(v) for v in features.values())


def _mutated(event: PoolEvent, how: int, draw) -> tuple[bytes, bool]:
    """One message from ``event``: valid (True) or broken in one of several ways (False)."""
    if how == 0:
        return event.to_json(), True
    if how == 1:
        name = draw(st.sampled_from(sorted(event.args)))
        value = draw(_numbers)
        data = dataclasses.replace(event, args={**event.args, name: value}).to_json()
        try:
            PoolEvent.from_json(data)
            return data, True
        except MessageError:
            return data, False
    return POISON[draw(st.sampled_from(sorted(POISON)))](event, v2_burn(9, T0, 1, 1)), False


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_message_is_counted_once_or_dead_lettered(data):
    """A random stream of valid, broken, duplicated and conflicting messages through the
    batch parse and admission: each valid event id is counted once, each broken message and
    each conflicting copy is one dead letter, exact copies are dropped."""
    draw = data.draw
    messages: list[bytes] = [announcement(V3_POOL, "uniswap_v3", T0 - 60).to_json()]
    valid_ids: set[str] = set()
    broken = 0
    conflicts = 0
    for n in range(draw(st.integers(5, 25))):
        event = v3_swap(n + 10, T0 + n, price_step=n)
        message, ok = _mutated(event, draw(st.integers(0, 2)), draw)
        messages.append(message)
        if not ok:
            broken += 1
            continue
        parsed = PoolEvent.from_json(message)
        first = parsed.event_id not in valid_ids
        valid_ids.add(parsed.event_id)
        if first and draw(st.booleans()):
            messages.append(message)  # a redelivery: dropped
        if first and draw(st.booleans()):
            # The same id with a shifted block time: a conflicting copy.
            shifted = dataclasses.replace(parsed, block_timestamp=parsed.block_timestamp + 99)
            messages.append(shifted.to_json())
            conflicts += 1
    with TestPipeline(options=PipelineOptions(runner="FnApiRunner")) as p:
        parsed = p | beam.Create(list(enumerate(messages))) | ParsePoolEvents(stamp_event_time=True)
        admitted = parsed.main | AdmitEvents(SETTINGS, streaming=False)
        counted = _collect(admitted["main"], "counted")
        dead = _collect((parsed[DEAD_LETTERS], admitted[DEAD_LETTERS]) | beam.Flatten(), "dead")
    assert sorted(e.event_id for e in counted) == sorted(valid_ids)
    assert sum(row["stage"] == "parse" for row in dead) == broken
    assert sum(row["stage"] == "admit" for row in dead) == conflicts
    assert all("conflicting duplicate" in r["reason"] for r in dead if r["stage"] == "admit")


# --- admission: known pools, first version wins, retractions reset -------------------------


def _admit_streaming(events: list[PoolEvent]):
    """Streaming AdmitEvents over ``events`` in order; returns (admitted, dead, pools)."""
    stream = TestStream().advance_watermark_to(T0 - 120)
    for event in events:  # one bundle each: arrival order is the test's
        stream = stream.add_elements([TimestampedValue(event, event.block_timestamp)])
    stream = stream.advance_watermark_to_infinity()
    with TestPipeline(options=_streaming_options()) as p:
        admitted = p | stream | AdmitEvents(SETTINGS)
        main = _collect(admitted.main, "admitted")
        dead = _collect(admitted[DEAD_LETTERS], "dead")
        pools = _collect(admitted[POOLS], "pools")
    return [(e.kind, e.event_id) for e in main], dead, pools


def test_events_of_pools_nobody_announced_are_dead_lettered():
    stranger = dataclasses.replace(v3_swap(5, T0), pool="0x" + "99" * 20)
    admitted, dead, pools = _admit_streaming(
        [announcement(V3_POOL, "uniswap_v3", T0 - 60), v3_swap(4, T0), stranger]
    )
    assert [event_id for _, event_id in admitted] == [v3_swap(4, T0).event_id]
    assert len(dead) == 1 and dead[0]["stage"] == "admit"
    assert "unknown pool 0x9999" in dead[0]["reason"]
    assert [row["pool"] for row in pools] == [V3_POOL]


def test_the_first_version_of_an_event_id_wins_and_conflicts_are_dead_lettered():
    original = v3_swap(4, T0)
    shifted = dataclasses.replace(original, block_timestamp=T0 + 40)
    other_amount = dataclasses.replace(original, args={**original.args, "amount1": "5"})
    admitted, dead, _ = _admit_streaming(
        [
            announcement(V3_POOL, "uniswap_v3", T0 - 60),
            announcement(V2_POOL, "sushiswap", T0 - 60, 1),
            original,
            original,  # a redelivery: dropped silently
            shifted,
            other_amount,
        ]
    )
    assert admitted == [("event", original.event_id)]
    assert len(dead) == 2
    assert all("conflicting duplicate" in row["reason"] for row in dead)


def test_a_retraction_resets_its_id_so_a_flipped_back_event_counts_again():
    event = v3_swap(4, T0)
    admitted, dead, _ = _admit_streaming(
        [
            announcement(V3_POOL, "uniswap_v3", T0 - 60),
            event,
            event.retraction(),
            event.retraction(),  # repeated: nothing more to withdraw
            event,  # the reorg flipped back: the publisher sends it again
        ]
    )
    assert admitted == [
        ("event", event.event_id),
        ("retraction", event.event_id),
        ("event", event.event_id),
    ]
    assert dead == []


def test_batch_admission_follows_the_recordings_order():
    event = v3_swap(4, T0)
    numbered = list(
        enumerate(
            [
                announcement(V3_POOL, "uniswap_v3", T0 - 60),
                event,
                event,
                event.retraction(),  # orphaned ...
                event,  # ... then back: it counts
                v3_swap(5, T0 + 1),
                v3_swap(5, T0 + 1).retraction(),  # orphaned for good
            ]
        )
    )
    with TestPipeline(options=PipelineOptions(runner="FnApiRunner")) as p:
        admitted = p | beam.Create(numbered) | AdmitEvents(SETTINGS, streaming=False)
        counted = _collect(admitted["main"], "counted")
    assert [e.event_id for e in counted] == [event.event_id]


# --- scoring: nothing non-finite reaches the model ----------------------------------------


def test_the_detector_refuses_non_finite_features():
    detector = chain_detector()
    row = [0.0] * len(FEATURE_NAMES)
    row[2] = float("nan")
    with pytest.raises(ValueError, match="liquidity_removed_share is not a finite number"):
        detector.score([row])


def test_score_windows_dead_letters_rows_it_cannot_score(tmp_path):
    path = tmp_path / "model.joblib"
    chain_detector().save(path)
    normal = [{**r, "window_id": f"w{i}"} for i, r in enumerate(chain_rows(5))]
    broken = {**chain_rows(1)[0], "window_id": "nan", "price_change": float("nan")}
    lacking = {k: v for k, v in {**chain_rows(1)[0], "window_id": "lacking"}.items()
               if k != "volume_ratio"}  # fmt: skip
    with TestPipeline() as p:
        out = p | beam.Create([*normal, broken, lacking]) | ScoreWindows(DetectorModelHandler(path))
        scored = _collect(out["main"], "scored")
        dead = _collect(out[DEAD_LETTERS], "dead")
    assert sorted(r["window_id"] for r in scored) == [f"w{i}" for i in range(5)]
    assert sorted(row["stage"] for row in dead) == ["score", "score"]
    assert any("not finite: price_change" in row["reason"] for row in dead)


def test_a_model_that_fails_a_batch_dead_letters_its_rows_and_the_job_goes_on(tmp_path):
    class Broken(DetectorModelHandler):
        def run_inference(self, batch, model, inference_args=None):
            raise RuntimeError("the model fell over")

    path = tmp_path / "model.joblib"
    chain_detector().save(path)
    rows = [{**r, "window_id": f"w{i}"} for i, r in enumerate(chain_rows(3))]
    with TestPipeline() as p:
        out = p | beam.Create(rows) | ScoreWindows(Broken(path))
        dead = _collect(out[DEAD_LETTERS], "dead")
    assert len(dead) == 3
    assert all("the model fell over" in row["reason"] for row in dead)


# --- alert threads escalate; the contract's version 2 ---------------------------------------


def _anomaly(end: int, feature: str, value: float, score: float, **features: float) -> dict:
    return {
        **dict.fromkeys(FEATURE_NAMES, 0.0), feature: value, **features,
        "window_id": f"31337:{V3_POOL}:{end}", "chain_id": 31337, "dex": "uniswap_v3",
        "pool": V3_POOL, "source": "chain", "window_start": datetime.fromtimestamp(end - 60, UTC),
        "window_end": datetime.fromtimestamp(end, UTC), "events": 10, "score": score,
        "is_anomaly": True, "model_version": "m",
        "top_features": orjson.dumps(
            [{"name": feature, "value": value, "deviation": 30.0}]
        ).decode(),
    }  # fmt: skip


def _alerts_of(rows: list[dict]) -> list[Alert]:
    stream = TestStream().advance_watermark_to(T0)
    for row in rows:
        stream = stream.add_elements([TimestampedValue(row, T0)])
    with TestPipeline(options=_streaming_options()) as p:
        threaded = p | stream.advance_watermark_to_infinity() | ThreadAnomalies(cooldown_s=300)
        alerts = _collect(threaded.alerts, "alerts")
    return alerts


def test_a_real_drain_inside_a_false_alerts_cooldown_is_published_as_an_escalation():
    false_alarm = _anomaly(T0 + 60, "price_change", 0.02, -0.02)  # low, price-dislocation
    same_again = _anomaly(T0 + 75, "price_change", 0.03, -0.03)
    drain = _anomaly(T0 + 120, "liquidity_removed_share", 0.7, -0.3, net_liquidity_change=-0.7)
    alerts = _alerts_of([false_alarm, same_again, drain])
    assert [(a.revision, a.kind, a.severity) for a in alerts] == [
        (0, "price-dislocation", "low"),
        (1, "liquidity-drain", "high"),
    ]
    assert len({a.alert_id for a in alerts}) == 1


def test_a_higher_severity_of_the_same_kind_is_an_escalation_too():
    alerts = _alerts_of(
        [
            _anomaly(T0 + 60, "liquidity_removed_share", 0.2, -0.02),
            _anomaly(T0 + 75, "liquidity_removed_share", 0.3, -0.07),
            _anomaly(T0 + 90, "liquidity_removed_share", 0.3, -0.06),  # not higher
        ]
    )
    assert [(a.revision, a.severity) for a in alerts] == [(0, "low"), (1, "medium")]


def _alert(**changes) -> Alert:
    base = dict(
        alert_id=f"31337:{V3_POOL}:{T0}", revision=0, window_id="w", chain_id=31337,
        pools=[PoolRef(dex="uniswap_v3", pool=V3_POOL)], source="chain",
        kind="liquidity-drain", confidence=0.8, severity="high", score=-0.3,
        window_start=datetime.fromtimestamp(T0 - 60, UTC),
        window_end=datetime.fromtimestamp(T0, UTC),
        top_features=[TopFeature(name="liquidity_removed_share", value=0.7, deviation=40.0)],
        model_version="m", detected_at=datetime.now(UTC),
    )  # fmt: skip
    return Alert(**{**base, **changes})


def test_alert_v2_round_trips_and_version_1_is_read_as_revision_0():
    alert = _alert()
    assert parse_alert(alert.to_json()) == alert
    assert alert.attributes()["schema_version"] == "2"
    assert alert.attributes()["pool"] == V3_POOL
    v1 = alert.to_v1()
    assert isinstance(v1, AlertV1) and v1.deviation == "liquidity-drain"
    upgraded = parse_alert(v1.to_json())
    assert (upgraded.revision, upgraded.kind, upgraded.pool) == (0, "liquidity-drain", V3_POOL)
    with pytest.raises(ValueError, match="schema_version"):
        parse_alert(b'{"schema_version": 3}')


def test_a_market_alert_names_its_pools_and_has_no_pool_attribute():
    market = _alert(
        alert_id=f"31337:market:{T0}",
        scope="market",
        pools=[PoolRef(dex="uniswap_v3", pool=V3_POOL), PoolRef(dex="sushiswap", pool=V2_POOL)],
    )
    assert "pool" not in market.attributes() and market.attributes()["scope"] == "market"
    with pytest.raises(ValueError):
        market.to_v1()


def test_during_the_migration_opening_alerts_also_go_out_as_version_1():
    until = datetime.fromtimestamp(time.time() + 3600, UTC)
    opening = alert_messages(_alert(), until)
    assert [m.attributes["schema_version"] for m in opening] == ["2", "1"]
    assert opening[1].attributes[V1_COPY_ATTRIBUTE] == "1"
    assert AlertV1.model_validate_json(opening[1].data).alert_id == _alert().alert_id
    assert len(alert_messages(_alert(revision=1), until)) == 1  # v1 has no revisions
    assert len(alert_messages(_alert(), None)) == 1  # no migration configured


# --- the local read's watermark and journal --------------------------------------------------


def test_a_record_from_the_future_counts_only_up_to_the_time_it_was_read():
    from beam_pipelines.local_runner import effective_time_us

    now_ms = int(time.time() * 1000)
    record = {"t": (now_ms + 86_400_000) * 1000, "w": now_ms}
    assert effective_time_us(record) == now_ms * 1000
    honest = {"t": (now_ms - 3_000) * 1000, "w": now_ms}
    assert effective_time_us(honest) == honest["t"]


def test_the_journal_keeps_what_a_restart_needs_whatever_one_record_claims(tmp_path):
    from beam_pipelines.local_runner import Journal

    now_ms = int(time.time() * 1000)
    needs: list[int | None] = [None]  # nothing written yet: a restart replays everything
    journal = Journal(tmp_path, keep_s=60, restart_needs=lambda: needs[0])
    clock = time.time()

    def segment(t_ms: int, label: str) -> None:
        nonlocal clock
        clock += 61  # a segment a minute
        journal.append([{"t": t_ms * 1000, "w": now_ms, "a": {}, "d": label}])
        journal._rotate(clock)

    segment(now_ms - 3_600_000, "hour-old")
    segment(now_ms + 86_400_000, "a day ahead")
    # The record from the future moves the horizon only to when it was read, and with nothing
    # written a restart needs everything: nothing is deleted.
    assert [r["d"] for r in journal.records()] == ["hour-old", "a day ahead"]
    needs[0] = now_ms // 1000 - 600  # what a restart would now replay from
    segment(now_ms, "now")
    assert [r["d"] for r in journal.records()] == ["a day ahead", "now"]


def test_announcements_are_journaled_apart_and_never_expire(tmp_path):
    from beam_pipelines.local_runner import Journal

    now_ms = int(time.time() * 1000)
    created = announcement(V3_POOL, "uniswap_v3", T0)
    record = {"t": T0 * 1_000_000, "w": now_ms, "a": created.attributes(),
              "d": created.to_json().decode()}  # fmt: skip
    journal = Journal(tmp_path, keep_s=60, restart_needs=lambda: 10**10)
    journal.append([record, {"t": (now_ms - 120_000) * 1000, "w": now_ms, "a": {}, "d": "x"}])
    journal._rotate(time.time() + 61)
    journal.append([{"t": (now_ms + 10_000) * 1000, "w": now_ms + 10_000, "a": {}, "d": "y"}])
    journal._rotate(time.time() + 122)
    assert [r["d"] for r in journal.records()] == ["y"]  # the announcement's segment went
    assert [r["d"] for r in journal.announcements()] == [record["d"]]


def test_a_restarted_journal_expires_the_segments_of_the_run_before(tmp_path):
    from beam_pipelines.local_runner import Journal

    now_ms = int(time.time() * 1000)
    before = Journal(tmp_path, keep_s=60, restart_needs=lambda: 10**10)
    before.append([{"t": (now_ms - 600_000) * 1000, "w": now_ms - 600_000, "a": {}, "d": "old"}])
    before._rotate(time.time() + 61)
    before.append([{"t": now_ms * 1000, "w": now_ms, "a": {}, "d": "recent"}])
    # The restarted run has not written these segments: it reads their times from the files.
    after = Journal(tmp_path, keep_s=60, restart_needs=lambda: 10**10)
    after._rotate(time.time() + 122)
    after.append([{"t": (now_ms + 1_000) * 1000, "w": now_ms + 1_000, "a": {}, "d": "new"}])
    after._rotate(time.time() + 183)
    assert [r["d"] for r in after.records()] == ["recent", "new"]


def test_feature_rows_of_parsed_events_are_finite_for_extreme_but_valid_amounts():
    big = 2**255 - 1
    slices = []
    for k in range(8):
        builder = SliceBuilder(V2_POOL, T0 + 10 * k)
        for event in v2_sync_swap(k, T0 + 10 * k, reserve0=2**110):
            builder.add(PoolEvent.from_json(event.to_json()))
        slices.append(builder.summary)
    burn = PoolEvent.from_json(v2_burn(99, T0 + 75, big, big).to_json())
    slices[-1] = SliceBuilder(V2_POOL, T0 + 70).summary
    last = SliceBuilder(V2_POOL, T0 + 70)
    last.add(burn)
    slices[-1] = last.summary
    features = window_features(slices, T0 + 80, 10, 2)
    assert all(np.isfinite(list(features.values())))
