"""The chain publisher end to end: real contracts on anvil, the real Pub/Sub emulator, and
what really arrives on the subscriptions, checked against the chain's own logs."""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from google.cloud import pubsub_v1

from dexwatch.core.schemas.pool_event import ANNOUNCEMENTS, PoolEvent, event_id, rfc3339
from dexwatch.core.schemas.topics import (
    DLQ_SUBSCRIPTION,
    MONITOR_SUBSCRIPTION,
    subscription_path,
)
from dexwatch.core.settings import Settings
from infra.local import evm, processes
from infra.local.deployment import LocalDeployment
from publishers.chain import ReorgTooDeepError, RpcUnavailable, run
from publishers.chain.checkpoint import FileCheckpointStore
from tests._faulty_rpc import FaultyRpcProxy
from tests.conftest import dexwatch_cli, make_settings

pytestmark = [
    pytest.mark.stack,
    # _receive polls with return_immediately: the emulator holds other pulls for seconds.
    pytest.mark.filterwarnings("ignore:The return_immediately flag:DeprecationWarning"),
]

CHAIN_ID = 31337
# The ordered subscription: per pool, messages arrive in publish order.
ORDERED_SUBSCRIPTION = "pool-events-pipeline"
# Followed events, written independently of publishers.chain.events: topic0 → (protocol, name).
FOLLOWED = {
    evm.topic(signature): (protocol, signature[: signature.index("(")])
    for protocol, signatures in {
        "v3": (
            "Swap(address,address,int256,int256,uint160,uint128,int24)",
            "Mint(address,address,int24,int24,uint128,uint256,uint256)",
            "Burn(address,int24,int24,uint128,uint256,uint256)",
            "Collect(address,address,int24,int24,uint128,uint128)",
        ),
        "v2": (
            "Swap(address,uint256,uint256,uint256,uint256,address)",
            "Mint(address,uint256,uint256)",
            "Burn(address,uint256,uint256,address)",
            "Sync(uint112,uint112)",
        ),
    }.items()
    for signature in signatures
}
SWAP_IN = 10**17


# --- the chain --------------------------------------------------------------------------


def _activity_txs(rpc: evm.Rpc, deployment: LocalDeployment, block: int) -> list[evm.Tx]:
    """One block's transactions: a swap in every pool, and on every third block a liquidity
    provider adding to every pool, on every fourth one removing from it. Together: every
    followed event kind of both protocols."""
    trader = deployment.accounts.traders[0]
    provider = deployment.accounts.liquidity_providers[0]
    states = evm.read_pools(rpc, deployment.pools)
    if block % 4 == 0:
        manager = deployment.periphery["v3_position_manager"]
        positions = evm.v3_positions(rpc, manager, [provider])
    txs: list[evm.Tx] = []
    for index, pool in enumerate(deployment.pools):
        state = states[pool.name]
        zero_for_one = (block + index) % 2 == 0
        if pool.protocol == "v3":
            txs.append(evm.v3_swap(deployment, pool, trader, zero_for_one, SWAP_IN))
            spacing = evm.TICK_SPACING[pool.fee]
            if block % 3 == 0:
                lower, upper = (
                    evm.aligned_tick(state.tick + side * 20 * spacing, spacing) for side in (-1, 1)
                )
                txs.append(evm.v3_mint(deployment, pool, provider, lower, upper, 10**16, 10**16))
            if block % 4 == 0:
                position = evm.positions_in(deployment, pool, positions)[0]
                txs.append(evm.v3_remove(deployment, position, position.liquidity // 50))
        else:
            reserves = (state.reserve0, state.reserve1)
            reserve_in, reserve_out = reserves if zero_for_one else reserves[::-1]
            amount_out = evm.v2_amount_out(SWAP_IN, reserve_in, reserve_out)
            txs += evm.v2_swap(deployment, pool, trader, zero_for_one, SWAP_IN, amount_out)
            if block % 3 == 0:
                amount1 = 10**16 * state.reserve1 // state.reserve0 + 1
                txs += evm.v2_add(deployment, pool, provider, 10**16, amount1)
            if block % 4 == 0:
                (balance,) = evm.v2_balances(rpc, pool.address, [provider])
                txs += evm.v2_remove(pool, provider, balance // 100)
    return txs


def _trade(settings: Settings, deployment: LocalDeployment, blocks: int) -> int:
    """Mine ``blocks`` blocks of activity (see _activity_txs); returns the new head."""
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        with evm.manual_mining(rpc):
            transactor = evm.Transactor(rpc)
            for block in range(blocks):
                transactor.execute(_activity_txs(rpc, deployment, block))
        return evm.latest_block(rpc)[0]
    finally:
        rpc.close()


def _chain_logs(settings: Settings, deployment: LocalDeployment, last: int) -> dict[str, dict]:
    """The followed logs of the deployed pools up to block ``last``, by event id, read with
    one raw eth_getLogs."""
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        query = {
            "fromBlock": "0x0",
            "toBlock": hex(last),
            "address": [pool.address for pool in deployment.pools],
            "topics": [sorted(FOLLOWED)],
        }
        logs = rpc.call("eth_getLogs", query)
    finally:
        rpc.close()
    return {
        event_id(CHAIN_ID, log["blockHash"], log["transactionHash"], int(log["logIndex"], 16)): log
        for log in logs
    }


def _node(settings: Settings, method: str, *params: Any) -> Any:
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        return rpc.call(method, *params)
    finally:
        rpc.close()


def _block(settings: Settings, number: int) -> dict[str, Any]:
    return _node(settings, "eth_getBlockByNumber", hex(number), False)


# --- Pub/Sub ------------------------------------------------------------------------------


def _receive(
    project: str,
    subscription: str,
    at_least: int,
    idle_s: float = 0.5,
    announcements: bool = False,
) -> list:
    """Pull and ack until ``at_least`` messages arrived and then nothing more for ``idle_s``
    (so duplicates or extras show up too); fails after 60 s without the expected count.
    Pool announcements (each start sends every followed pool's) are left out unless asked."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscription_path(project, subscription)
    received: list = []
    deadline = time.monotonic() + 60
    last_seen = time.monotonic()
    try:
        while len(received) < at_least or time.monotonic() - last_seen < idle_s:
            assert time.monotonic() < deadline, f"{len(received)} of {at_least} messages arrived"
            # return_immediately: the emulator otherwise holds an empty pull for seconds.
            request = {"subscription": path, "max_messages": 1000, "return_immediately": True}
            response = subscriber.pull(request=request, timeout=5)
            if not response.received_messages:
                time.sleep(0.02)
                continue
            received += [
                m.message
                for m in response.received_messages
                if announcements or m.message.attributes["event"] not in ANNOUNCEMENTS.values()
            ]
            ack_ids = [m.ack_id for m in response.received_messages]
            subscriber.acknowledge(request={"subscription": path, "ack_ids": ack_ids})
            last_seen = time.monotonic()
    finally:
        subscriber.close()
    return received


# --- settings -----------------------------------------------------------------------------


def _publisher_settings(base: Settings, project: str, emulator: str, **chain: Any) -> Settings:
    """``base`` (an anvil of the test's own) publishing to ``project`` on the emulator."""
    return make_settings(
        base.state_dir,
        local={"anvil_port": base.local.anvil_port},
        chain={"rpc_urls": list(base.chain.rpc_urls), "batch_blocks": 4, **chain},
        pubsub={"project": project, "emulator_host": emulator},
    ).with_deployment()


# --- (a) every event, once, with its attributes -----------------------------------------------


def test_publishes_every_chain_event_once_with_its_attributes(
    deployed, pubsub_emulator, pubsub_project
) -> None:
    base, deployment = deployed
    head = _trade(base, deployment, 13)
    settings = _publisher_settings(base, pubsub_project, pubsub_emulator, confirmations=2)
    safe_head = head - 2

    stats = run(settings, once=True)

    expected = _chain_logs(base, deployment, safe_head)
    kinds = {FOLLOWED[log["topics"][0]] for log in expected.values()}
    assert kinds == set(FOLLOWED.values()), "the activity must produce every event kind"
    assert (stats.events, stats.rejected, stats.last_block) == (len(expected), 0, safe_head)
    pools = {pool.address: pool for pool in deployment.pools}
    received = _receive(
        pubsub_project, MONITOR_SUBSCRIPTION, len(expected) + len(pools), announcements=True
    )
    # Each pool is announced (its factory's creation log) once, before any of its events.
    announcements = [m for m in received if m.attributes["event"] in ANNOUNCEMENTS.values()]
    messages = [m for m in received if m.attributes["event"] not in ANNOUNCEMENTS.values()]
    assert sorted(m.attributes["pool"] for m in announcements) == sorted(pools)
    assert stats.announcements == len(pools)
    for announcement in announcements:
        created = PoolEvent.from_json(announcement.data)
        assert created.event == ANNOUNCEMENTS[pools[created.pool].protocol]
        # The pool's ordering key: an ordered subscription gets it before the pool's events.
        assert announcement.ordering_key == f"{CHAIN_ID}:{created.pool}"
    ids = [m.attributes["event_id"] for m in messages]
    assert sorted(ids) == sorted(expected), "each chain event exactly once"

    times, senders = {}, {}
    for message in messages:
        event = PoolEvent.from_json(message.data)
        raw = expected[event.event_id]
        block = int(raw["blockNumber"], 16)
        if block not in times:
            times[block] = int(_block(base, block)["timestamp"], 16)
        protocol, name = FOLLOWED[raw["topics"][0]]
        assert pools[event.pool].protocol == protocol
        assert dict(message.attributes) == {
            "schema_version": "1",
            "kind": "event",
            "chain_id": str(CHAIN_ID),
            "dex": pools[raw["address"]].dex,
            "pool": raw["address"],
            "event": name,
            "event_id": event.event_id,
            "event_time": rfc3339(times[block]),
        }
        assert message.ordering_key == f"{CHAIN_ID}:{raw['address']}"
        assert (event.block_number, event.block_hash) == (block, raw["blockHash"])
        senders.setdefault(event.tx_hash, event.tx_from)
    # Each event carries its transaction's sender, as the node tells it.
    for tx_hash, sender in senders.items():
        assert sender == _node(base, "eth_getTransactionByHash", tx_hash)["from"].lower()

    again = run(settings, once=True)
    # Nothing new: no pool is announced again (each is, before its next event).
    assert (again.events, again.announcements, again.last_block) == (0, 0, safe_head)


def test_pools_created_before_the_start_block_are_followed(
    deployed, pubsub_emulator, pubsub_project
) -> None:
    base, deployment = deployed
    head = _trade(base, deployment, 6)
    start = head - 2
    settings = _publisher_settings(
        base, pubsub_project, pubsub_emulator, confirmations=0, start_block=start
    )

    stats = run(settings, once=True)

    expected = {
        i
        for i, log in _chain_logs(base, deployment, head).items()
        if int(log["blockNumber"], 16) >= start
    }
    assert expected and stats.events == len(expected)
    messages = _receive(pubsub_project, MONITOR_SUBSCRIPTION, len(expected))
    assert sorted(m.attributes["event_id"] for m in messages) == sorted(expected)


def _recorded(directory: Path) -> list[PoolEvent]:
    lines = (directory / "pool-events.jsonl").read_bytes().splitlines()
    return [PoolEvent.from_json(line) for line in lines if line]


def test_many_pools_are_read_by_topic_and_the_pool_filter_leaves_pools_out(
    deployed, tmp_path: Path
) -> None:
    base, deployment = deployed
    head = _trade(base, deployment, 8)
    expected = _chain_logs(base, deployment, head)
    denied = deployment.pools[0].address
    assert any(raw["address"] == denied for raw in expected.values())

    def publish(name: str, **chain: Any):  # noqa: ANN202
        settings = make_settings(
            base.state_dir,
            local={"anvil_port": base.local.anvil_port},
            chain={"rpc_urls": list(base.chain.rpc_urls), "confirmations": 0,
                   "checkpoint_path": tmp_path / f"{name}.json", **chain},
        ).with_deployment()  # fmt: skip
        stats = run(settings, once=True, record_to=tmp_path / name)
        events = _recorded(tmp_path / name)
        announced = {e.pool for e in events if e.event in ANNOUNCEMENTS.values()}
        ids = {e.event_id for e in events if e.event not in ANNOUNCEMENTS.values()}
        return stats, announced, ids

    by_address, announced, ids = publish("by-address")
    assert ids == set(expected) and by_address.foreign_logs == 0
    assert announced == {pool.address for pool in deployment.pools}
    # One address allowed per request: the 8 pools are read by their events' topics, and the
    # denied pool's logs are among what the node sends, dropped here.
    by_topic, announced, ids = publish(
        "by-topic", max_log_addresses=1, pool_filter={"deny": ["0x" + denied[2:].upper()]}
    )
    assert ids == {i for i, raw in expected.items() if raw["address"] != denied}
    assert by_topic.foreign_logs == sum(raw["address"] == denied for raw in expected.values())
    assert by_topic.pools_filtered == 1 and denied not in announced
    # Only the pools of one token.
    _, announced, _ = publish("usdc", pool_filter={"tokens": [deployment.tokens["USDC"].address]})
    holding = {p.address for p in deployment.pools if "USDC" in (p.token0, p.token1)}
    assert announced == holding and 0 < len(holding) < len(deployment.pools)


def test_senders_come_from_receipts_or_lookups_as_the_share_says_and_agree(
    deployed, tmp_path: Path
) -> None:
    """Whole blocks' receipts where most of a block's transactions are wanted, one lookup a
    transaction otherwise, lookups alone on a node without eth_getBlockReceipts: the same
    senders, the node's own."""
    base, deployment = deployed
    head = _trade(base, deployment, 6)
    expected = _chain_logs(base, deployment, head)

    def publish(name: str, url: str, share: float):  # noqa: ANN202
        settings = make_settings(
            base.state_dir,
            local={"anvil_port": base.local.anvil_port},
            chain={"rpc_urls": [url], "confirmations": 0, "receipts_min_share": share,
                   "checkpoint_path": tmp_path / f"{name}.json"},
        ).with_deployment()  # fmt: skip
        stats = run(settings, once=True, record_to=tmp_path / name)
        events = [e for e in _recorded(tmp_path / name) if e.event not in ANNOUNCEMENTS.values()]
        assert {e.event_id for e in events} == set(expected)
        return stats, {e.tx_hash: e.tx_from for e in events}

    with FaultyRpcProxy(base.chain.rpc_urls[0]) as proxy:
        by_receipts, senders = publish("receipts", proxy.url, 0.0)
        assert "eth_getBlockReceipts" in proxy.methods
        assert "eth_getTransactionByHash" not in proxy.methods
        assert by_receipts.senders_from_receipts == len(senders) > 0
        proxy.methods.clear()
        by_lookup, looked_up = publish("lookups", proxy.url, 2.0)
        assert "eth_getBlockReceipts" not in proxy.methods
        assert by_lookup.senders_from_receipts == 0 and looked_up == senders
        proxy.methods.clear()
        proxy.unsupported_methods.add("eth_getBlockReceipts")
        without, fallen_back = publish("no-receipts", proxy.url, 0.0)
        assert proxy.methods.count("eth_getBlockReceipts") == 1  # asked once, then not again
        assert without.senders_from_receipts == 0 and fallen_back == senders
    for tx_hash, sender in senders.items():
        assert sender == _node(base, "eth_getTransactionByHash", tx_hash)["from"].lower()


def test_after_a_restart_each_pool_is_announced_again_before_its_first_event(
    deployed, tmp_path: Path
) -> None:
    base, deployment = deployed
    settings = make_settings(
        base.state_dir,
        local={"anvil_port": base.local.anvil_port},
        chain={"rpc_urls": list(base.chain.rpc_urls), "confirmations": 0,
               "checkpoint_path": tmp_path / "cp.json"},
    ).with_deployment()  # fmt: skip
    _trade(base, deployment, 2)
    first = run(settings, once=True, record_to=tmp_path / "first")
    assert first.announcements == len(deployment.pools)
    _trade(base, deployment, 2)
    second = run(settings, once=True, record_to=tmp_path / "second")
    events = _recorded(tmp_path / "second")
    seen: set[str] = set()
    for event in events:
        if event.event in ANNOUNCEMENTS.values():
            assert event.pool not in seen, "one announcement a pool, before its events"
            seen.add(event.pool)
        else:
            assert event.pool in seen, f"an event of {event.pool} before its announcement"
    active = {e.pool for e in events if e.event not in ANNOUNCEMENTS.values()}
    assert seen == active and second.announcements == len(active) > 0


# --- (b) reorgs -------------------------------------------------------------------------------


def _reorg(settings: Settings, deployment: LocalDeployment, depth: int) -> None:
    """Replace the last ``depth`` blocks (anvil_reorg) with blocks of other transactions: in
    each, a swap in every V3 pool (the other way round) and a sync() of every V2 pair."""
    trader = deployment.accounts.traders[1]
    replacements = []
    for offset in range(depth):
        for pool in deployment.pools:
            if pool.protocol == "v3":
                tx = evm.v3_swap(deployment, pool, trader, offset % 2 == 1, SWAP_IN // 2)
            else:
                tx = evm.Tx(trader, pool.address, evm.encode_call("sync()"), 100_000)
            request = {"from": tx.sender, "to": tx.to, "data": tx.data, "gas": hex(tx.gas)}
            replacements.append([request, offset])
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        rpc.call("anvil_reorg", depth, replacements)
    finally:
        rpc.close()


@pytest.mark.parametrize(
    ("depth", "confirmations", "blocks_after"),
    [
        pytest.param(1, 0, 0, id="depth-1-of-the-tip"),
        pytest.param(3, 0, 2, id="depth-3-then-more-blocks"),
        pytest.param(3, 5, 6, id="depth-3-within-5-confirmations"),
        pytest.param(8, 5, 6, id="depth-8-beyond-5-confirmations"),
    ],
)
def test_reorg_retracts_orphaned_events_before_their_replacements(
    deployed, pubsub_emulator, pubsub_project, depth: int, confirmations: int, blocks_after: int
) -> None:
    base, deployment = deployed
    head = _trade(base, deployment, 12)
    settings = _publisher_settings(
        base, pubsub_project, pubsub_emulator, confirmations=confirmations
    )
    before = run(settings, once=True)
    assert before.last_block == head - confirmations
    old_hashes = {n: _block(base, n)["hash"] for n in range(head - depth, head + 1)}

    _reorg(base, deployment, depth)
    assert _block(base, head - depth)["hash"] == old_hashes[head - depth]
    assert all(_block(base, n)["hash"] != old_hashes[n] for n in range(head - depth + 1, head + 1))
    final_head = _trade(base, deployment, blocks_after) if blocks_after else head
    after = run(settings, once=True)

    canonical = _chain_logs(base, deployment, final_head - confirmations)
    expected_count = before.events + after.retractions + after.events
    messages = _receive(pubsub_project, ORDERED_SUBSCRIPTION, expected_count)
    assert len(messages) == expected_count
    events = [PoolEvent.from_json(m.data) for m in messages]
    published = {e.event_id for e in events if e.kind == "event"}
    retracted = [e.event_id for e in events if e.kind == "retraction"]
    orphaned = published - canonical.keys()
    if depth > confirmations:
        assert orphaned, "the reorg must have orphaned published events"
    else:
        assert not orphaned, "nothing unconfirmed may have been published"
    assert sorted(retracted) == sorted(orphaned)
    assert after.retractions == len(orphaned)
    assert published - orphaned == canonical.keys()

    fork = head - depth
    by_pool = collections.defaultdict(list)
    for event in events:
        by_pool[event.pool].append(event)
    for pool, sequence in by_pool.items():
        positions = [i for i, e in enumerate(sequence) if e.kind == "retraction"]
        replacements = [
            i
            for i, e in enumerate(sequence)
            if e.kind == "event" and e.event_id in canonical and e.block_number > fork
        ]
        assert replacements, f"the replacement blocks have events of {pool}"
        if positions:
            assert max(positions) < min(replacements), f"{pool}: a replacement came first"


def test_a_reorg_below_the_kept_hashes_stops_with_the_checkpoint_intact(
    deployed, pubsub_emulator, pubsub_project
) -> None:
    base, deployment = deployed
    _trade(base, deployment, 8)
    settings = _publisher_settings(
        base, pubsub_project, pubsub_emulator, confirmations=0, reorg_window=3
    )
    published = run(settings, once=True)
    saved = settings.checkpoint_path.read_bytes()

    _reorg(base, deployment, 5)
    with pytest.raises(ReorgTooDeepError, match="reorg_window=3"):
        run(settings, once=True)

    assert settings.checkpoint_path.read_bytes() == saved
    messages = _receive(pubsub_project, ORDERED_SUBSCRIPTION, published.events)
    assert len(messages) == published.events
    assert {m.attributes["kind"] for m in messages} == {"event"}


# --- (c) a log that does not decode -------------------------------------------------------------


def test_an_undecodable_log_goes_to_the_dead_letter_topic_and_the_rest_is_published(
    deployed, pubsub_emulator, pubsub_project, caplog
) -> None:
    base, deployment = deployed
    settings = _publisher_settings(base, pubsub_project, pubsub_emulator, confirmations=0)
    first = run(settings, once=True)
    head = _trade(base, deployment, 3)
    caplog.set_level(logging.INFO, logger="dexwatch.publisher")
    with FaultyRpcProxy(base.local.rpc_url) as proxy:
        proxy.inject("eth_getLogs", "corrupt_log")
        stats = run(
            _publisher_settings(
                base, pubsub_project, pubsub_emulator, confirmations=0, rpc_urls=[proxy.url]
            ),
            once=True,
        )
    (corrupted,) = proxy.corrupted_logs
    bad_id = event_id(
        CHAIN_ID,
        corrupted["blockHash"],
        corrupted["transactionHash"],
        int(corrupted["logIndex"], 16),
    )

    canonical = _chain_logs(base, deployment, head)
    assert bad_id in canonical
    assert (stats.rejected, stats.last_block) == (1, head)
    assert first.events + stats.events == len(canonical) - 1
    mentions = [r for r in caplog.records if bad_id in r.getMessage()]
    assert len(mentions) == 1 and mentions[0].levelno == logging.WARNING

    (letter,) = _receive(pubsub_project, DLQ_SUBSCRIPTION, 1)
    assert letter.attributes["event_id"] == bad_id
    assert letter.attributes["chain_id"] == str(CHAIN_ID)
    assert "data must be" in letter.attributes["reason"]
    body = orjson.loads(letter.data)
    assert body["reason"] == letter.attributes["reason"]
    assert body["log"] == {**corrupted, "data": corrupted["data"][:-2]}

    messages = _receive(pubsub_project, MONITOR_SUBSCRIPTION, len(canonical) - 1)
    assert sorted(m.attributes["event_id"] for m in messages) == sorted(canonical.keys() - {bad_id})


# --- (d) RPC unreachable ------------------------------------------------------------------------


def test_unreachable_rpc_fails_after_retries_and_leaves_the_checkpoint_alone(
    deployed, pubsub_emulator, pubsub_project
) -> None:
    base, deployment = deployed
    settings = _publisher_settings(base, pubsub_project, pubsub_emulator, confirmations=0)
    run(settings, once=True)
    saved = settings.checkpoint_path.read_bytes()
    head = _trade(base, deployment, 3)
    fast = {
        "confirmations": 0,
        "retry": {"max_retries": 2, "backoff_base_s": 0.001, "backoff_max_s": 0.01},
    }

    dead = f"http://127.0.0.1:{processes.free_port()}"
    with pytest.raises(RpcUnavailable, match="no RPC URL answered"):
        run(
            _publisher_settings(base, pubsub_project, pubsub_emulator, rpc_urls=[dead], **fast),
            once=True,
        )
    assert settings.checkpoint_path.read_bytes() == saved

    # Failing in the middle of a batch, after the node answered the first calls.
    with FaultyRpcProxy(base.local.rpc_url) as proxy:
        proxy.inject("eth_getLogs", *["http_503"] * 3)
        proxy_settings = _publisher_settings(
            base, pubsub_project, pubsub_emulator, rpc_urls=[proxy.url], **fast
        )
        with pytest.raises(RpcUnavailable, match="HTTP 503"):
            run(proxy_settings, once=True)
        assert proxy.pending() == 0
    assert settings.checkpoint_path.read_bytes() == saved

    resumed = run(settings, once=True)
    canonical = _chain_logs(base, deployment, head)
    assert resumed.last_block == head
    messages = _receive(pubsub_project, MONITOR_SUBSCRIPTION, len(canonical))
    assert sorted(m.attributes["event_id"] for m in messages) == sorted(canonical)


# --- (e) killed and restarted -------------------------------------------------------------------


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after the point where it is raised runs."""


def test_killed_between_publish_and_checkpoint_republishes_the_batch_and_loses_nothing(
    deployed, pubsub_emulator, pubsub_project, monkeypatch
) -> None:
    base, deployment = deployed
    head = _trade(base, deployment, 12)
    settings = _publisher_settings(base, pubsub_project, pubsub_emulator, confirmations=0)

    class KilledOnThirdSave(FileCheckpointStore):
        saves = 0

        def save(self, checkpoint) -> None:
            KilledOnThirdSave.saves += 1
            if KilledOnThirdSave.saves == 3:  # batch 3 is published and acknowledged
                raise _Killed
            super().save(checkpoint)

    monkeypatch.setattr("publishers.chain.FileCheckpointStore", KilledOnThirdSave)
    with pytest.raises(_Killed):
        run(settings, once=True)
    monkeypatch.undo()
    resumed_at = FileCheckpointStore(settings.checkpoint_path).load().block_number
    batch_blocks = settings.chain.batch_blocks
    assert resumed_at == deployment.deployed_at_block - 1 + 2 * batch_blocks
    run(settings, once=True)

    canonical = _chain_logs(base, deployment, head)
    in_flight = {
        i
        for i, log in canonical.items()
        if resumed_at < int(log["blockNumber"], 16) <= resumed_at + batch_blocks
    }
    assert in_flight, "the killed batch had events"
    messages = _receive(pubsub_project, MONITOR_SUBSCRIPTION, len(canonical) + len(in_flight))
    _assert_covers_with_same_id_duplicates(messages, canonical)
    counts = collections.Counter(m.attributes["event_id"] for m in messages)
    assert {i for i, n in counts.items() if n > 1} == in_flight


def _assert_covers_with_same_id_duplicates(messages: list, canonical: dict[str, dict]) -> None:
    """Every chain event arrived, nothing else did, and repeats of an id are the same message."""
    by_id: dict[str, bytes] = {}
    for message in messages:
        previous = by_id.setdefault(message.attributes["event_id"], message.data)
        assert previous == message.data, "a repeated event_id with another content"
    assert sorted(by_id) == sorted(canonical)


def _cli_config(directory: Path, base: Settings, **sections: dict) -> Path:
    """A dexwatch.yaml for the command line, for the anvil and deployment of ``base``."""
    config = {
        "state_dir": str(base.state_dir),
        "local": {"anvil_port": base.local.anvil_port},
        "chain": {"rpc_urls": list(base.chain.rpc_urls)},
        "logging": {"format": "json"},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = directory / "dexwatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_sigkill_mid_stream_then_restart_publishes_every_event(
    deployed, pubsub_emulator, pubsub_project, tmp_path
) -> None:
    base, deployment = deployed
    head = _trade(base, deployment, 200)
    batch_blocks = 2
    config = _cli_config(
        tmp_path,
        base,
        chain={"confirmations": 0, "batch_blocks": batch_blocks},
        pubsub={"project": pubsub_project, "emulator_host": pubsub_emulator},
    )
    checkpoint = make_settings(base.state_dir).checkpoint_path
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    stderr = tmp_path / "follower.log"
    with stderr.open("wb") as log:
        follower = subprocess.Popen(
            [sys.executable, "-m", "dexwatch", "--config", str(config), "publish", "chain"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 60
        while not checkpoint.exists():
            assert follower.poll() is None, stderr.read_text()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.01)
        follower.send_signal(signal.SIGKILL)
        assert follower.wait(timeout=10) == -signal.SIGKILL
    finally:
        follower.kill()
    killed_at = FileCheckpointStore(checkpoint).load().block_number
    assert killed_at < head - 10 * batch_blocks, "killed mid-stream, not at the end"

    restarted = dexwatch_cli(config, "publish", "chain", "--once")
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert FileCheckpointStore(checkpoint).load().block_number == head

    canonical = _chain_logs(base, deployment, head)
    messages = _receive(pubsub_project, MONITOR_SUBSCRIPTION, len(canonical))
    _assert_covers_with_same_id_duplicates(messages, canonical)
    # Only the batch in flight at the kill can be published twice.
    counts = collections.Counter(m.attributes["event_id"] for m in messages)
    repeated = {int(canonical[i]["blockNumber"], 16) for i, n in counts.items() if n > 1}
    assert all(killed_at < block <= killed_at + batch_blocks for block in repeated), repeated


# --- (f) the command line ---------------------------------------------------------------------


def test_cli_names_a_bad_config_key_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "dexwatch.yaml"
    config.write_text("chain:\n  confirmatons: 3\n")
    result = dexwatch_cli(config, "publish", "chain", "--once")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "chain.confirmatons" in lines[0], result.stderr


def test_cli_reports_an_unreachable_rpc_in_one_error_line(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{processes.free_port()}/v3/SECRETKEY1234"
    factory = {"dex": "uniswap_v3", "protocol": "v3", "address": "0x" + "1f" * 20}
    config = tmp_path / "dexwatch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / ".dexwatch"),
                "chain": {
                    "rpc_urls": [dead],
                    "factories": [factory],
                    "retry": {"max_retries": 1, "backoff_base_s": 0.01},
                },
                "pubsub": {"emulator_host": f"127.0.0.1:{processes.free_port()}"},
            }
        )
    )
    result = dexwatch_cli(config, "publish", "chain", "--once")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no RPC URL answered" in errors[0], result.stderr
    assert dead.removesuffix("/v3/SECRETKEY1234") in errors[0]
    assert "Traceback" not in result.stderr and "SECRETKEY1234" not in result.stderr
    assert not (tmp_path / ".dexwatch" / "checkpoints").exists()
