"""Real pool logs served as a chain: the real chain publisher reads a recorded Polygon day
from the recorded-chain node on 127.0.0.1 and publishes every log, as it would from a node."""

from __future__ import annotations

import ast
import collections
import csv
import math
from datetime import datetime

import httpx
import orjson
import pytest
from eth_utils import keccak

from beam_pipelines.transforms.pool_windows import pool_windows
from dexwatch.core.features.chain import window_features
from dexwatch.core.features.horizon import hour_steps
from dexwatch.core.features.kinds import classify
from dexwatch.core.features.slices import summarize_slice
from dexwatch.core.schemas.alert import TopFeature
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.settings import PipelineSettings, Settings
from infra.local.recorded_chain import (
    RecordedChainNode,
    RecordingError,
    block_hash,
    open_recording,
)
from infra.local.splice import splice
from publishers.chain import run
from tests.conftest import SHARED

REAL_LOGS = SHARED / "data" / "real-logs"
QUIET_DAY = REAL_LOGS / "polygon-uniswap-v3-usdc-weth-500-2021-12-22.csv"

pytestmark = pytest.mark.skipif(not QUIET_DAY.exists(), reason="../shared/data/real-logs absent")

SWAP = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"


def test_the_publisher_publishes_every_recorded_log_with_its_block_time(tmp_path, caplog):
    recording = open_recording(QUIET_DAY)
    with QUIET_DAY.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with (
        caplog.at_level("WARNING", "dexwatch.publisher.chain"),
        RecordedChainNode(recording) as node,
    ):
        stats = run(
            node.following(Settings(state_dir=tmp_path / "state")),
            once=True,
            record_to=tmp_path / "recording",
        )
    lines = (tmp_path / "recording" / "pool-events.jsonl").read_bytes().splitlines()
    messages = [orjson.loads(line) for line in lines]
    assert messages[0]["event"] == "PoolCreated"
    assert messages[0]["pool"] == recording.pool.address
    events = messages[1:]
    assert stats.events == len(events) == len(rows) == 210
    assert stats.rejected == 0
    # A dump has no senders: the node says so once, and the events go out without.
    unsupported = [r for r in caplog.records if "eth_getTransactionByHash" in r.getMessage()]
    assert len(unsupported) == 1 and "recipients" in unsupported[0].getMessage()
    assert {e["tx_from"] for e in events} == {""}
    # Each log once, with its recorded transaction, log index and block time.
    published = {(e["tx_hash"], e["log_index"]): e for e in events}
    for row in rows:
        event = published[(row["transaction_hash"].lower(), int(row["pool_log_index"]))]
        assert event["block_number"] == int(row["block_number"])
        assert event["block_timestamp"] == int(
            datetime.fromisoformat(row["block_timestamp"]).timestamp()
        )
        topic0 = ast.literal_eval(row["pool_topics"])[0]
        assert (event["event"] == "Swap") == (topic0 == SWAP)
    # The data's own topics, named here from the event signatures (the dump's README has
    # the Mint and Collect counts the other way round).
    names = {
        "0x" + keccak(text=signature).hex(): signature.split("(")[0]
        for signature in (
            "Mint(address,address,int24,int24,uint128,uint256,uint256)",
            "Burn(address,int24,int24,uint128,uint256,uint256)",
            "Collect(address,address,int24,int24,uint128,uint128)",
            "Swap(address,address,int256,int256,uint160,uint128,int24)",
        )
    }
    recorded = collections.Counter(names[ast.literal_eval(r["pool_topics"])[0]] for r in rows)
    assert collections.Counter(e["event"] for e in events) == recorded
    assert recorded == {"Swap": 199, "Mint": 7, "Burn": 2, "Collect": 2}


def test_headers_chain_together_and_blocks_between_logs_get_interpolated_times():
    recording = open_recording(QUIET_DAY)
    first, last = recording.first_block, recording.last_block
    headers = [recording.header(n) for n in range(first - 1, first + 400)]
    for parent, child in zip(headers, headers[1:], strict=False):
        assert child["parentHash"] == parent["hash"]
    stamps = [int(h["timestamp"], 16) for h in headers]
    assert stamps == sorted(stamps)
    assert recording.header(last + 1) is None
    assert headers[1]["hash"] == block_hash(137, first)


def test_the_node_answers_batches_filters_and_unknown_methods(tmp_path):
    recording = open_recording(QUIET_DAY)
    with RecordedChainNode(recording) as node:
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
            {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber"},
            {"jsonrpc": "2.0", "id": 3, "method": "eth_getTransactionByHash", "params": ["0x"]},
            {
                "jsonrpc": "2.0",
                "id": 4,
                "method": "eth_getLogs",
                "params": [
                    {
                        "fromBlock": hex(recording.first_block),
                        "toBlock": hex(recording.last_block),
                        "address": [recording.pool.address],
                        "topics": [[SWAP]],
                    }
                ],
            },
        ]
        answers = {a["id"]: a for a in httpx.post(node.url, json=batch).json()}
    assert answers[1]["result"] == "0x89"
    assert int(answers[2]["result"], 16) == recording.last_block
    assert answers[3]["error"]["code"] == -32601
    assert len(answers[4]["result"]) == 199
    assert {log["topics"][0] for log in answers[4]["result"]} == {SWAP}


def test_a_dump_of_an_unknown_pool_or_a_broken_row_is_a_clear_error(tmp_path):
    unknown = tmp_path / "ethereum-other-pool.csv"
    unknown.write_text(QUIET_DAY.read_text())
    with pytest.raises(RecordingError, match="no known pool"):
        open_recording(unknown)
    broken = tmp_path / QUIET_DAY.name
    lines = QUIET_DAY.read_text().splitlines()
    broken.write_text("\n".join([lines[0], lines[1].replace("[", "(", 1), *lines[2:]]))
    with pytest.raises(RecordingError, match="line 2"):
        open_recording(broken)


def test_spliced_incidents_are_real_logs_that_read_as_their_incident(tmp_path):
    recording = open_recording(QUIET_DAY)
    # After the day's busiest stretch, so that the pool has a swap and a level before.
    middle = recording.logs[len(recording.logs) // 2]
    block = int(middle["blockNumber"], 16) + 1
    spliced, incidents = splice(recording, [(block, "liquidity-drain")], seed=3)
    (drain,) = incidents
    assert drain.size >= 0.5
    with RecordedChainNode(spliced) as node:
        stats = run(
            node.following(Settings(state_dir=tmp_path / "state")),
            once=True,
            record_to=tmp_path / "recording",
        )
    assert stats.rejected == 0 and stats.events == len(spliced.logs)
    lines = (tmp_path / "recording" / "pool-events.jsonl").read_bytes().splitlines()
    events = [PoolEvent.from_json(line) for line in lines[1:]]
    burns = [e for e in events if e.event == "Burn" and e.block_number >= block]
    assert burns and all(e.block_number <= drain.last_block for e in burns)
    # What the features see: the drain's share of the in-range liquidity, whole.
    slice_s = 12
    start = drain.first_timestamp // slice_s * slice_s
    slices = [
        summarize_slice(
            recording.pool.address, t, [e for e in events if t <= e.block_timestamp < t + slice_s]
        )
        for t in range(start - 20 * slice_s, start + 4 * slice_s, slice_s)
    ]
    slices = [s for s in slices if s.events]
    window = window_features(slices, start + 4 * slice_s, slice_s, 4)
    assert window is not None
    assert window["liquidity_removed_share"] == pytest.approx(drain.size, rel=1e-6)


def test_spliced_sandwiches_are_read_back_by_the_real_publisher_with_their_take(tmp_path):
    recording = open_recording(QUIET_DAY)
    block = int(recording.logs[len(recording.logs) // 2]["blockNumber"], 16) + 1
    spliced, (run_of,) = splice(recording, [(block, "sandwich")], seed=3)
    with RecordedChainNode(spliced) as node:
        stats = run(
            node.following(Settings(state_dir=tmp_path / "state")),
            once=True,
            record_to=tmp_path / "recording",
        )
    assert stats.rejected == 0
    lines = (tmp_path / "recording" / "pool-events.jsonl").read_bytes().splitlines()
    events = [PoolEvent.from_json(line) for line in lines[1:]]
    by_block: dict[int, list[PoolEvent]] = {}
    for event in events:
        if run_of.first_block <= event.block_number <= run_of.last_block:
            by_block.setdefault(event.block_number, []).append(event)
    found = [s for group in by_block.values()
             for s in summarize_slice(recording.pool.address, 0, group).sandwiches]  # fmt: skip
    assert len(found) == 10 and len({s.attacker for s in found}) == 1
    # What the amounts imply, to a part in a million (integer rounding).
    assert sum(s.extracted for s in found) == pytest.approx(run_of.size, rel=1e-6)
    assert run_of.size > 0


def test_a_spliced_slow_drain_takes_its_share_of_the_real_level_over_half_an_hour(tmp_path):
    recording = open_recording(QUIET_DAY)
    block = int(recording.logs[len(recording.logs) // 2]["blockNumber"], 16) + 1
    spliced, (drain,) = splice(recording, [(block, "slow-drain")], seed=3)
    burns = [log for log in spliced.logs if log["transactionHash"] not in
             {real["transactionHash"] for real in recording.logs}]  # fmt: skip
    assert len(burns) == 120 and 0.4 <= drain.size <= 0.6
    assert drain.last_timestamp - drain.first_timestamp == pytest.approx(119 * 15, abs=2 * 119)
    with RecordedChainNode(spliced) as node:
        run(node.following(Settings(state_dir=tmp_path / "state")), once=True,
            record_to=tmp_path / "recording")  # fmt: skip
    lines = (tmp_path / "recording" / "pool-events.jsonl").read_bytes().splitlines()
    events = [PoolEvent.from_json(line) for line in lines[1:]]
    # Each Burn takes its share of the in-range liquidity the pool's real swaps last
    # reported; between two real swaps the features carry the level down with the Burns, so
    # the later Burns of a stretch weigh a little more: the steps of the slices that hold
    # them multiply up to about the drain's size.
    hashes = {burn["transactionHash"] for burn in burns}
    slices: dict[int, list[PoolEvent]] = {}
    for event in events:
        slices.setdefault(event.block_timestamp // 15 * 15, []).append(event)
    drained = {t for t, group in slices.items() if any(e.tx_hash in hashes for e in group)}
    ordered = [summarize_slice(recording.pool.address, t, slices[t]) for t in sorted(slices)]
    steps = [step for start, step in hour_steps(ordered)[0] if start in drained]
    assert len(drained) >= 110
    assert 1 - math.exp(sum(steps)) == pytest.approx(drain.size, rel=0.05)


def test_a_spliced_fresh_pool_rug_is_a_new_pool_announced_launched_and_emptied(tmp_path):
    recording = open_recording(QUIET_DAY)
    block = int(recording.logs[len(recording.logs) // 3]["blockNumber"], 16) + 1
    spliced, (rug,) = splice(recording, [(block, "fresh-pool-rug")], seed=3)
    assert rug.pool != recording.pool.address
    assert 90 <= rug.last_timestamp - rug.first_timestamp <= 120
    with RecordedChainNode(spliced) as node:
        run(node.following(Settings(state_dir=tmp_path / "state")), once=True,
            record_to=tmp_path / "recording")  # fmt: skip
    lines = (tmp_path / "recording" / "pool-events.jsonl").read_bytes().splitlines()
    events = [PoolEvent.from_json(line) for line in lines[1:]]
    fresh = [event for event in events if event.pool == rug.pool]
    # The publisher found it through its factory, as it would find any new pool.
    assert [e.event for e in fresh] == ["PoolCreated", "Mint", *["Swap"] * 6, "Burn"]
    slices: dict[int, list[PoolEvent]] = {}
    for event in fresh[1:]:
        slices.setdefault(event.block_timestamp // 15 * 15, []).append(event)
    summaries = [summarize_slice(rug.pool, t, slices[t]) for t in sorted(slices)]
    rows = list(pool_windows((f"137:uniswap_v3:{rug.pool}", summaries), PipelineSettings()))
    # Young throughout: its launch and pump read as usual, its emptying as all of it.
    worst = max(rows, key=lambda row: row["liquidity_removed_share"])
    assert worst["liquidity_removed_share"] == pytest.approx(1.0)
    assert max(row["price_change"] for row in rows) == 0.0
    top = [TopFeature(name="liquidity_removed_share", value=1.0, deviation=50.0)]
    assert classify(worst, top, score=-0.05).kind == "rug-pull"
