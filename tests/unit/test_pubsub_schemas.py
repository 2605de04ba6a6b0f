"""The pool-events topic validates every message against pool_event.avsc, JSON-encoded
(infra/terraform/pubsub.tf): what the chain publisher sends must be valid Avro JSON for it,
or Pub/Sub refuses the publisher's own messages.

Avro's JSON encoding is stricter than "JSON with these fields": every field present (a
default does not excuse a missing one), no others, enum symbols as strings, ints within
32 bits, and optional values as {"type": value} unions (pool_event.avsc has none).
fastavro's JSON reader alone is lenient, so the decoded record is also validated strictly and
compared with the JSON it came from.
"""

from __future__ import annotations

import dataclasses
import io

import fastavro
import orjson
import pytest
from fastavro.validation import validate

from dexwatch.core.schemas.pool_event import (
    ARGUMENT_TYPES,
    PoolEvent,
    abi_range,
    avro_schema,
    check_args,
)
from dexwatch.core.settings import Settings
from infra.local.recorded_chain import RecordedChainNode, open_recording
from publishers.chain import run
from tests.conftest import SHARED

SCHEMA = fastavro.parse_schema(avro_schema())
RECORDED_DAY = SHARED / "data" / "real-logs" / "polygon-uniswap-v3-usdc-weth-500-2021-12-22.csv"
DEX_OF_PROTOCOL = {"v3": ("uniswap_v3",), "v2": ("uniswap_v2", "sushiswap")}
POOL = "0x" + "5a" * 20


def avro_json_problem(data: bytes) -> str | None:
    """None if ``data`` is a valid Avro JSON encoding of pool_event.avsc, else why not."""
    value = orjson.loads(data)
    try:
        record = next(iter(fastavro.json_reader(io.StringIO(data.decode()), SCHEMA)))
        validate(record, SCHEMA, raise_errors=True, strict=True)
    except Exception as err:  # noqa: BLE001 - every refusal is the answer
        return f"{type(err).__name__}: {err}"
    if record != value:  # a field filled from its default, or one the schema does not have
        return f"fields differ: {sorted(set(record) ^ set(value))}"
    return None


def every_kind_of_event() -> list[PoolEvent]:
    """One event of every (dex, event) the contract knows, its arguments at their types'
    extremes, with and without a sender, and each one's retraction."""
    events = []
    for protocol, names in ARGUMENT_TYPES.items():
        for dex in DEX_OF_PROTOCOL[protocol]:
            for index, (name, types) in enumerate(names.items()):
                args = {
                    arg: POOL if abi == "address" else str(abi_range(abi)[index % 2])
                    for arg, abi in types.items()
                }
                event = PoolEvent(
                    chain_id=2**63 - 1, dex=dex, pool=POOL, event=name,
                    block_number=2**63 - 1, block_hash="0x" + "ab" * 32,
                    block_timestamp=253_402_300_799, tx_hash="0x" + "cd" * 32,
                    log_index=2**31 - 1, args=args, tx_from="0x" + "77" * 20 if index % 2 else "",
                )  # fmt: skip
                check_args(event)  # a message the pipeline would accept
                events += [event, event.retraction()]
    return events


def test_every_kind_of_event_is_valid_avro_json():
    events = every_kind_of_event()
    assert len(events) == 2 * (5 + 2 * 5)  # v3: 5 events; v2 (two dexes): 5 each
    assert {e.event for e in events} == {n for names in ARGUMENT_TYPES.values() for n in names}
    assert [avro_json_problem(e.to_json()) for e in events] == [None] * len(events)


@pytest.mark.skipif(not RECORDED_DAY.exists(), reason="../shared/data/real-logs absent")
def test_what_the_chain_publisher_publishes_is_valid_avro_json(tmp_path):
    """The real publisher, reading a recorded Polygon day from a node on 127.0.0.1."""
    with RecordedChainNode(open_recording(RECORDED_DAY)) as node:
        stats = run(
            node.following(Settings(state_dir=tmp_path / "state")),
            once=True,
            record_to=tmp_path / "recording",
        )
    lines = (tmp_path / "recording" / "pool-events.jsonl").read_bytes().splitlines()
    assert len(lines) == stats.events + stats.announcements == 211
    assert [avro_json_problem(line) for line in lines] == [None] * len(lines)


def test_the_check_refuses_what_pubsub_would():
    event = every_kind_of_event()[0]
    good = orjson.loads(event.to_json())
    assert avro_json_problem(event.to_json()) is None

    def mutated(**changes) -> bytes:
        value = {**good, **changes}
        return orjson.dumps({k: v for k, v in value.items() if v is not dataclasses.MISSING})

    refused = {
        "an argument as a number": mutated(args={**good["args"], "amount0": 5}),
        "an unknown kind": mutated(kind="withdrawal"),
        "an unknown dex": mutated(dex="curve"),
        "a string chain id": mutated(chain_id="1"),
        "a log index over 32 bits": mutated(log_index=2**31),
        "a missing field with a default": mutated(tx_from=dataclasses.MISSING),
        "a field the schema lacks": mutated(extra="x"),
        "a null sender": mutated(tx_from=None),
    }
    accepted = [what for what, data in refused.items() if avro_json_problem(data) is None]
    assert accepted == []
