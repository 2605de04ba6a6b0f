import dataclasses

import fastavro
import orjson
import pytest

from dexwatch.core.schemas.pool_event import MessageError, PoolEvent, avro_schema
from dexwatch.core.schemas.tables import TABLES
from dexwatch.core.schemas.topics import chain_subscription, declaration

EVENT = PoolEvent(
    chain_id=1,
    dex="uniswap_v3",
    pool="0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640",
    event="Swap",
    block_number=17_000_000,
    block_hash="0x" + "ab" * 32,
    block_timestamp=1_680_000_000,
    tx_hash="0x" + "cd" * 32,
    log_index=7,
    args={
        "sender": "0x" + "11" * 20,
        "recipient": "0x" + "22" * 20,
        "amount0": "-1500000000",
        "amount1": "1000000000000000000",
        "sqrtPriceX96": "1771595571142957166518320255467520",
        "liquidity": "18000000000000000000",
        "tick": "-201234",
    },
)


def test_message_round_trips_and_matches_the_topic_schema() -> None:
    data = EVENT.to_json()
    assert PoolEvent.from_json(data) == EVENT
    assert fastavro.validate(orjson.loads(data), fastavro.parse_schema(avro_schema()))


def test_attributes_carry_filters_event_time_and_natural_id() -> None:
    attributes = EVENT.attributes()
    assert attributes["event_time"] == "2023-03-28T10:40:00Z"
    assert attributes["event_id"] == f"1:{EVENT.block_hash}:{EVENT.tx_hash}:7"
    assert {attributes[k] for k in ("chain_id", "dex", "pool", "event", "kind")} == {
        "1",
        "uniswap_v3",
        EVENT.pool,
        "Swap",
        "event",
    }
    assert EVENT.ordering_key == f"1:{EVENT.pool}"


def test_retraction_keeps_the_id() -> None:
    retraction = EVENT.retraction()
    assert retraction.kind == "retraction"
    assert retraction.event_id == EVENT.event_id
    assert PoolEvent.from_json(retraction.to_json()) == retraction


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("pool"), "missing field 'pool'"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(dex="pancakeswap"), "field 'dex'"),
        (lambda d: d.update(block_number="12"), "field 'block_number' must be int"),
        (lambda d: d.update(event_id="1:x:y:0"), "event_id does not match"),
        (lambda d: d.update(args={"amount0": 5}), "args values must be strings"),
        (lambda d: d.update(tx_from="0xABC"), "field 'tx_from' must be a lower-case hex"),
        (lambda d: d.update(sender="0x" + "1" * 40), "unknown fields sender"),
    ],
)
def test_malformed_messages_say_what_is_wrong(mutate, reason) -> None:
    raw = EVENT.to_dict()
    mutate(raw)
    with pytest.raises(MessageError, match=reason):
        PoolEvent.from_json(orjson.dumps(raw))


def test_a_message_without_a_sender_reads_as_unknown_sender() -> None:
    """Publishers before tx_from sent none: such messages still parse, the sender unknown."""
    raw = dataclasses.replace(EVENT, tx_from="0x" + "5e" * 20).to_dict()
    assert PoolEvent.from_json(orjson.dumps(raw)).tx_from == "0x" + "5e" * 20
    del raw["tx_from"]
    assert PoolEvent.from_json(orjson.dumps(raw)).tx_from == ""


def test_not_json_is_a_message_error() -> None:
    with pytest.raises(MessageError, match="not JSON"):
        PoolEvent.from_json(b"\x00garbage")


def test_declared_topics_exist_for_every_contract() -> None:
    topics = declaration().topics
    assert {"pool-events", "pool-events-dlq", "alerts"} <= set(topics)
    assert topics["pool-events"].schema_file == "pool_event.avsc"
    pipeline = topics["pool-events"].subscriptions["pool-events-pipeline"]
    assert pipeline.enable_message_ordering and pipeline.retain_acked_messages


def test_a_chain_with_a_topic_of_its_own_gets_a_copy_of_pool_events() -> None:
    shared = declaration().topics["pool-events"]
    topics = declaration(("polygon",)).topics
    assert set(topics) == {*declaration().topics, "pool-events-polygon"}
    own = topics["pool-events-polygon"]
    assert (own.schema_file, own.message_retention_s) == ("pool_event.avsc", 604800)
    assert own.subscriptions == {
        "pool-events-polygon-pipeline": shared.subscriptions["pool-events-pipeline"],
        "pool-events-polygon-monitor": shared.subscriptions["pool-events-monitor"],
    }
    with pytest.raises(ValueError, match="not a subscription of pool-events"):
        chain_subscription("polygon", "alerts-tail")


def test_tables_declare_natural_keys() -> None:
    for table in TABLES.values():
        assert table.natural_key and set(table.natural_key) <= set(table.column_names)


@pytest.mark.parametrize("max_features", [1.0, 0.6])
def test_the_detector_scores_its_forest_exactly_as_scikit_learn(max_features, tmp_path) -> None:
    """Detector scores the forest tree by tree (without joblib's per-tree dispatch): the same
    score_samples to the last bit, also with per-tree feature subsets, and after a save."""
    import dataclasses

    import numpy as np
    from sklearn.ensemble import IsolationForest

    from dexwatch.core.detector import Detector
    from tests._detectors import hourly_detector, hourly_rows

    base = hourly_detector()
    x = hourly_rows(400, seed=7)
    forest = IsolationForest(n_estimators=40, max_samples=128, max_features=max_features,
                             random_state=5).fit(x)  # fmt: skip
    detector = dataclasses.replace(base, forest=forest)
    assert np.array_equal(detector._depths.score_samples(x), forest.score_samples(x))
    outliers = x * np.array([30.0] + [1.0] * (x.shape[1] - 1))
    assert np.array_equal(detector._depths.score_samples(outliers), forest.score_samples(outliers))
    detector.save(tmp_path / "d.joblib")  # with the derived trees cached: not saved
    loaded = Detector.load(tmp_path / "d.joblib")
    assert "_depths" not in loaded.__dict__
    assert np.array_equal(loaded.anomaly_score(x), detector.anomaly_score(x))
