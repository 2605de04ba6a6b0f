"""The chain publisher's event definitions and its word-by-word decoder, checked against the
real contracts' ABIs and against eth_abi."""

from __future__ import annotations

import json
from pathlib import Path

import eth_abi
import pytest
from eth_abi.exceptions import DecodingError
from hypothesis import given, settings
from hypothesis import strategies as st

from dexwatch.core.settings import FactoryConfig
from publishers.chain.abi import EventDecoder, LogDecodeError, event_abi
from publishers.chain.events import (
    POOL_CREATED,
    POOL_EVENTS,
    Pool,
    decode_pool_created,
    decode_pool_logs,
)

NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
ARTIFACTS = {
    "v3 pool": "@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json",
    "v3 factory": "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json",
    "v2 pair": "@uniswap/v2-core/build/UniswapV2Pair.json",
    "v2 factory": "@uniswap/v2-core/build/UniswapV2Factory.json",
    "sushi pair": "@sushiswap/core/abi/UniswapV2Pair.json",
    "sushi factory": "@sushiswap/core/abi/UniswapV2Factory.json",
}
ALL_DECODERS = [
    *POOL_EVENTS["v3"].values(),
    *POOL_EVENTS["v2"].values(),
    *(decoder for decoder, _ in POOL_CREATED.values()),
]


def _artifact_events(name: str) -> dict[str, dict]:
    data = json.loads((NODE_MODULES / ARTIFACTS[name]).read_text())
    abi = data["abi"] if isinstance(data, dict) else data
    return {entry["name"]: entry for entry in abi if entry["type"] == "event"}


def _shape(abi: dict, with_names: bool = True) -> list[tuple]:
    return [(p["type"], p["indexed"], p["name"] if with_names else None) for p in abi["inputs"]]


@pytest.mark.parametrize(
    ("protocol", "artifacts"),
    [("v3", ["v3 pool"]), ("v2", ["v2 pair", "sushi pair"])],
)
def test_pool_events_match_the_deployed_contracts_abi(protocol: str, artifacts: list[str]):
    for artifact in artifacts:
        real = _artifact_events(artifact)
        for decoder in POOL_EVENTS[protocol].values():
            assert _shape(decoder.abi) == _shape(real[decoder.name]), (artifact, decoder.name)


@pytest.mark.parametrize(
    ("protocol", "artifacts"), [("v3", ["v3 factory"]), ("v2", ["v2 factory", "sushi factory"])]
)
def test_pool_creation_events_match_the_factories_abi(protocol: str, artifacts: list[str]):
    decoder, _ = POOL_CREATED[protocol]
    for artifact in artifacts:
        real = _artifact_events(artifact)[decoder.name]
        # The V2 factory leaves its last argument unnamed; names do not enter topic0.
        assert _shape(decoder.abi, with_names=False) == _shape(real, with_names=False)
        assert decoder.topic0 == EventDecoder(real).topic0


def test_topic0_of_well_known_events():
    v2 = {d.name: d.topic0 for d in POOL_EVENTS["v2"].values()}
    v3 = {d.name: d.topic0 for d in POOL_EVENTS["v3"].values()}
    assert v2["Swap"] == "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
    assert v2["Sync"] == "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1"
    assert v3["Swap"] == "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"
    assert all(decoder.is_static for decoder in ALL_DECODERS)


def _value(abi_type: str) -> st.SearchStrategy:
    if abi_type == "address":
        return st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
    bits = int(abi_type.lstrip("uint") or 256)
    if abi_type.startswith("u"):
        return st.integers(0, 2**bits - 1)
    return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def _encode(decoder: EventDecoder, values: list) -> tuple[list[str], str]:
    topics, data_types, data_values = [decoder.topic0], [], []
    for param, value in zip(decoder.abi["inputs"], values, strict=True):
        if param["indexed"]:
            topics.append("0x" + eth_abi.encode([param["type"]], [value]).hex())
        else:
            data_types.append(param["type"])
            data_values.append(value)
    return topics, "0x" + eth_abi.encode(data_types, data_values).hex()


def _expected(decoder: EventDecoder, topics: list[str], data: str) -> dict[str, str]:
    """What eth_abi decodes, formatted as the message strings."""
    params = decoder.abi["inputs"]
    data_values = iter(
        eth_abi.decode([p["type"] for p in params if not p["indexed"]], bytes.fromhex(data[2:]))
    )
    topic_words = iter(topics[1:])
    out = {}
    for param in params:
        if param["indexed"]:
            value = eth_abi.decode([param["type"]], bytes.fromhex(next(topic_words)[2:]))[0]
        else:
            value = next(data_values)
        out[param["name"]] = value.lower() if param["type"] == "address" else str(value)
    return out


@st.composite
def _event_with_values(draw: st.DrawFn) -> tuple[EventDecoder, list]:
    decoder = draw(st.sampled_from(ALL_DECODERS))
    return decoder, [draw(_value(p["type"])) for p in decoder.abi["inputs"]]


@settings(max_examples=400, deadline=None)
@given(_event_with_values())
def test_decoding_equals_eth_abi_for_encoded_values(case: tuple[EventDecoder, list]):
    decoder, values = case
    topics, data = _encode(decoder, values)
    decoded = decoder.decode(topics, data)
    assert decoded == _expected(decoder, topics, data)
    # And the values round-trip to what was encoded.
    for param, value in zip(decoder.abi["inputs"], values, strict=True):
        assert decoded[param["name"]] == (value if param["type"] == "address" else str(value))


@st.composite
def _event_with_random_words(draw: st.DrawFn) -> tuple[EventDecoder, list[str], str]:
    """Arbitrary 32-byte words, often with padding that is not a valid encoding."""
    decoder = draw(st.sampled_from(ALL_DECODERS))
    word = st.one_of(
        st.binary(min_size=32, max_size=32),
        st.tuples(st.sampled_from([b"\x00", b"\xff"]), st.binary(min_size=1, max_size=32)).map(
            lambda t: (t[0] * 32 + t[1])[-32:]
        ),
    )
    params = decoder.abi["inputs"]
    topics = [decoder.topic0] + ["0x" + draw(word).hex() for p in params if p["indexed"]]
    data = "0x" + b"".join(draw(word) for p in params if not p["indexed"]).hex()
    return decoder, topics, data


@settings(max_examples=400, deadline=None)
@given(_event_with_random_words())
def test_decoder_rejects_exactly_what_eth_abi_rejects(case: tuple[EventDecoder, list[str], str]):
    decoder, topics, data = case
    try:
        expected = _expected(decoder, topics, data)
    except DecodingError:
        with pytest.raises(LogDecodeError):
            decoder.decode(topics, data)
    else:
        assert decoder.decode(topics, data) == expected


SYNC = next(d for d in POOL_EVENTS["v2"].values() if d.name == "Sync")
V2_SWAP = next(d for d in POOL_EVENTS["v2"].values() if d.name == "Swap")


@pytest.mark.parametrize(
    ("topics", "data", "message"),
    [
        ([SYNC.topic0, "0x" + "00" * 32], "0x" + "00" * 64, "indexed inputs"),
        ([SYNC.topic0], "0x" + "00" * 63, "must be 64 bytes"),
        ([SYNC.topic0], "0x" + "00" * 96, "must be 64 bytes"),
        ([SYNC.topic0], "0x" + "zz" * 64, "not valid hex"),
        ([SYNC.topic0], "00" * 64, "0x-prefixed"),
        ([V2_SWAP.topic0, "0x" + "00" * 31, "0x" + "00" * 32], "0x" + "00" * 128, "32 bytes"),
    ],
)
def test_malformed_logs_raise_a_decode_error(topics: list[str], data: str, message: str):
    decoder = V2_SWAP if topics[0] == V2_SWAP.topic0 else SYNC
    with pytest.raises(LogDecodeError, match=message):
        decoder.decode(topics, data)


def test_events_with_dynamic_types_fall_back_to_eth_abi():
    decoder = EventDecoder(
        event_abi(
            "Note(address indexed who, string indexed tag, string text, uint256[] values,"
            " bool flag, bytes32 id, int8 small)"
        )
    )
    assert not decoder.is_static
    who, tag_hash = "0x" + "ab" * 20, "0x" + "cd" * 32
    data = eth_abi.encode(
        ["string", "uint256[]", "bool", "bytes32", "int8"],
        ["hello", [1, 2**200], True, b"\x01" * 32, -5],
    )
    topics = [decoder.topic0, "0x" + eth_abi.encode(["address"], [who]).hex(), tag_hash]
    assert decoder.decode(topics, "0x" + data.hex()) == {
        "who": who,
        "tag": tag_hash,
        "text": "hello",
        "values": f"[1,{2**200}]",
        "flag": "true",
        "id": "0x" + "01" * 32,
        "small": "-5",
    }
    with pytest.raises(LogDecodeError):
        decoder.decode(topics, "0x" + data[:40].hex())


@pytest.mark.parametrize("signature", ["Swap", "Swap(uint256 a", "Swap(uint256 indexed indexed a)"])
def test_bad_signatures_are_refused(signature: str):
    with pytest.raises(ValueError):
        event_abi(signature)


PAIR = "0x" + "11" * 20
POOLS = {PAIR: Pool(PAIR, "sushiswap", "v2", "0x" + "22" * 20, created_block=1)}


def _raw_log(topics: list[str], data: str, **fields: str) -> dict:
    return {
        "address": PAIR.upper().replace("0X", "0x"),
        "topics": topics,
        "data": data,
        "blockNumber": "0x5",
        "blockHash": "0x" + "AA" * 32,
        "transactionHash": "0x" + "bb" * 32,
        "logIndex": "0x3",
        "removed": False,
        **fields,
    }


def test_raw_logs_become_pool_events_and_bad_ones_are_rejected_with_a_reason():
    good = _raw_log(*_encode(SYNC, [7, 2**112 - 1]))
    unknown_topic = _raw_log(["0x" + "99" * 32], "0x")
    short = _raw_log([SYNC.topic0], "0x" + "00" * 10)
    unknown_pool = {**good, "address": "0x" + "33" * 20}
    no_block = {k: v for k, v in good.items() if k != "blockNumber"}
    decoded = decode_pool_logs(
        [good, unknown_topic, short, unknown_pool, no_block], 31337, POOLS, {5: 1_700_000_000}
    )
    [event] = decoded.events
    assert event.to_dict() == {
        "schema_version": 1,
        "kind": "event",
        "event_id": f"31337:0x{'aa' * 32}:0x{'bb' * 32}:3",
        "chain_id": 31337,
        "dex": "sushiswap",
        "pool": PAIR,
        "event": "Sync",
        "block_number": 5,
        "block_hash": "0x" + "aa" * 32,
        "block_timestamp": 1_700_000_000,
        "tx_hash": "0x" + "bb" * 32,
        "log_index": 3,
        "args": {"reserve0": "7", "reserve1": str(2**112 - 1)},
        "tx_from": "",  # a log does not say; the follower asks the node
    }
    reasons = [reason for _, reason in decoded.rejected]
    assert [log for log, _ in decoded.rejected] == [unknown_topic, short, unknown_pool, no_block]
    assert "not a v2 pool event topic" in reasons[0]
    assert "must be 64 bytes" in reasons[1]
    assert all(reason for reason in reasons)


def test_pool_creation_logs_name_the_new_pool():
    decoder, _ = POOL_CREATED["v3"]
    pool = "0x" + "44" * 20
    topics, data = _encode(decoder, ["0x" + "01" * 20, "0x" + "02" * 20, 10000, 200, pool])
    factory = FactoryConfig(dex="uniswap_v3", protocol="v3", address="0x" + "55" * 20)
    created = decode_pool_created({"topics": topics, "data": data, "blockNumber": "0x10"}, factory)
    # The fee tier is the log's (indexed) fee; decimals are read later, from the tokens.
    assert created == Pool(
        pool, "uniswap_v3", "v3", factory.address, created_block=16,
        token0="0x" + "01" * 20, token1="0x" + "02" * 20, fee_tier=10000,
    )  # fmt: skip
    assert not created.decimals_read and created.token0_decimals is None
    v2_factory = FactoryConfig(dex="sushiswap", protocol="v2", address="0x" + "55" * 20)
    with pytest.raises(LogDecodeError, match="not a PairCreated log"):
        decode_pool_created({"topics": topics, "data": data, "blockNumber": "0x10"}, v2_factory)
    pair_created, _ = POOL_CREATED["v2"]
    topics, data = _encode(pair_created, ["0x" + "01" * 20, "0x" + "02" * 20, pool, 7])
    pair = decode_pool_created({"topics": topics, "data": data, "blockNumber": "0x10"}, v2_factory)
    assert (pair.address, pair.fee_tier) == (pool, 3000)  # every V2 pair: 0.3 %
