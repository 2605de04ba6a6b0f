"""The local market on a real anvil: deployment, simulated trading, injected incidents.

What is asserted is read back from the chain (pool state at a block, the pools' own event
logs), never taken from the simulator's or the injector's own accounts of what they did.
"""

from __future__ import annotations

import math
import statistics
import threading

import pytest
import yaml

from dexwatch.core.features.slices import summarize_slice
from dexwatch.core.settings import Settings
from infra.local import evm
from infra.local.deployment import LocalDeployment, PoolInfo
from infra.local.incidents import inject
from infra.local.market import MarketSimulator
from publishers.chain.events import Pool, decode_pool_logs
from tests.conftest import ROOT, make_settings

pytestmark = pytest.mark.stack

V3_SWAP = evm.topic("Swap(address,address,int256,int256,uint160,uint128,int24)")
V2_SWAP = evm.topic("Swap(address,uint256,uint256,uint256,uint256,address)")


def _with(settings: Settings, **simulator: object) -> Settings:
    return make_settings(
        settings.state_dir,
        local=settings.local.model_dump(mode="json"),
        chain=settings.chain.model_dump(mode="json"),
        simulator=simulator,
    )


def _swaps(rpc: evm.Rpc, pool_address: str, first: int, last: int) -> list[dict]:
    return rpc.call(
        "eth_getLogs",
        {
            "fromBlock": hex(first),
            "toBlock": hex(last),
            "address": pool_address,
            "topics": [[V3_SWAP, V2_SWAP]],
        },
    )


def _usdc_amounts(deployment: LocalDeployment, pool_name: str, logs: list[dict]) -> list[float]:
    """USD size of each swap of a USDC pool, from the log's own amounts."""
    pool = deployment.pool(pool_name)
    usdc_is_token0 = pool.token0 == "USDC"
    sizes = []
    for log in logs:
        words = [int(log["data"][2 + 64 * i : 66 + 64 * i], 16) for i in range(4)]
        if pool.protocol == "v3":
            raw = words[0] if usdc_is_token0 else words[1]
            raw = raw - 2**256 if raw >= 2**255 else raw
            sizes.append(abs(raw) / 1e18)
        else:  # amount0In, amount1In, amount0Out, amount1Out
            sizes.append((words[0] + words[2] if usdc_is_token0 else words[1] + words[3]) / 1e18)
    return sizes


def test_deployment_has_the_pools_tokens_and_accounts_the_simulator_needs(deployed):
    settings, deployment = deployed
    rpc = evm.Rpc(settings.local.rpc_url)
    states = evm.read_pools(rpc, deployment.pools)
    prices = evm.usd_prices(deployment, states)
    rpc.close()
    assert {p.dex for p in deployment.pools} == {"uniswap_v3", "uniswap_v2", "sushiswap"}
    assert sorted(p.fee for p in deployment.pools if p.protocol == "v3") == [
        500,
        500,
        500,
        3000,
        3000,
    ]
    assert sum(p.dex == "sushiswap" for p in deployment.pools) == 2
    assert {f.dex for f in deployment.factories} == {"uniswap_v3", "uniswap_v2", "sushiswap"}
    # The pools start at the tokens' initial USD prices, read back from pool state.
    for symbol, token in deployment.tokens.items():
        assert prices[symbol] == pytest.approx(token.initial_usd_price, rel=1e-3)
    for state in states.values():
        assert state.reserve0 > 0 and state.reserve1 > 0


def test_history_trades_every_pool_with_heavy_tails_and_a_daily_rhythm(deployed_at_a_fixed_time):
    settings, deployment = deployed_at_a_fixed_time
    settings = _with(settings, day_length_s=1200, history_block_interval_s=12, seed=3)
    simulator = MarketSimulator(settings, deployment)
    seen: list[tuple[int, int]] = []
    first, last = simulator.generate_history(
        1.0, progress=lambda done, total: seen.append((done, total))
    )
    assert last - first + 1 == 300 and seen[-1] == (300, 300)
    # No swap reverts: the arbitrageur's back-runs on the stable pools once traded to the
    # price they were at (3 of 11,024 swaps of this hour, V3's SPL).
    assert simulator.stats.reverted == 0

    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        start = int(rpc.call("eth_getBlockByNumber", hex(first), False)["timestamp"], 16)
        end = int(rpc.call("eth_getBlockByNumber", hex(last), False)["timestamp"], 16)
        assert end - start == 12 * 299  # chain time, ahead of the wall clock
        by_block: dict[int, int] = {}
        for pool in deployment.pools:
            logs = _swaps(rpc, pool.address, first, last)
            assert len(logs) > 300, pool.name  # ~20 a minute for an hour
            for log in logs:
                number = int(log["blockNumber"], 16)
                by_block[number] = by_block.get(number, 0) + 1
        # Daily rhythm: the busy half of each simulated day trades far more than the quiet half.
        busy = quiet = 0
        for number in range(first, last + 1):
            timestamp = start + 12 * (number - first)
            count = by_block.get(number, 0)
            if simulator.rhythm(timestamp) > 1:
                busy += count
            else:
                quiet += count
        assert busy > 2 * quiet
        # Heavy tails: the largest trades dwarf the typical one.
        sizes = sorted(
            _usdc_amounts(
                deployment,
                "sushiswap:WETH/USDC",
                _swaps(rpc, deployment.pool("sushiswap:WETH/USDC").address, first, last),
            )
        )
        median, p99 = statistics.median(sizes), sizes[int(0.99 * len(sizes))]
        assert 200 < median < 1500 and p99 > 8 * median
        # Prices wander but stay a market: within 30% of where they started after an hour.
        prices = evm.usd_prices(deployment, evm.read_pools(rpc, deployment.pools))
        for symbol, token in deployment.tokens.items():
            assert abs(math.log(prices[symbol] / token.initial_usd_price)) < 0.3, symbol
    finally:
        rpc.close()


CALIBRATED = ROOT / "infra" / "local" / "markets" / "polygon-busy-pool.yaml"
V3_MINT = evm.topic("Mint(address,address,int24,int24,uint128,uint256,uint256)")
V3_BURN = evm.topic("Burn(address,int24,int24,uint128,uint256,uint256)")


def _calibrated(settings: Settings, **overrides: object) -> Settings:
    simulator = yaml.safe_load(CALIBRATED.read_text())["simulator"]
    return _with(settings, **{**simulator, **overrides})


def _signed24(word: str) -> int:
    value = int(word, 16)
    return value - 2**256 if value >= 2**255 else value


def test_calibrated_market_has_arbitrageurs_routers_and_concentrated_providers(
    deployed_at_a_fixed_time,
):
    settings, deployment = deployed_at_a_fixed_time
    # Providers busier than calibrated (a move a minute, four in five of them adds), so that
    # an hour holds enough Mints (a Poisson count of about 50) to measure their widths.
    settings = _calibrated(settings, lp_change_probability=1.0, range_order_share=0.3)
    pool = deployment.pool("uniswap_v3:WETH/USDC:500")
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        before = _state_at(rpc, deployment, pool.name, evm.latest_block(rpc)[0])
        simulator = MarketSimulator(settings, deployment)
        first, _ = simulator.generate_history(0.01)
        # Concentrated liquidity: placed at the first block, many times the deployment's
        # in-range liquidity; still a multiple of it after an hour of removals and moves.
        assert evm.read_pools(rpc, [pool])[pool.name].liquidity > 5 * before.liquidity
        _, last = simulator.generate_history(1.0)
        assert simulator.stats.reverted == 0
        states = evm.read_pools(rpc, deployment.pools)
        assert states[pool.name].liquidity > 2 * before.liquidity
        # Arbitrage against one fair price keeps the two WETH/USDC pools within their fees
        # (0.05 % and 0.3 %) of each other, whatever the noise traders did.
        prices = [
            evm.human_price(deployment, states[name])
            for name in ("uniswap_v3:WETH/USDC:500", "sushiswap:WETH/USDC")
        ]
        assert abs(math.log(prices[0] / prices[1])) < 0.0035 + 0.002
        # Routers: about a quarter of the traders' swaps (the arbitrageur's aside) send their
        # output to the router, not to the transaction's sender.
        router = "0x" + deployment.periphery["v3_swap_router"][-40:].lower()
        arbitrageur, traded, to_router = deployment.accounts.traders[-1], 0, 0
        for log in _swaps(rpc, pool.address, first, last):
            sender = rpc.call("eth_getTransactionByHash", log["transactionHash"])["from"]
            recipient = "0x" + log["topics"][2][-40:]
            if sender != arbitrageur:
                traded += 1
                to_router += recipient == router
                assert recipient in (router, sender)
        assert 0.15 < to_router / traded < 0.35
        # Providers: narrow positions (median of hundreds of ticks, like the real pool's
        # 550) and range orders one tick spacing (10) wide.
        mints = rpc.call(
            "eth_getLogs",
            {"fromBlock": hex(first), "toBlock": hex(last), "address": pool.address,
             "topics": [V3_MINT]},
        )  # fmt: skip
        widths = [_signed24(m["topics"][3]) - _signed24(m["topics"][2]) for m in mints]
        assert len(widths) > 30
        assert 200 < statistics.median(widths) < 1500
        assert 0.1 < sum(w == 10 for w in widths) / len(widths) < 0.5
    finally:
        rpc.close()


def _int24(word: str) -> int:
    value = int(word, 16) & (2**24 - 1)
    return value - 2**24 if value >= 2**23 else value


def test_just_in_time_liquidity_wraps_a_large_swap_in_one_block(deployed_at_a_fixed_time):
    settings, deployment = deployed_at_a_fixed_time
    settings = _calibrated(settings, jit_per_hour=400.0)
    pool = deployment.pool("uniswap_v3:WETH/USDC:500")
    simulator = MarketSimulator(settings, deployment)
    first, last = simulator.generate_history(0.2)
    assert simulator.stats.reverted == 0
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        logs = rpc.call(
            "eth_getLogs",
            {"fromBlock": hex(first), "toBlock": hex(last), "address": pool.address},
        )
    finally:
        rpc.close()
    by_block: dict[int, list[dict]] = {}
    for log in logs:
        by_block.setdefault(int(log["blockNumber"], 16), []).append(log)
    bundles = inside = 0
    for block_logs in by_block.values():
        block_logs.sort(key=lambda log: int(log["logIndex"], 16))
        kinds = [log["topics"][0] for log in block_logs]
        if kinds[:1] != [V3_MINT] or V3_BURN not in kinds:
            continue
        mint, burn = block_logs[0], block_logs[kinds.index(V3_BURN)]
        swap = next(log for log in block_logs[1:] if log["topics"][0] == V3_SWAP)
        # The same position (ticks, liquidity) minted before the swap and burned after it,
        # many times the liquidity the swap found besides it.
        assert mint["topics"][2:] == burn["topics"][2:]
        minted = int(mint["data"][66:130], 16)
        assert minted == int(burn["data"][2:66], 16)
        bundles += 1
        # The swap's log reports the liquidity where the swap ends: the bundle's only if it
        # ended inside the bundle's range (a large swap may carry the price out of it).
        lower, upper = (_int24(topic) for topic in mint["topics"][2:4])
        if lower <= _int24(swap["data"][2 + 64 * 4 : 2 + 64 * 5]) < upper:
            in_range = int(swap["data"][2 + 64 * 3 : 2 + 64 * 4], 16)
            assert 30 / 31 - 0.01 < minted / in_range < 85 / 86 + 0.01
            inside += 1
    # 400 an hour of average activity: 80 expected in 0.2 h; at least a tenth of that even
    # in the quietest hours of the rhythm, where the wall clock may start the chain (7 of an
    # expected 24 at 120 an hour, on 2026-12-03 at 21:12 UTC).
    assert bundles >= 8 and inside >= bundles // 2, (bundles, inside)


def test_calibrated_market_has_silences_and_quiet_weekends(deployed_at_a_fixed_time):
    settings, deployment = deployed_at_a_fixed_time
    # Silences far more often than calibrated: several in one hour.
    settings = _calibrated(settings, silences_per_day=200, silence_mean_hours=0.1)
    simulator = MarketSimulator(settings, deployment)
    # 2023-11-15, a Wednesday, and 2023-11-18, a Saturday, at the same time of day.
    wednesday, saturday = 1_700_000_000 + 86400, 1_700_000_000 + 4 * 86400
    assert simulator.rhythm(saturday) == pytest.approx(0.73 * simulator.rhythm(wednesday))
    first, last = simulator.generate_history(1.0)
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        gaps = []
        for pool in deployment.pools:
            blocks = sorted(
                int(log["blockNumber"], 16) for log in _swaps(rpc, pool.address, first, last)
            )
            gaps += [b - a for a, b in zip(blocks, blocks[1:], strict=False)]
    finally:
        rpc.close()
    # Trades come every ten blocks or so; a silence holds a pool for minutes (150 blocks: 5).
    assert statistics.median(gaps) < 20
    assert sum(gap > 150 for gap in gaps) >= 3


def test_live_run_stamps_blocks_with_the_wall_clock_and_stops_when_asked(deployed):
    import time

    settings, deployment = deployed
    # Whole seconds: block timestamps are integers, so faster blocks would outrun the clock.
    settings = _with(settings, block_interval_s=1.5)
    simulator = MarketSimulator(settings, deployment)
    stop = threading.Event()
    worker = threading.Thread(target=simulator.run_live, args=(stop,))
    worker.start()
    deadline = time.monotonic() + 30
    while simulator.stats.blocks < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert simulator.stats.blocks >= 3 and simulator.stats.swaps > 0
    rpc = evm.Rpc(settings.local.rpc_url)
    number, timestamp = evm.latest_block(rpc)
    assert abs(timestamp - time.time()) < 3
    assert rpc.call("anvil_getAutomine") is True  # restored
    rpc.close()


def test_a_live_market_goes_on_from_the_prices_a_history_left(deployed):
    """`dexwatch run` mines a history, then a new simulator process trades live: it starts
    from the pools' prices, not the tokens' initial ones (which made the arbitrageur move
    every pool by the history's drift in the first live block: a false alert on each)."""
    settings, deployment = deployed
    settings = _with(settings, block_interval_s=1.0)
    history = MarketSimulator(settings, deployment)
    history.prices.shift({"WETH": 1.25, "LINK": 0.8}, 60)
    history.generate_history(0.05, block_interval_s=12)
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        mined = evm.usd_prices(deployment, evm.read_pools(rpc, deployment.pools))
        assert mined["WETH"] > 1.2 * deployment.tokens["WETH"].initial_usd_price  # drifted
        live = MarketSimulator(settings, deployment)
        stop = threading.Event()
        worker = threading.Thread(target=live.run_live, args=(stop,), kwargs={"duration_s": 4})
        worker.start()
        worker.join(timeout=30)
        assert live.stats.blocks >= 2
        after = evm.usd_prices(deployment, evm.read_pools(rpc, deployment.pools))
    finally:
        rpc.close()
    for symbol in ("WETH", "LINK", "WBTC", "UNI"):
        assert after[symbol] == pytest.approx(mined[symbol], rel=0.01), symbol


POOLS = ["uniswap_v3:WETH/USDC:500", "sushiswap:LINK/WETH"]


def _state_at(rpc: evm.Rpc, deployment: LocalDeployment, pool: str, block: int):
    return evm.read_pools(rpc, [deployment.pool(pool)], hex(block))[pool]


def _inject(deployed, kind: str, pool: str):
    """(settings, deployment, label, rpc) after injecting ``kind`` without waits between
    blocks; the caller closes rpc."""
    settings, deployment = deployed
    settings = _with(settings, block_interval_s=0.05)
    label = inject(settings, deployment, kind, pool)
    return settings, deployment, label, evm.Rpc(settings.local.rpc_url)


@pytest.mark.parametrize("pool", POOLS)
def test_liquidity_drain_removes_over_half_within_a_few_blocks(deployed, pool):
    settings, deployment, label, rpc = _inject(deployed, "liquidity-drain", pool)
    before = _state_at(rpc, deployment, pool, label.first_block - 1)
    after = _state_at(rpc, deployment, pool, label.last_block)
    rpc.close()
    assert after.liquidity / before.liquidity < 0.5
    assert label.last_block - label.first_block <= 4
    assert label.pool == deployment.pool(pool).address and label.kind == "liquidity-drain"
    assert label.first_timestamp <= label.last_timestamp


def test_a_drain_of_a_concentrated_pool_takes_its_share_of_the_in_range_liquidity(deployed):
    """In the calibrated market the providers' narrow positions hold most of the in-range
    liquidity: the team's drain takes 70 % of every position it holds in range, theirs
    included, not of the deployment's wide position alone."""
    settings, deployment = deployed
    pool = "uniswap_v3:WETH/USDC:500"
    MarketSimulator(_calibrated(settings), deployment).generate_history(0.01)
    rpc = evm.Rpc(settings.local.rpc_url)
    provided = [
        p
        for p in evm.positions_in(
            deployment,
            deployment.pool(pool),
            evm.v3_positions(rpc, deployment.periphery["v3_position_manager"],
                             deployment.accounts.liquidity_providers),
        )
    ]  # fmt: skip
    rpc.close()
    assert provided, "the calibrated market placed no provider positions"
    _, deployment, label, rpc = _inject((settings, deployment), "liquidity-drain", pool)
    before = _state_at(rpc, deployment, pool, label.first_block - 1)
    after = _state_at(rpc, deployment, pool, label.last_block)
    rpc.close()
    assert after.liquidity / before.liquidity == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("pool", POOLS)
def test_rug_pull_pumps_then_removes_nearly_everything(deployed, pool):
    settings, deployment, label, rpc = _inject(deployed, "rug-pull", pool)
    states = [
        _state_at(rpc, deployment, pool, n)
        for n in range(label.first_block - 1, label.last_block + 1)
    ]
    rpc.close()
    start, end = states[0], states[-1]
    moves = [abs(math.log(s.price / start.price)) for s in states]
    assert max(moves) > math.log(1.15)  # the pump
    assert end.liquidity / start.liquidity < 0.15  # then near-total removal


@pytest.mark.parametrize("pool", POOLS)
def test_price_manipulation_moves_the_price_and_back(deployed, pool):
    settings, deployment, label, rpc = _inject(deployed, "price-manipulation", pool)
    start = _state_at(rpc, deployment, pool, label.first_block - 1)
    moved = _state_at(rpc, deployment, pool, label.first_block)
    end = _state_at(rpc, deployment, pool, label.last_block)
    logs = _swaps(rpc, deployment.pool(pool).address, label.first_block, label.first_block)
    rpc.close()
    assert len(logs) == 1  # one swap
    assert moved.price / start.price >= 1.10
    assert end.price / start.price == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("pool", POOLS)
def test_a_fresh_pool_rug_launches_its_own_pool_pumps_it_and_takes_everything(deployed, pool):
    settings, deployment = deployed
    fast = _with(settings, block_interval_s=0.05)
    label = inject(fast, deployment, "fresh-pool-rug", pool, history=True,
                   between=MarketSimulator(fast, deployment).fill)  # fmt: skip
    named = deployment.pool(pool)
    rpc = evm.Rpc(settings.local.rpc_url)
    fresh = PoolInfo(
        name="fresh", dex=named.dex, protocol=named.protocol, address=label.pool,
        token0="A", token1="B", fee=3000 if named.protocol == "v3" else None,
    )  # fmt: skip
    states = [
        evm.read_pools(rpc, [fresh], hex(n))["fresh"]
        for n in range(label.first_block - 1, label.last_block + 1)
    ]
    created = rpc.call(
        "eth_getLogs",
        {"fromBlock": "0x0", "toBlock": hex(label.first_block - 1),
         "address": next(f.address for f in deployment.factories if f.dex == named.dex)},
    )  # fmt: skip
    rpc.close()
    assert label.pool not in {p.address for p in deployment.pools}
    # Its factory announced it just before the incident: the pipeline sees a new pool.
    assert any(label.pool[2:] in log["data"] + "".join(log["topics"]) for log in created)
    start, end = states[0], states[-1]
    assert max(abs(math.log(s.price / start.price)) for s in states[:-1]) > math.log(1.4)
    assert end.liquidity / start.liquidity < 0.01
    # Its first minutes: pumped and drained within two of them after the launch.
    assert (label.last_timestamp - label.first_timestamp).total_seconds() <= 120


def test_a_quiet_pool_drain_follows_ten_silent_minutes_of_its_pool(deployed):
    settings, deployment = deployed
    pool = deployment.pool("uniswap_v3:WBTC/USDC:3000")
    fast = _with(settings, block_interval_s=0.05)
    simulator = MarketSimulator(fast, deployment)
    label = inject(fast, deployment, "quiet-pool-drain", pool.name, history=True,
                   between=simulator.fill)  # fmt: skip
    rpc = evm.Rpc(settings.local.rpc_url)
    first_quiet = label.first_block - 1
    while _timestamp(rpc, first_quiet - 1) >= label.first_timestamp.timestamp() - 600:
        first_quiet -= 1
    quiet = rpc.call(
        "eth_getLogs",
        {"fromBlock": hex(first_quiet), "toBlock": hex(label.first_block - 1),
         "address": pool.address},
    )  # fmt: skip
    others = _swaps(rpc, deployment.pool(POOLS[0]).address, first_quiet, label.first_block - 1)
    before = _state_at(rpc, deployment, pool.name, label.first_block - 1)
    after = _state_at(rpc, deployment, pool.name, label.first_block)
    rpc.close()
    assert quiet == [] and others  # the market traded on, this pool did not
    assert label.first_block == label.last_block
    assert after.liquidity / before.liquidity < 0.5
    # Beside a live market, the injector will not pretend a busy pool was quiet.
    with pytest.raises(ValueError, match="silent for 600 s"):
        inject(fast, deployment, "quiet-pool-drain", POOLS[0])


def _timestamp(rpc: evm.Rpc, number: int) -> int:
    return int(rpc.call("eth_getBlockByNumber", hex(number), False)["timestamp"], 16)


@pytest.mark.parametrize("pool", POOLS)
def test_wash_trading_is_twenty_times_normal_volume_between_two_addresses(deployed, pool):
    settings, deployment = deployed
    fast = _with(settings, block_interval_s=0.05)
    label = inject(fast, deployment, "wash-trading", pool)
    rpc = evm.Rpc(settings.local.rpc_url)
    info = deployment.pool(pool)
    logs = _swaps(rpc, info.address, label.first_block, label.last_block)
    prices = evm.usd_prices(deployment, evm.read_pools(rpc, deployment.pools))
    rpc.close()
    adversaries = {a[2:] for a in deployment.accounts.adversaries}
    traders = {topic[-40:] for log in logs for topic in log["topics"][1:]}
    traders -= {deployment.periphery["v3_swap_router"][2:]}
    assert traders == adversaries
    # Volume in USD from token0 amounts, against the simulator's normal rate over the same
    # stretch of chain time.
    volume = 0.0
    for log in logs:
        words = [int(log["data"][2 + 64 * i : 66 + 64 * i], 16) for i in range(4)]
        if info.protocol == "v3":
            raw = words[0] - 2**256 if words[0] >= 2**255 else words[0]
            amount0 = abs(raw)
        else:
            amount0 = words[0] + words[2]
        volume += amount0 / 1e18 * prices[info.token0]
    sim = settings.simulator
    normal_per_s = (
        sim.swaps_per_minute / 60 * sim.trade_usd_median * math.exp(sim.trade_usd_sigma**2 / 2)
    )
    # The chain time the burst spans: its blocks' timestamps plus the first block's second.
    span_s = (label.last_timestamp - label.first_timestamp).total_seconds() + 1
    assert volume >= 19 * normal_per_s * span_s


def _sandwiches_in_logs(rpc: evm.Rpc, deployment: LocalDeployment, info: PoolInfo,
                       first: int, last: int) -> list:  # fmt: skip
    """The sandwiches in ``info``'s logs of blocks ``first`` to ``last``, block by block."""
    logs = rpc.call(
        "eth_getLogs", {"fromBlock": hex(first), "toBlock": hex(last), "address": info.address}
    )
    numbers = {int(log["blockNumber"], 16) for log in logs}
    timestamps = {n: _timestamp(rpc, n) for n in numbers}
    known = {info.address: Pool(info.address, info.dex, info.protocol, "", 0)}
    by_block: dict[int, list] = {}
    for event in decode_pool_logs(logs, deployment.chain_id, known, timestamps).events:
        by_block.setdefault(event.block_number, []).append(event)
    return [s for block in by_block.values()
            for s in summarize_slice(info.address, 0, block).sandwiches]  # fmt: skip


def test_normal_trading_makes_no_sandwich(deployed_at_a_fixed_time):
    """Busy blocks of a few weighted trader accounts: an account swaps a pool once a block,
    so none brackets another's swap by chance (it did, by the hundred a simulated day)."""
    settings, deployment = deployed_at_a_fixed_time
    busy = _with(settings, history_block_interval_s=15, swaps_per_minute=40, seed=5)
    first, last = MarketSimulator(busy, deployment).generate_history(0.25)
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        for pool in POOLS:
            assert _sandwiches_in_logs(rpc, deployment, deployment.pool(pool), first, last) == []
    finally:
        rpc.close()


@pytest.mark.parametrize("pool", POOLS)
def test_a_sandwich_brackets_a_traders_purchase_in_each_of_its_blocks(deployed, pool):
    settings, deployment, label, rpc = _inject(deployed, "sandwich", pool)
    info = deployment.pool(pool)
    logs = rpc.call(
        "eth_getLogs",
        {"fromBlock": hex(label.first_block), "toBlock": hex(label.last_block),
         "address": info.address},
    )  # fmt: skip
    numbers = {int(log["blockNumber"], 16) for log in logs}
    timestamps = {n: _timestamp(rpc, n) for n in numbers}
    rpc.close()
    known = {info.address: Pool(info.address, info.dex, info.protocol, "", 0)}
    events = decode_pool_logs(logs, deployment.chain_id, known, timestamps).events
    by_block: dict[int, list] = {}
    for event in events:
        by_block.setdefault(event.block_number, []).append(event)
    found = [s for block in by_block.values()
             for s in summarize_slice(info.address, 0, block).sandwiches]  # fmt: skip
    # Read back from the pool's own logs: every block is a sandwich by the adversary around
    # the trader, and each took something.
    assert len(found) == len(by_block) == 20
    adversary, trader = deployment.accounts.adversaries[0], deployment.accounts.traders[0]
    assert {s.attacker for s in found} == {adversary.lower()}
    assert all(len(s.victim_txs) == 1 and s.extracted > 0 for s in found)
    victims = {
        e.tx_hash for e in events if e.args.get("recipient", e.args.get("to")) == trader.lower()
    }
    assert {s.victim_txs[0] for s in found} == victims
    assert label.kind == "sandwich" and "sandwiched" in label.details
    # The victim's direction alternates: the pool's price ends near where it started.
    again = evm.Rpc(settings.local.rpc_url)
    before = _state_at(again, deployment, pool, label.first_block - 1)
    after = _state_at(again, deployment, pool, label.last_block)
    again.close()
    assert abs(after.price / before.price - 1) < 0.01
