"""chain.pool_filter's thresholds: the pools the subgraphs list above a minimum TVL or 24-hour
volume, read through the local stand-in for The Graph, first from given rows, then indexed
from the real contracts on anvil while the real chain publisher follows that chain."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dexwatch.core.schemas.pool_event import ANNOUNCEMENTS, PoolEvent
from dexwatch.core.settings import PoolFilter, Settings
from infra.local import evm, processes
from infra.local.deployment import LocalDeployment, PoolInfo
from infra.local.subgraph.indexer import ChainIndexer
from infra.local.subgraph.rows import (
    H0,
    HOUR,
    default_sources,
    pool_address,
    v2_pair,
    v2_row,
    v3_pool,
    v3_row,
)
from infra.local.subgraph.schema import StandInSubgraph
from infra.local.subgraph.server import SubgraphStandIn
from publishers.chain import PoolListError, PublishStats, run
from publishers.chain.pool_list import SubgraphPoolList
from publishers.subgraph import SubgraphUnavailable
from publishers.subgraph.gateway import GraphQLClient
from tests.conftest import make_settings
from tests.integration.test_chain_publisher import _chain_logs, _recorded, _trade

V3_SOURCE, V2_SOURCE = default_sources()
FAST_RETRY = {"max_retries": 1, "backoff_base_s": 0.001, "backoff_max_s": 0.01}

# --- the list, from given rows ------------------------------------------------------------------


def _read(standin: SubgraphStandIn, page_size: int = 2, **thresholds: float) -> frozenset[str]:
    settings = make_settings(
        Path("."), subgraph={"endpoint_url": standin.url, "retry": FAST_RETRY}
    ).subgraph
    with GraphQLClient.from_settings(settings) as client:
        pools = SubgraphPoolList(
            client, [V3_SOURCE, V2_SOURCE], PoolFilter(**thresholds), page_size=page_size
        )
        return pools.read()


def test_the_list_pages_through_pools_above_the_tvl_and_the_volume_of_the_last_day() -> None:
    now = H0 + 30 * HOUR + 600  # the subgraphs have indexed 10 minutes into hour 30
    v3 = [pool_address(n) for n in range(1, 6)]
    pair = pool_address(9)
    # TVL: pools 1-5 hold 1, 2, 3, 4, 5 M$, the pair 2.5 M$.
    pools = [v3_pool(p, tvl=n * 1e6) for n, p in enumerate(v3, 1)]
    # Volume: pool 1 trades 40 k$ an hour, in the last 24 hours too; pool 2 as much, but
    # 30 hours ago; pool 4 500 k$ in one hour 23 h ago; pool 5 nothing (a Mint-only row).
    rows = [v3_row(v3[0], H0 + h * HOUR, volume=40_000.0) for h in range(31)]
    rows += [v3_row(v3[1], H0 + h * HOUR, volume=40_000.0) for h in range(6)]
    rows += [v3_row(v3[3], H0 + 7 * HOUR, volume=500_000.0)]
    rows += [v3_row(v3[4], H0 + 29 * HOUR, volume=0.0)]
    pair_rows = [v2_row(pair, H0 + h * HOUR, volume=50_000.0) for h in range(20, 31)]
    block = (500, now)
    subgraphs = {
        V3_SOURCE.path: StandInSubgraph("v3", rows, pools, block=block),
        V2_SOURCE.path: StandInSubgraph("v2", pair_rows, [v2_pair(pair, 2.5e6)], block=block),
    }
    with SubgraphStandIn(subgraphs) as standin:
        assert _read(standin, min_tvl_usd=2.5e6) == {*v3[2:], pair}
        pages = [r for r in standin.requests if "PoolsByTvl" in r.query]
        # Three V3 pools above, two a page: two pages, the second after the first's last id;
        # the pair's page is short at once.
        assert [r.variables["after"] for r in pages] == ["", v3[3], ""]
        assert {r.variables["first"] for r in pages} == {2}

        # 24 hours before the indexed block: from 06:10 of hour 6 on, hours 7..30 count.
        assert _read(standin, min_volume_usd_24h=900_000) == {v3[0]}  # 960 k$
        assert _read(standin, min_volume_usd_24h=500_000) == {v3[0], v3[3], pair}  # pair: 550 k$
        assert _read(standin, min_volume_usd_24h=0) == {v3[0], v3[3], pair}  # traded at all
        # Both thresholds: both must hold.
        both = _read(standin, page_size=1000, min_tvl_usd=3e6, min_volume_usd_24h=500_000)
        assert both == {v3[3]}

        standin.inject("http_503", "http_503", when="PoolsByTvl")
        with pytest.raises(SubgraphUnavailable, match=rf"pool list.*{V3_SOURCE.path}.*503"):
            _read(standin, min_tvl_usd=1.0)


# --- the chain publisher, on the chain the stand-in indexes -------------------------------------


def _tvls(subgraphs: dict[str, StandInSubgraph]) -> dict[str, float]:
    """Each pool's TVL as the stand-in serves it."""
    v3 = subgraphs[V3_SOURCE.path].execute("{ pools(first: 1000) { id totalValueLockedUSD } }")
    v2 = subgraphs[V2_SOURCE.path].execute("{ pairs(first: 1000) { id reserveUSD } }")
    return {
        **{p["id"]: float(p["totalValueLockedUSD"]) for p in v3["data"]["pools"]},
        **{p["id"]: float(p["reserveUSD"]) for p in v2["data"]["pairs"]},
    }


def _deepen(settings: Settings, deployment: LocalDeployment, pool: PoolInfo) -> None:
    """Add liquidity worth a few times the pool's depth, in one block."""
    rpc = evm.Rpc(settings.local.rpc_url)
    provider = deployment.accounts.liquidity_providers[0]
    try:
        states = evm.read_pools(rpc, deployment.pools)
        state = states[pool.name]
        if pool.protocol == "v2":
            txs = evm.v2_add(deployment, pool, provider, state.reserve0, state.reserve1 + 1)
        else:
            prices = evm.usd_prices(deployment, states)
            spacing = evm.TICK_SPACING[pool.fee]
            lower, upper = (
                evm.aligned_tick(state.tick + side * 20 * spacing, spacing) for side in (-1, 1)
            )
            amounts = (
                evm.units(deployment.tokens[symbol], 10e6 / prices[symbol])
                for symbol in (pool.token0, pool.token1)
            )
            txs = [evm.v3_mint(deployment, pool, provider, lower, upper, *amounts)]
        with evm.manual_mining(rpc):
            evm.Transactor(rpc).execute(txs)
    finally:
        rpc.close()


def _wait(condition, what: str, timeout_s: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.05)


def _published(directory: Path) -> tuple[list[PoolEvent], list[PoolEvent]]:
    """(announcements, events) recorded under ``directory``."""
    events = _recorded(directory)
    announced = [e for e in events if e.event in ANNOUNCEMENTS.values()]
    return announced, [e for e in events if e.event not in ANNOUNCEMENTS.values()]


@pytest.mark.stack
def test_only_listed_pools_are_followed_and_pools_that_cross_the_threshold_join(
    deployed, tmp_path: Path
) -> None:
    base, deployment = deployed
    first_head = _trade(base, deployment, 4)
    indexed = {V3_SOURCE.dex, V2_SOURCE.dex}  # the local Uniswap V2 pair has no subgraph
    pools = [p for p in deployment.pools if p.dex in indexed]
    subgraphs = {V3_SOURCE.path: StandInSubgraph("v3"), V2_SOURCE.path: StandInSubgraph("v2")}
    indexer = ChainIndexer(
        base.local.rpc_url,
        deployment,
        {V3_SOURCE.dex: subgraphs[V3_SOURCE.path], V2_SOURCE.dex: subgraphs[V2_SOURCE.path]},
    )
    indexer.index_once()
    tvls = _tvls(subgraphs)
    assert set(tvls) == {p.address for p in pools}
    # The threshold between the two shallowest pools and the rest.
    ranked = sorted(tvls.values())
    threshold = (ranked[1] + ranked[2]) / 2
    below = {p.name: p for p in pools if tvls[p.address] < threshold}
    assert set(below) == {"sushiswap:LINK/WETH", "uniswap_v3:WETH/DAI:3000"}
    listed = {p.address for p in pools if tvls[p.address] >= threshold}
    denied = deployment.pool("uniswap_v3:USDT/USDC:500").address
    assert denied in listed
    crossing_live = below["sushiswap:LINK/WETH"]
    crossing_stopped = below["uniswap_v3:WETH/DAI:3000"]

    with SubgraphStandIn(subgraphs) as standin:
        settings = make_settings(
            base.state_dir,
            local={"anvil_port": base.local.anvil_port},
            chain={
                "rpc_urls": list(base.chain.rpc_urls),
                "confirmations": 0,
                "batch_blocks": 3,
                "poll_interval_s": 0.05,
                "checkpoint_path": tmp_path / "chain.json",
                "factories": [f.model_dump() for f in deployment.factories if f.dex in indexed],
                "pool_filter": {"min_tvl_usd": threshold, "deny": [denied], "refresh_s": 0.2},
            },
            subgraph={"endpoint_url": standin.url, "retry": FAST_RETRY},
        )
        record = tmp_path / "record"
        stop = threading.Event()
        stats = PublishStats()

        def seen(latest: PublishStats) -> None:
            nonlocal stats
            stats = latest

        def caught_up(head: int) -> None:
            _wait(lambda: stats.last_block == head or running.done(), f"block {head}")
            assert not running.done(), running.result()

        with ThreadPoolExecutor(1) as executor:
            running = executor.submit(run, settings, stop=stop, record_to=record, on_batch=seen)
            try:
                caught_up(first_head)
                announced_at_start = stats.announcements
                # Only the listed pools, less the denied one, are followed.
                assert announced_at_start == len(listed) - 1

                _deepen(base, deployment, crossing_live)
                indexer.index_once()
                assert _tvls(subgraphs)[crossing_live.address] > threshold
                # The list is read again as new blocks are: the pool joins at one of them.
                for _ in range(20):
                    caught_up(_trade(base, deployment, 1))
                    if stats.announcements > announced_at_start:
                        break
                else:
                    pytest.fail("the pool that crossed the threshold was never announced")
                head = _trade(base, deployment, 2)  # more of its events
                caught_up(head)
            finally:
                stop.set()
            running.result()
        announced, events = _published(record)
        followed = (listed - {denied}) | {crossing_live.address}
        assert sorted(e.pool for e in announced) == sorted(followed)
        # The pool that crossed: its events since it joined, none from before it crossed.
        crossed = {e.event_id: e.block_number for e in events if e.pool == crossing_live.address}
        joined = min(crossed.values())
        assert joined > first_head, "followed only once it crossed the threshold"
        chain = _chain_logs(base, deployment, head)
        own = {i: int(log["blockNumber"], 16) for i, log in chain.items()
               if log["address"] == crossing_live.address}  # fmt: skip
        assert set(crossed) == {i for i, block in own.items() if block >= joined}
        assert any(block < joined for block in own.values()), "it traded before it joined"
        # Every event of the pools followed from the start, and nothing of the others.
        assert {e.event_id for e in events} == set(crossed) | {
            i for i, log in chain.items() if log["address"] in followed - {crossing_live.address}
        }
        # Its announcement came before its first event.
        ordered = [e for e in _recorded(record) if e.pool == crossing_live.address]
        assert ordered[0].event == ANNOUNCEMENTS["v2"] and len(ordered) == len(crossed) + 1

        # Stopped, another pool crosses: the restart finds it, though it never saw it.
        _deepen(base, deployment, crossing_stopped)
        head = _trade(base, deployment, 2)
        indexer.index_once()
        restarted = tmp_path / "restarted"
        resumed_from = stats.last_block
        again = run(settings, once=True, record_to=restarted)
        announced, events = _published(restarted)
        assert {e.pool for e in announced} == followed | {crossing_stopped.address}
        assert again.last_block == head
        published = {e.event_id for e in events if e.pool == crossing_stopped.address}
        assert published and published == {
            i
            for i, log in _chain_logs(base, deployment, head).items()
            if log["address"] == crossing_stopped.address
            and int(log["blockNumber"], 16) > resumed_from
        }

        # The subgraph down: a restart goes on with the pools followed so far ...
        head = _trade(base, deployment, 1)
        dead = f"http://127.0.0.1:{processes.free_port()}"
        down = settings.with_sections(subgraph={"endpoint_url": dead})
        assert run(down, once=True, record_to=tmp_path / "down").last_block == head
        # ... a first start cannot choose its pools: it stops and names the subgraph.
        fresh = down.with_sections(chain={"checkpoint_path": tmp_path / "fresh.json"})
        with pytest.raises(PoolListError, match=rf"first start.*{dead}/{V3_SOURCE.path}"):
            run(fresh, once=True, record_to=tmp_path / "fresh")
        assert not (tmp_path / "fresh.json").exists()
    indexer.close()


@pytest.mark.stack
def test_a_dex_without_a_subgraph_is_named_before_anything_runs(deployed, tmp_path) -> None:
    base, deployment = deployed
    settings = make_settings(
        base.state_dir,
        local={"anvil_port": base.local.anvil_port},
        chain={"rpc_urls": list(base.chain.rpc_urls), "pool_filter": {"min_tvl_usd": 1.0},
               "checkpoint_path": tmp_path / "chain.json"},
    ).with_deployment()  # fmt: skip
    # The deployment's factories include Uniswap V2's, which no local subgraph indexes.
    with pytest.raises(PoolListError, match=r"no subgraph of uniswap_v2 \(v2\)"):
        run(settings, once=True, record_to=tmp_path / "record")
    assert not (tmp_path / "record").exists()
