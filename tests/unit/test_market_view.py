"""The market view on hand-made price sequences (dexwatch.core.features.market), its Beam
transform in streaming and batch, and the threads its findings open (transforms.threads)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import apache_beam as beam
import numpy as np
import orjson
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.transforms.market import WatchMarket, finding_row
from beam_pipelines.transforms.threads import ChainThreads
from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.features.market import MarketView
from dexwatch.core.features.slices import SliceSummary
from dexwatch.core.market_settings import AssetConfig, Markets, MarketSettings
from infra.local.market_events import MarketEvent, ShiftRequests

SLICE = 15
CHAIN = 31337


def _address(n: int) -> str:
    return f"0x{n:040x}"


# The local deployment's shape: three USD stablecoins, three floating assets quoted in USDC
# or DAI, LINK priced only through WETH.
ASSETS = {
    "USDC": ("USD", 1.0), "DAI": ("USD", 1.0), "USDT": ("USD", 1.0),
    "WETH": (None, 3000.0), "WBTC": (None, 60000.0), "UNI": (None, 8.0), "LINK": (None, 15.0),
}  # fmt: skip
ADDRESS = {symbol: _address(i + 1) for i, symbol in enumerate(ASSETS)}
POOLS = {
    "weth-usdc": ("WETH", "USDC"), "weth-usdc-2": ("WETH", "USDC"), "wbtc-usdc": ("WBTC", "USDC"),
    "uni-usdc": ("UNI", "USDC"), "link-weth": ("LINK", "WETH"), "dai-usdc": ("DAI", "USDC"),
    "weth-dai": ("WETH", "DAI"), "usdt-usdc": ("USDT", "USDC"),
}  # fmt: skip
SETTINGS = MarketSettings(
    assets=[
        AssetConfig(address=ADDRESS[symbol], symbol=symbol, peg=peg)
        for symbol, (peg, _) in ASSETS.items()
    ]
)


class Market:
    """Fair USD prices with a little noise, every pool at its fair price each slice."""

    def __init__(self, seed: int = 1, noise: float = 0.0005) -> None:
        self.usd = {symbol: price for symbol, (_, price) in ASSETS.items()}
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.view = MarketView(SETTINGS)
        for pool, (base, quote) in POOLS.items():
            self.view.announce("uniswap_v3", pool, ADDRESS[base], ADDRESS[quote])
        self.at = 0

    def prices(self) -> dict[str, float]:
        return {
            pool: self.usd[base] / self.usd[quote] * math.exp(self.noise * self.rng.normal())
            for pool, (base, quote) in POOLS.items()
        }

    def step(self, silent: tuple[str, ...] = (), **moves: float) -> list:
        """One slice: each named asset's price times its factor, then the view's findings
        (the ``silent`` pools trade nothing)."""
        for symbol, factor in moves.items():
            self.usd[symbol] *= factor
        self.at += SLICE
        for pool, price in self.prices().items():
            if pool not in silent:
                self.view.observe(pool, self.at, price)
        return self.view.evaluate(self.at)

    def calm(self, seconds: int) -> list:
        found = []
        for _ in range(seconds // SLICE):
            found += self.step()
        return found


def test_calm_markets_raise_nothing():
    assert Market().calm(6 * 3600) == []


def test_every_asset_falling_8_percent_is_one_market_move_naming_the_pools_it_moved():
    market = Market()
    assert market.calm(2 * 3600) == []
    (move,) = market.step(**dict.fromkeys(["WETH", "WBTC", "UNI", "LINK"], 0.92))
    assert move.kind == "market-move" and move.scope == "market"
    assert -0.09 < math.expm1(move.size) < -0.07
    named = {pool for _, pool in move.pools}
    # LINK/WETH did not move (both fell), nor did the stablecoins' pools.
    assert named == {"weth-usdc", "weth-usdc-2", "wbtc-usdc", "uni-usdc", "weth-dai"}
    assert "market-move" in move.evidence[0]


def test_one_asset_falling_8_percent_is_its_pools_own_move():
    market = Market()
    market.calm(2 * 3600)
    found = market.step(WBTC=0.92)
    assert [(f.kind, f.scope) for f in found] == [("price-dislocation", "pool:wbtc-usdc")]
    assert -0.09 < math.expm1(found[0].size) < -0.07


def test_a_stablecoin_drifting_to_090_is_one_depeg_naming_it_and_its_pools():
    market = Market()
    market.calm(2 * 3600)
    first = None
    steps = 3600 // SLICE
    for k in range(steps):
        found = market.step(DAI=0.90 ** (1 / steps))
        assert all(f.kind == "depeg" and f.scope == f"asset:{ADDRESS['DAI']}" for f in found)
        if found and first is None:
            first = (k + 1) * SLICE, found[0]
    seconds, depeg = first
    # Past the 1 % tolerance (about 6 minutes in), for a minute.
    assert 6 * 60 <= seconds <= 9 * 60
    assert {pool for _, pool in depeg.pools} == {"dai-usdc", "weth-dai"}
    assert "DAI" in depeg.evidence[0]


def test_the_numeraires_own_depeg_is_told_apart_from_a_market_move():
    """USDC leaving its peg moves every pool priced in it, as a market move would: the other
    two stablecoins say which it is."""
    market = Market()
    market.calm(2 * 3600)
    found = []
    for _ in range(40):
        found += market.step(USDC=0.90 ** (1 / 40))
    assert found and {f.scope for f in found} == {f"asset:{ADDRESS['USDC']}"}


def test_a_depeg_older_than_the_horizon_stays_its_assets_with_two_stablecoins_priced():
    """USDT's pool silent: the peg has two members. DAI drifts to 0.90 and stays there for
    two hours: the floating assets no longer say which of the two moved, the depeg still
    is DAI's (not USDC's)."""
    market = Market()
    market.calm(2 * 3600)
    found = []
    steps = 3600 // SLICE
    for k in range(3 * steps):
        found += market.step(silent=("usdt-usdc",), DAI=0.90 ** (1 / steps) if k < steps else 1.0)
    assert found and {f.scope for f in found} == {f"asset:{ADDRESS['DAI']}"}


def test_assets_no_pool_links_to_the_stablecoins_main_group_are_not_priced():
    """USDT off its peg for good; then every pool linking DAI and WETH to USDC falls silent
    (WETH/DAI and LINK/WETH still trade): DAI is no longer compared with USDC, and nothing
    but USDT's depeg is found (one pin for both groups read DAI 77 % off its peg)."""
    market = Market()
    market.calm(2 * 3600)
    found = []
    steps = 3600 // SLICE
    for _ in range(steps):
        found += market.step(USDT=0.90 ** (1 / steps))
    assert found and {f.scope for f in found} == {f"asset:{ADDRESS['USDT']}"}
    silent = ("dai-usdc", "weth-usdc", "weth-usdc-2")
    later = []
    for _ in range(3600 // SLICE):
        later += market.step(silent=silent)
    assert later and {f.scope for f in later} == {f"asset:{ADDRESS['USDT']}"}


def test_one_trade_not_yet_arbitraged_is_no_depeg():
    market = Market()
    market.calm(2 * 3600)
    assert market.step(USDT=0.98) == []
    assert market.step(USDT=1 / 0.98) == []


@pytest.mark.parametrize("burn", ["counted", "before-the-first-swap"])
def test_a_rugged_pool_stops_pricing_its_asset_even_when_no_swap_follows_the_removal(burn):
    """A rug pull: USDT pumped 21 % in its only pool, then its liquidity removed in a slice
    with no swap (no price, no tick: a V3 Burn then waits in ``pending`` for the tick the
    slice before ended at): the pump is its pool's own move; USDT is no longer priced, so
    neither a depeg nor a market move of everything against the stablecoins follows (nor
    at the pump: the unit is the stablecoins' median, not their mean)."""
    market = Market()
    market.calm(2 * 3600)
    liquidity = 1e6
    found = []
    for k in range(40):
        market.at += SLICE
        for pool, price in market.prices().items():
            if pool == "usdt-usdc":
                if k == 0:
                    price *= 1.21
                elif k >= 1:
                    # The removal's slice and the dust after it: no swap, no price.
                    removed, pending = 0.0, ()
                    if k == 1 and burn == "counted":
                        removed = liquidity
                    elif k == 1:
                        pending = ((("team", 1800, 2000), -liquidity),)
                    market.view.observe(pool, market.at, None, None, removed, pending)
                    continue
            market.view.observe(pool, market.at, price, liquidity, tick=1900)
        found += market.view.evaluate(market.at)
    assert [(f.kind, f.scope, f.at) for f in found] == [
        ("price-dislocation", "pool:usdt-usdc", 2 * 3600 + SLICE)
    ]


def test_a_burn_before_the_first_swap_out_of_the_last_ticks_range_drains_nothing():
    view = MarketView(SETTINGS)
    view.announce("uniswap_v3", "usdt-usdc", ADDRESS["USDT"], ADDRESS["USDC"])
    view.observe("usdt-usdc", SLICE, 1.0, 1e6, tick=0)
    view.observe("usdt-usdc", 2 * SLICE, None, None, 0.0, ((("lp", 100, 200), -1e6),))
    view.observe("usdt-usdc", 3 * SLICE, 1.0, 1e6, tick=0)
    assert "usdt-usdc" in view._prices  # still priced: the burn was out of range


def test_a_blip_of_one_stablecoin_during_anothers_depeg_is_not_its_depeg():
    """DAI off its peg for good; USDT pumped 21 % for one slice (a rug's pump): only DAI's
    depeg is found, no depeg of USDT and no market move of everything against USDC and USDT
    (two stablecoins that disagree give no unit)."""
    market = Market()
    market.calm(2 * 3600)
    found = []
    for k in range(60):
        found += market.step(DAI=0.97 if k == 0 else 1.0, USDT=1.21 if k == 30 else 1.0)
        if k == 30:
            market.usd["USDT"] /= 1.21
    assert found and {f.scope for f in found} == {f"asset:{ADDRESS['DAI']}"}


def test_two_blips_a_minute_apart_are_no_depeg():
    """A large trade left for the next block's arbitrage at two slice ends a minute apart:
    the member must be off its peg in every fit of the minute."""
    market = Market()
    market.calm(2 * 3600)
    found = []
    for k in range(10):
        blip = 1.02 if k in (2, 2 + 60 // SLICE) else 1.0
        found += market.step(USDT=blip)
        market.usd["USDT"] /= blip
    assert found == []


def test_a_market_that_moves_a_lot_needs_larger_moves():
    """A market whose assets move about 3 % every five minutes (the default simulated
    market's ten-minute days): its moves are judged against its own usual ones, not 5 %."""
    market = Market(noise=0.0005)
    rng = np.random.default_rng(5)
    volatile, wbtc = [], []
    for _ in range(4 * 3600 // SLICE):
        moves = {s: math.exp(0.006 * rng.normal()) for s in ("WETH", "WBTC", "UNI", "LINK")}
        volatile += market.step(**moves)
        wbtc.append(math.log(market.usd["WBTC"]))
    five_minutes = np.abs(np.subtract(wbtc[20:], wbtc[:-20]))
    assert np.sum(five_minutes[240:] >= math.log(1.05)) >= 20  # the floor alone: noise
    assert len(volatile) <= 2


def _summary(pool: str, start: int, price: float) -> SliceSummary:
    return SliceSummary(pool=pool, start=start, events=1, last_price=price)


def _inputs(market: Market, seconds: int, **moves):
    """(announcements, slices) for WatchMarket: calm, then one slice of ``moves``."""
    announcements = [
        {"chain_id": CHAIN, "dex": "uniswap_v3", "pool": pool, "token0": ADDRESS[base],
         "token1": ADDRESS[quote]}
        for pool, (base, quote) in POOLS.items()
    ]  # fmt: skip
    slices = []
    for k in range(seconds // SLICE + 1):
        for symbol, factor in moves.items() if k == seconds // SLICE else ():
            market.usd[symbol] *= factor
        for pool, price in market.prices().items():
            slices.append((f"{CHAIN}:uniswap_v3:{pool}", _summary(pool, k * SLICE, price)))
    return announcements, slices


def _expected_findings(announcements, slices) -> list[dict]:
    view = MarketView(SETTINGS)
    for a in announcements:
        view.announce(a["dex"], a["pool"], a["token0"], a["token1"])
    rows = []
    for end in sorted({s.start + SLICE for _, s in slices}):
        for _, s in slices:
            if s.start + SLICE == end:
                view.observe(s.pool, end, s.last_price)
        rows += [finding_row(CHAIN, f) for f in view.evaluate(end)]
    return rows


def _market_rows(rows):
    return sorted(r["event_id"] for r in rows if r["kind"] != "peg-pool")


def test_watch_market_finds_the_same_in_streaming_and_in_batch():
    announcements, slices = _inputs(Market(), 2 * 3600, WETH=0.9, WBTC=0.9, UNI=0.9, LINK=0.9)
    expected = _market_rows(_expected_findings(announcements, slices))
    assert len(expected) >= 1
    with TestPipeline() as p:
        found = (
            p | "A" >> beam.Create(announcements),
            p | "S" >> beam.Create(slices),
        ) | WatchMarket(Markets(SETTINGS), SLICE, streaming=False)
        assert_that(found | beam.combiners.ToList() | beam.Map(_market_rows), equal_to([expected]))
    stream = TestStream().advance_watermark_to(0)
    stream = stream.add_elements([TimestampedValue(("a", a), 0) for a in announcements])
    for start in range(0, 2 * 3600 + SLICE, 600):
        batch = [s for s in slices if start <= s[1].start < start + 600]
        # Each slice arrives before its end, as the pipeline's early panes do.
        stream = stream.add_elements(
            [TimestampedValue(("s", s), s[1].start + SLICE - 1) for s in batch]
        ).advance_watermark_to(start + 600)
    stream = stream.advance_watermark_to_infinity()
    options = PipelineOptions(runner="BundleBasedDirectRunner", streaming=True)
    with TestPipeline(options=options) as p:
        both = p | stream
        pools = both | beam.Filter(lambda x: x[0] == "a") | "Ann" >> beam.Map(lambda x: x[1])
        prices = (
            both
            | beam.Filter(lambda x: x[0] == "s")
            | "Slc" >> beam.Map(lambda x: (x[1][0], (1, x[1][1])))
        )
        found = (pools, prices) | WatchMarket(Markets(SETTINGS), SLICE, streaming=True)
        assert_that(found, lambda rows: _check(_market_rows(rows), expected))


def _check(got, expected) -> None:
    assert got == expected


def _anomaly(pool: str, end: int, feature: str = "price_change") -> dict:
    features = {**dict.fromkeys(FEATURE_NAMES, 0.0), feature: 0.12}
    return {
        **features,
        "window_id": f"{CHAIN}:{pool}:{end}", "chain_id": CHAIN, "dex": "uniswap_v3",
        "pool": pool, "source": "chain", "window_start": datetime.fromtimestamp(end - 60, UTC),
        "window_end": datetime.fromtimestamp(end, UTC), "events": 10, "score": -0.2,
        "is_anomaly": True, "model_version": "m", "patterns": None,
        "top_features": orjson.dumps([{"name": feature, "value": 0.12, "deviation": 30}]).decode(),
    }  # fmt: skip


def _market_finding(at: int, pools: list[str]) -> dict:
    return {
        "event_id": f"{CHAIN}:market:{at}", "chain_id": CHAIN, "scope": "market",
        "kind": "market-move", "window_start": datetime.fromtimestamp(at - 300, UTC),
        "window_end": datetime.fromtimestamp(at, UTC), "size": math.log(0.92),
        "pools": orjson.dumps([{"dex": "uniswap_v3", "pool": p} for p in pools]).decode(),
        "severity": "medium", "evidence": orjson.dumps(["market-move: -8.0%"]).decode(),
    }  # fmt: skip


def _alerts(outputs) -> list:
    return [value for tag, value in outputs if tag == "alerts"]


def test_a_market_move_takes_the_pool_anomalies_it_explains_into_one_alert():
    threads = ChainThreads(cooldown_s=300, hold_s=SLICE + 1)
    t = 10_000
    held = threads.add(_anomaly("weth-usdc", t)) + threads.add(_anomaly("wbtc-usdc", t))
    assert held == []  # price anomalies wait for the market's view of their moment
    out = threads.add_finding(_market_finding(t, ["weth-usdc", "wbtc-usdc"]))
    out += threads.release(t + SLICE + 1)
    (alert,) = _alerts(out)
    assert alert.scope == "market" and alert.kind == "market-move"
    assert {p.pool for p in alert.pools} == {"weth-usdc", "wbtc-usdc"}
    anomalies = [v for tag, v in out if tag == "anomalies"]
    assert {a["alert_id"] for a in anomalies} == {alert.alert_id}
    # A drain in the middle of it is still its pool's own alert.
    drain = threads.add(_anomaly("weth-usdc", t + 30, "liquidity_removed_share"))
    (own,) = _alerts(drain)
    assert own.scope == "pool" and own.kind != "market-move"


def test_without_a_market_finding_a_held_anomaly_is_its_pools_alert():
    threads = ChainThreads(cooldown_s=300, hold_s=SLICE + 1)
    assert threads.add(_anomaly("wbtc-usdc", 10_000)) == []
    (alert,) = _alerts(threads.release(10_000 + SLICE + 1))
    assert alert.scope == "pool" and alert.pool == "wbtc-usdc"
    assert alert.kind == "price-dislocation"


def test_the_live_simulators_mailbox_hands_each_move_over_once(tmp_path):
    """`dexwatch simulate inject --kind depeg` beside a live simulator: the move it asks for
    reaches the simulator once, and one asked before the simulator started does not."""
    ShiftRequests(tmp_path).send(MarketEvent("market-move", {"WETH": 0.92}, 6.0))
    simulator_side = ShiftRequests(tmp_path)
    assert simulator_side.receive() == []
    ShiftRequests(tmp_path).send(MarketEvent("depeg", {"DAI": 0.9}, 3600.0))
    assert simulator_side.receive() == [({"DAI": 0.9}, 3600.0)]
    assert simulator_side.receive() == []


def test_a_drained_pool_no_longer_prices_its_assets():
    """A rug pull takes 90 % of USDT/USDC's liquidity in one slice; its price then swings
    with every swap: USDT's peg is not judged on it, nor is a lone move seen. Liquidity in
    range falling as the price leaves narrow positions (nothing removed) is no drain."""
    market = Market()
    for k in range(2 * 3600 // SLICE):
        market.at += SLICE
        for pool, price in market.prices().items():
            level = 1e6 if k % 2 else 1e5  # in-range liquidity coming and going
            market.view.observe(pool, market.at, price, liquidity=level)
        assert market.view.evaluate(market.at) == []
    market.at += SLICE
    for pool, price in market.prices().items():
        removed = 9e5 if pool == "usdt-usdc" else 0.0
        market.view.observe(pool, market.at, price, liquidity=1e5, removed=removed)
    assert market.view.evaluate(market.at) == []
    for k in range(40):
        market.at += SLICE
        for pool, price in market.prices().items():
            price = price * (0.75 if k % 2 else 1.3) if pool == "usdt-usdc" else price
            market.view.observe(pool, market.at, price, liquidity=1e5)
        assert market.view.evaluate(market.at) == []
    (move,) = market.step(**dict.fromkeys(["WETH", "WBTC", "UNI", "LINK"], 0.92))
    assert move.kind == "market-move"  # the others still price the market


def test_a_pools_own_move_while_its_thread_is_open_joins_that_thread():
    threads = ChainThreads(cooldown_s=300, hold_s=SLICE + 1)
    t = 10_000
    (_, drain), (_, alert) = threads.add(_anomaly("wbtc-usdc", t, "liquidity_removed_share"))
    finding = {
        **_market_finding(t + 120, ["wbtc-usdc"]), "scope": "pool:wbtc-usdc",
        "kind": "price-dislocation", "event_id": f"{CHAIN}:pool:wbtc-usdc:{t + 120}",
    }  # fmt: skip
    assert threads.add_finding(finding) == [
        ("market_events", {**finding, "alert_id": alert.alert_id})
    ]


def test_after_a_market_move_only_the_pools_slow_catch_up_is_the_markets():
    """Half an hour after a market move its pools' hour-long price anchors still lag (their
    price_drift_1h anomalies are the move's); a pool's own fast move then is its own."""
    threads = ChainThreads(cooldown_s=300, hold_s=SLICE + 1)
    t = 10_000
    threads.add_finding(_market_finding(t, ["weth-usdc", "wbtc-usdc"]))
    later = t + 1800
    threads.add(_anomaly("weth-usdc", later, "price_drift_1h"))
    threads.add(_anomaly("wbtc-usdc", later, "price_change"))
    out = threads.release(later + SLICE + 1)
    by_pool = {v["pool"]: v["alert_id"] for tag, v in out if tag == "anomalies"}
    assert by_pool["weth-usdc"] == f"{CHAIN}:market:{t}"
    (alert,) = _alerts(out)
    assert alert.scope == "pool" and by_pool["wbtc-usdc"] == alert.alert_id


def test_a_peg_pools_small_move_is_recorded_and_a_pump_is_its_alert():
    """DAI/USDC wiggling 0.3 % is within its peg (no alert, the row kept with no thread); a
    rug's 12 % pump of it is the pool's own incident."""
    threads = ChainThreads(cooldown_s=300, hold_s=SLICE + 1)
    threads.add_finding({"kind": "peg-pool", "pool": "dai-usdc"})
    t = 10_000
    small = {**_anomaly("dai-usdc", t), "price_change": 0.003}
    threads.add(small)
    out = threads.release(t + SLICE + 1)
    assert _alerts(out) == [] and [v["alert_id"] for tag, v in out if tag == "anomalies"] == [""]
    threads.add(_anomaly("dai-usdc", t + 3600))
    (alert,) = _alerts(threads.release(t + 3600 + SLICE + 1))
    assert alert.scope == "pool" and alert.pool == "dai-usdc"


def test_providers_re_ranging_after_a_market_move_is_the_markets():
    """A quarter of an hour after a market move, a pool it moved takes half its liquidity
    anew around the new price (the providers' narrow positions): the move's thread's."""
    threads = ChainThreads(cooldown_s=300, hold_s=SLICE + 1)
    t = 10_000
    threads.add_finding(_market_finding(t, ["weth-usdc", "wbtc-usdc"]))
    later = t + 900
    row = {**_anomaly("wbtc-usdc", later, "net_liquidity_change"), "net_liquidity_change": 2.0}
    threads.add(row)
    out = threads.release(later + SLICE + 1)
    assert _alerts(out) == []
    assert [v["alert_id"] for tag, v in out if tag == "anomalies"] == [f"{CHAIN}:market:{t}"]


def _on_chain(chain_id: int, announcements, slices):
    """The same pools on another chain (announcements and slice keys of ``chain_id``)."""
    moved = [{**a, "chain_id": chain_id} for a in announcements]
    return moved, [(key.replace(f"{CHAIN}:", f"{chain_id}:", 1), s) for key, s in slices]


def test_each_chain_has_its_own_market_and_assets():
    """A market move on one chain is that chain's alone; a chain whose market section has no
    assets has no market view, though its pools move alike."""
    moved = _inputs(Market(), 2 * 3600, WETH=0.9, WBTC=0.9, UNI=0.9, LINK=0.9)
    expected = _market_rows(_expected_findings(*moved))
    assert expected
    calm = _on_chain(137, *_inputs(Market(seed=2), 2 * 3600))
    unpriced = _on_chain(10, *_inputs(Market(seed=3), 2 * 3600, WETH=0.9, WBTC=0.9, UNI=0.9))
    markets = Markets(MarketSettings(), {CHAIN: SETTINGS, 137: SETTINGS})
    with TestPipeline() as p:
        found = (
            p | "A" >> beam.Create(moved[0] + calm[0] + unpriced[0]),
            p | "S" >> beam.Create(moved[1] + calm[1] + unpriced[1]),
        ) | WatchMarket(markets, SLICE, streaming=False)
        assert_that(found | beam.combiners.ToList() | beam.Map(_market_rows), equal_to([expected]))
