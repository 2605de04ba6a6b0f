"""The local stand-in for The Graph: graph-node's query semantics on given rows, and hour
rows indexed from the real contracts on anvil, checked against the chain's own logs and
state, then read by the real subgraph publisher."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dexwatch.app.workflows.local_run import SUBGRAPH_STANDIN, _component_specs
from dexwatch.core.settings import Settings, SettingsError
from infra.local import evm, processes
from infra.local.deployment import LocalDeployment
from infra.local.market import MarketSimulator
from infra.local.settings import load_local_settings
from infra.local.subgraph.__main__ import load as load_standin_settings
from infra.local.subgraph.indexer import ChainIndexer
from infra.local.subgraph.rows import H0, HOUR, default_sources, pool_address, v2_row, v3_row
from infra.local.subgraph.schema import StandInSubgraph
from infra.local.subgraph.server import RandomFaults, SubgraphStandIn
from tests.conftest import ROOT, make_settings

V3_SOURCE, V2_SOURCE = default_sources()
# The dexes of the default sources (the local Uniswap V2 pair has no subgraph).
FOLLOWED_DEXES = (V3_SOURCE.dex, V2_SOURCE.dex)

# --- graph-node semantics on given rows ------------------------------------------------------


def _pools_rows() -> list[dict[str, Any]]:
    return [
        v3_row(pool_address(p), H0 + h * HOUR, volume=float(10 * p + h))
        for p in (1, 2, 3)
        for h in range(4)
    ]


def _ids(answer: dict[str, Any], field: str = "poolHourDatas") -> list[str]:
    assert "errors" not in answer, answer
    return [row["id"] for row in answer["data"][field]]


def test_where_filters_compare_like_graph_node() -> None:
    subgraph = StandInSubgraph("v3", _pools_rows())
    one, two = pool_address(1), pool_address(2)
    query = """query($pools: [String!]!, $from: Int!, $volume: BigDecimal!) {
        poolHourDatas(first: 1000, where: {pool_in: $pools, periodStartUnix_gte: $from,
                                           volumeUSD_gt: $volume}) { id } }"""
    answer = subgraph.execute(query, {"pools": [one, two], "from": H0 + HOUR, "volume": "12"})
    # volumeUSD compares as a number ("21" > "12", "13" > "12"), not as text.
    assert sorted(_ids(answer)) == sorted(
        [f"{one}-{H0 // HOUR + 3}"] + [f"{two}-{H0 // HOUR + h}" for h in (1, 2, 3)]
    )
    lt = subgraph.execute(
        f'{{ poolHourDatas(where: {{pool: "{one}", periodStartUnix_lt: {H0 + HOUR}}}) {{ id }} }}'
    )
    assert _ids(lt) == [f"{one}-{H0 // HOUR}"]


def test_order_first_and_id_cursor_page_without_gaps() -> None:
    subgraph = StandInSubgraph("v3", _pools_rows())
    seen: list[str] = []
    after = ""
    while True:
        answer = subgraph.execute(
            "query($after: ID!) { poolHourDatas(first: 5, orderBy: id, orderDirection: asc, "
            "where: {id_gt: $after}) { id } }",
            {"after": after},
        )
        page = _ids(answer)
        seen += page
        if len(page) < 5:
            break
        after = page[-1]
    assert seen == sorted(row["id"] for row in _pools_rows())
    desc = subgraph.execute(
        "{ poolHourDatas(first: 2, orderBy: volumeUSD, orderDirection: desc) { volumeUSD } }"
    )
    assert [row["volumeUSD"] for row in desc["data"]["poolHourDatas"]] == ["33.0", "32.0"]


def test_limits_missing_fields_and_meta_answer_like_graph_node() -> None:
    subgraph = StandInSubgraph("v2", [v2_row(pool_address(9), H0)], block=(77, H0 + 100))
    too_many = subgraph.execute("{ pairHourDatas(first: 1001) { id } }")
    assert too_many["errors"][0]["message"] == (
        "The `first` argument must be between 0 and 1000, but is 1001"
    )
    skipped = subgraph.execute("{ pairHourDatas(skip: 5001) { id } }")
    assert "The `skip` argument must be between 0 and 5000" in skipped["errors"][0]["message"]
    subgraph.set_missing_fields(["hourlyTxns"])
    missing = subgraph.execute("{ pairHourDatas { id hourlyTxns } }")
    assert missing["errors"][0]["message"] == "Type `PairHourData` has no field `hourlyTxns`"
    meta = subgraph.execute("{ _meta { block { number timestamp } hasIndexingErrors } }")
    assert meta["data"]["_meta"] == {
        "block": {"number": 77, "timestamp": H0 + 100},
        "hasIndexingErrors": False,
    }
    row = subgraph.execute("{ pairHourDatas { reserveUSD hourStartUnix pair { id } } }")
    # BigDecimal as a string, Int as a number, the relation as an object with its id.
    assert row["data"]["pairHourDatas"] == [
        {"reserveUSD": "2400000", "hourStartUnix": H0, "pair": {"id": pool_address(9)}}
    ]


def test_each_subgraph_has_its_own_path_and_the_gateway_key_is_checked() -> None:
    subgraphs = {V3_SOURCE.path: StandInSubgraph("v3"), V2_SOURCE.path: StandInSubgraph("v2")}
    query = {"query": "{ pairs(first: 1) { id } }"}
    with SubgraphStandIn(subgraphs, api_key="KEY0123456789") as standin, httpx.Client() as http:
        v2 = http.post(f"{standin.url}/api/KEY0123456789/{V2_SOURCE.path}", json=query)
        v3 = http.post(f"{standin.url}/api/KEY0123456789/{V3_SOURCE.path}", json=query)
        wrong_key = http.post(f"{standin.url}/api/OTHERKEY/{V2_SOURCE.path}", json=query)
        unknown = http.post(f"{standin.url}/api/KEY0123456789/subgraphs/id/Qmnope", json=query)
    assert (v2.status_code, v2.json()) == (200, {"data": {"pairs": []}})
    assert v3.json()["errors"][0]["message"] == "Type `Query` has no field `pairs`"  # V3: pools
    assert (wrong_key.status_code, unknown.status_code) == (401, 404)


# --- indexed from the local chain -----------------------------------------------------------------

# A quiet market, so that mining hours of it stays quick: few swaps per pool and minute.
QUIET_MARKET = {"swaps_per_minute": 2.0, "history_block_interval_s": 60}
COUNTED = {
    "v3": {
        evm.topic(s)
        for s in (
            "Swap(address,address,int256,int256,uint160,uint128,int24)",
            "Mint(address,address,int24,int24,uint128,uint256,uint256)",
            "Burn(address,int24,int24,uint128,uint256,uint256)",
            "Collect(address,address,int24,int24,uint128,uint128)",
        )
    },
    "v2": {
        evm.topic(s)
        for s in (
            "Swap(address,uint256,uint256,uint256,uint256,address)",
            "Mint(address,uint256,uint256)",
            "Burn(address,uint256,uint256,address)",
        )
    },
}


@pytest.fixture(scope="module")
def market_chain(module_deployed):
    """The deployed local market after: 1.5 h of trading, a quiet 2 h gap with no
    transaction, 1 h of trading, then one empty block an hour later (so that the last
    traded hour is complete). Returns (settings, deployment, quiet hour starts)."""
    base, deployment = module_deployed
    settings = make_settings(
        base.state_dir,
        local={"anvil_port": base.local.anvil_port},
        chain={"rpc_urls": list(base.chain.rpc_urls)},
        simulator=QUIET_MARKET,
    )
    simulator = MarketSimulator(settings, deployment)
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        simulator.generate_history(1.5)
        _, last = evm.latest_block(rpc)
        quiet_from = (last // HOUR + 1) * HOUR
        evm.mine(rpc, quiet_from + 2 * HOUR + 10)
        simulator.generate_history(1.0)
        _, last = evm.latest_block(rpc)
        evm.mine(rpc, last + HOUR)
    finally:
        rpc.close()
    return settings, deployment, {quiet_from, quiet_from + HOUR}


def _counted_logs(settings: Settings, deployment: LocalDeployment) -> dict[tuple[str, int], int]:
    """Counted events per (pool, hour start), read with one raw eth_getLogs."""
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        topics = sorted(COUNTED["v3"] | COUNTED["v2"])
        query = {"fromBlock": "0x0", "toBlock": "latest", "topics": [topics]}
        logs = [
            log
            for log in rpc.call("eth_getLogs", query)
            if log["address"] in {pool.address for pool in deployment.pools}
        ]
        blocks = sorted({int(log["blockNumber"], 16) for log in logs})
        stamps = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in blocks])
    finally:
        rpc.close()
    times = {n: int(b["timestamp"], 16) for n, b in zip(blocks, stamps, strict=True)}
    counts: collections.Counter[tuple[str, int]] = collections.Counter()
    protocols = {pool.address: pool.protocol for pool in deployment.pools}
    for log in logs:
        if log["topics"][0] in COUNTED[protocols[log["address"]]]:
            hour = times[int(log["blockNumber"], 16)] // HOUR * HOUR
            counts[(log["address"], hour)] += 1
    return counts


def _indexed(settings: Settings, deployment: LocalDeployment, lag_blocks: int = 0):
    subgraphs = {V3_SOURCE.path: StandInSubgraph("v3"), V2_SOURCE.path: StandInSubgraph("v2")}
    indexer = ChainIndexer(
        settings.local.rpc_url,
        deployment,
        {V3_SOURCE.dex: subgraphs[V3_SOURCE.path], V2_SOURCE.dex: subgraphs[V2_SOURCE.path]},
        lag_blocks=lag_blocks,
    )
    try:
        indexer.index_once()
    finally:
        indexer.close()
    return subgraphs


def test_hour_rows_exist_only_for_hours_with_events_and_count_them(market_chain) -> None:
    settings, deployment, quiet = market_chain
    subgraphs = _indexed(settings, deployment)
    followed = {pool.address for pool in deployment.pools if pool.dex in FOLLOWED_DEXES}
    expected = {
        key: n for key, n in _counted_logs(settings, deployment).items() if key[0] in followed
    }
    rows = {}
    for path, hour_field, pool_field, tx_field in (
        (V3_SOURCE.path, "periodStartUnix", "pool", "txCount"),
        (V2_SOURCE.path, "hourStartUnix", "pair", "hourlyTxns"),
    ):
        for row in subgraphs[path].hour_rows():
            rows[(row[pool_field]["id"], row[hour_field])] = int(row[tx_field])
            assert row["id"] == f"{row[pool_field]['id']}-{row[hour_field] // HOUR}"
    assert rows == expected
    assert not any(hour in quiet for _, hour in rows), "no row for a quiet hour"
    assert len({hour for _, hour in rows}) >= 4


def test_usd_figures_follow_the_chain_state(market_chain) -> None:
    settings, deployment, _ = market_chain
    subgraphs = _indexed(settings, deployment)
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        states = evm.read_pools(rpc, deployment.pools)
        head, head_time = evm.latest_block(rpc)
    finally:
        rpc.close()
    # The stablecoin pair prices WETH itself: its reserves are worth twice the USDC side.
    pair = deployment.pool("sushiswap:WETH/USDC")
    usdc_reserve = getattr(states[pair.name], f"reserve{(pair.token0, pair.token1).index('USDC')}")
    latest = max(
        (r for r in subgraphs[V2_SOURCE.path].hour_rows() if r["pair"]["id"] == pair.address),
        key=lambda r: r["hourStartUnix"],
    )
    assert float(latest["reserveUSD"]) == pytest.approx(2 * usdc_reserve / 1e18, rel=1e-9)
    assert float(latest["totalSupply"]) == pytest.approx(states[pair.name].total_supply / 1e18)

    pool = deployment.pool("uniswap_v3:WETH/USDC:500")
    v3_rows = [r for r in subgraphs[V3_SOURCE.path].hour_rows() if r["pool"]["id"] == pool.address]
    last = max(v3_rows, key=lambda r: r["periodStartUnix"])
    in_range = int(states[pool.name].liquidity)  # sqrt of the virtual reserves: L
    assert int(last["liquidity"]) == pytest.approx(in_range, rel=1e-6)
    # Volumes in USD: about the USDC side of the swaps; fees are the 0.05 % tier's share.
    for row in v3_rows:
        if float(row["volumeUSD"]) > 0:
            assert float(row["feesUSD"]) == pytest.approx(float(row["volumeUSD"]) * 0.0005)
            usdc_side = float(row["volumeToken1" if pool.token1 == "USDC" else "volumeToken0"])
            assert float(row["volumeUSD"]) == pytest.approx(usdc_side, rel=0.02)
    meta = subgraphs[V3_SOURCE.path].indexed_block
    assert meta == (head, head_time)


def test_lag_keeps_meta_and_rows_behind_the_head(market_chain) -> None:
    settings, deployment, _ = market_chain
    lagging = _indexed(settings, deployment, lag_blocks=30)
    full = _indexed(settings, deployment)
    number, timestamp = lagging[V3_SOURCE.path].indexed_block
    assert number == full[V3_SOURCE.path].indexed_block[0] - 30
    assert all(r["periodStartUnix"] <= timestamp for r in lagging[V3_SOURCE.path].hour_rows())
    assert len(lagging[V3_SOURCE.path].hour_rows()) < len(full[V3_SOURCE.path].hour_rows())


def test_the_publisher_reads_chain_hours_through_the_standin(
    market_chain, pubsub_emulator, pubsub_project, tmp_path
) -> None:
    # _received polls with return_immediately: the emulator holds other pulls for seconds.
    warnings.filterwarnings("ignore", "The return_immediately flag", DeprecationWarning)
    from publishers.subgraph import run
    from tests.integration.test_subgraph_publisher import _received, _records

    settings, deployment, quiet = market_chain
    subgraphs = _indexed(settings, deployment)
    with SubgraphStandIn(subgraphs) as standin:
        publisher_settings = make_settings(
            tmp_path,
            subgraph={"endpoint_url": standin.url, "first_run_hours": 8, "catch_up_wait_s": 0},
            pubsub={"project": pubsub_project, "emulator_host": pubsub_emulator},
        )
        stats = run(publisher_settings, once=True)
    records = _records(_received(pubsub_project))
    followed = [p for p in deployment.pools if p.dex in FOLLOWED_DEXES]
    assert {record.pool for record in records.values()} == {p.address for p in followed}
    counts = _counted_logs(settings, deployment)
    for (pool, hour), record in records.items():
        assert record.tx_count == counts.get((pool, hour), 0)
        # A filled hour is one the subgraph has no row for: no counted event in it.
        assert record.filled == ((pool, hour) not in counts)
        if hour in quiet:
            assert record.filled
        assert record.tvl_usd > 0 and record.token0_price > 0
    assert {hour for _, hour in records} >= quiet
    assert stats.records == len(records)


# --- lag and faults from settings and the command line ----------------------------------------

META = {"query": "{ _meta { block { number timestamp } } }"}


def _statuses(url: str, path: str, count: int) -> list[int]:
    with httpx.Client(timeout=10) as http:
        return [http.post(f"{url}/{path}", json=META).status_code for _ in range(count)]


def test_random_faults_come_at_their_shares_and_repeat_with_the_seed() -> None:
    shares = {"http_429": 0.2, "graphql_error": 0.1}
    runs = []
    for seed in (5, 5, 6):
        subgraphs = {V3_SOURCE.path: StandInSubgraph("v3")}
        with SubgraphStandIn(subgraphs, faults=shares, seed=seed) as standin:
            statuses = _statuses(standin.url, V3_SOURCE.path, 400)
        runs.append((statuses, standin.faults_served))
    (statuses, served), again, other_seed = runs
    assert again == (statuses, served) and other_seed != again
    counts = collections.Counter(served)
    assert counts["http_429"] == statuses.count(429)
    assert counts["http_429"] == pytest.approx(80, abs=20)
    assert counts["graphql_error"] == pytest.approx(40, abs=15)


def test_standin_settings_default_to_no_lag_no_faults_and_are_strict() -> None:
    standin = load_local_settings().local.subgraph_standin
    assert (standin.lag_blocks, standin.lag_s, standin.faults) == (0, 0.0, {})
    with pytest.raises(SettingsError, match=r"local\.subgraph_standin\.faults"):
        load_local_settings(local={"subgraph_standin": {"faults": {"http_418": 0.1}}})
    with pytest.raises(SettingsError, match="add up to 1.2"):
        load_local_settings(
            local={"subgraph_standin": {"faults": {"http_429": 0.7, "timeout": 0.5}}}
        )


def test_flags_override_the_settings_of_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "dexwatch.yaml"
    standin = {"lag_s": 60, "faults": {"http_429": 0.2, "http_500": 0.1}, "seed": 3}
    config.write_text(yaml.safe_dump({"local": {"subgraph_standin": standin}}))
    flags = ["--fault", "http_500:0", "--fault", "timeout:0.05", "--lag-blocks", "4"]
    loaded = load_standin_settings(["--config", str(config), *flags]).local.subgraph_standin
    assert loaded.faults == {"http_429": 0.2, "http_500": 0.0, "timeout": 0.05}
    assert (loaded.lag_blocks, loaded.lag_s, loaded.seed, loaded.hang_s) == (4, 60, 3, 2.0)


def test_dexwatch_run_starts_the_standin_with_the_configured_lag_and_faults(
    tmp_path: Path,
) -> None:
    config = tmp_path / "dexwatch.yaml"
    standin = {"lag_s": 900, "faults": {"http_429": 0.1}, "seed": 9, "hang_s": 0.5}
    config.write_text(yaml.safe_dump({"local": {"subgraph_standin": standin}}))
    settings = load_local_settings(config)
    (spec,) = [s for s in _component_specs(settings, config, {}) if s.name == SUBGRAPH_STANDIN]
    assert spec.argv[1:3] == ["-m", "infra.local.subgraph"]
    child = load_standin_settings(spec.argv[3:]).local.subgraph_standin
    assert child == settings.local.subgraph_standin
    assert child.model_dump() == {"lag_blocks": 0, **standin}


def test_the_command_line_standin_lags_and_fails_as_asked(deployed, tmp_path: Path) -> None:
    """`python -m infra.local.subgraph` as `dexwatch run` starts it, with flags: _meta.block
    trails the head by the lag in chain time; the faults are exactly the seed's draws."""
    settings, _ = deployed
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        _, last = evm.latest_block(rpc)
        for n in range(1, 11):  # ten empty blocks, a minute apart
            evm.mine(rpc, last + 60 * n)
        head, head_time = evm.latest_block(rpc)
    finally:
        rpc.close()
    port = processes.free_port()
    local = {"anvil_port": settings.local.anvil_port, "subgraph_port": port,
             "node_modules": str(ROOT / "node_modules")}  # fmt: skip
    config = tmp_path / "dexwatch.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(settings.state_dir), "local": local}))
    flags = ["--lag-s", "150", "--fault", "http_503:0.3", "--seed", "11"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEXWATCH_")}
    standin = subprocess.Popen(
        [sys.executable, "-m", "infra.local.subgraph", "--config", str(config), *flags],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not processes.port_open("127.0.0.1", port):
            assert standin.poll() is None and time.monotonic() < deadline, "no stand-in"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/{V3_SOURCE.path}"
        with httpx.Client(timeout=10) as http:
            answers = [http.post(url, json=META) for _ in range(60)]
    finally:
        standin.send_signal(signal.SIGINT)
        _, stderr = standin.communicate(timeout=30)
    draws = RandomFaults({"http_503": 0.3}, seed=11)
    expected = [503 if draws.draw() else 200 for _ in answers]
    assert [answer.status_code for answer in answers] == expected
    assert 10 <= expected.count(503) <= 30
    # Blocks are 60 s apart: the newest one stamped 150 s or more before the head is head - 3.
    metas = {
        (m["number"], m["timestamp"])
        for m in (a.json()["data"]["_meta"]["block"] for a in answers if a.status_code == 200)
    }
    assert metas == {(head - 3, head_time - 180)}
    assert "lag 0 blocks and 150 s of chain time; faults http_503 30% (seed 11" in stderr
