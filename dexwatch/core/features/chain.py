"""Chain-window features: their definitions, written once for training and serving.

The pipeline cuts each pool's events into fixed event-time *slices* (``SliceSummary``, a few
seconds to a minute long), then looks at a sliding stretch of slices ending at a window end:
the last ``current`` slices are the window under test, the earlier ones its *baseline*, the
pool's own recent history. Every feature compares the window with that baseline or with the
pool's own liquidity, so a $100k pool and a $100M pool give comparable numbers.

Amounts are in the pool's token1 units (volume) and in liquidity units (V3: L; V2: the square
root of the reserves' product, the same quantity); only their ratios reach the features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dexwatch.core.features.rates import DecayedRates, fold_rates
from dexwatch.core.features.slices import Position, SliceSummary, is_range_order

# 2: swap impact includes the step into each slice; 3: pair_two_way_excess (wash trading);
# 4: liquidity in range only, net of just-in-time liquidity; 5: traders by tx sender;
# 6: liquidity_lost_1h; 7: a range order's round trip within the window and baseline nets out;
# 8: a window without a baseline compares its rates with the pool's decayed ones;
# 9: price_drift_1h; 10: liquidity_lost_24h; 11: volume_1h_vs_usual; 12: sandwiches;
# 13: crossed_swaps
FEATURES_VERSION = 13

# (name, definition), in the order the model sees them.
FEATURE_DEFINITIONS: tuple[tuple[str, str], ...] = (
    (
        "volume_ratio",
        "log of (swap volume per second in the window + 1) over (the same in the baseline + 1), "
        "volume in token1 units",
    ),
    (
        "swap_count_ratio",
        "log of (swaps per minute in the window + 1) over (the same in the baseline + 1)",
    ),
    (
        "liquidity_removed_share",
        "liquidity removed by Burns in the window over the pool's liquidity before it; V3: "
        "positions in range at the time only, net of just-in-time liquidity, those narrower "
        "than DEPTH_BAND_TICKS in proportion to their width",
    ),
    (
        "net_liquidity_change",
        "(liquidity added by Mints - removed by Burns) in the window over the pool's liquidity "
        "before it; V3: counted as for liquidity_removed_share",
    ),
    (
        "price_change",
        "absolute log change of the pool price from the baseline's last price to the window's "
        "last price",
    ),
    ("price_range", "log of the highest over the lowest pool price seen in the window"),
    (
        "max_swap_price_impact",
        "largest absolute log price move caused by a single swap in the window",
    ),
    (
        "top_trader_share",
        "share of the window's swap volume traded by its two busiest traders (transaction "
        "senders; swap recipients where the node did not say), times min(1, swaps / 20) so "
        "that a quiet window with two swaps is not 'concentrated'",
    ),
    (
        "pair_two_way_excess",
        "(the most two-way swaps of one slice of the window - the baseline's swaps per slice) "
        "over sqrt(the baseline's swaps per slice + 1): by how many Poisson standard "
        "deviations of the pool's usual count one pair of addresses trading against each "
        "other out-trades the whole pool; a slice's two-way swaps are those in which its two "
        "busiest traders (by swaps) A and B take opposite sides: 2 * (min(A's buys, B's "
        "sells) + min(A's sells, B's buys))",
    ),
    (
        "liquidity_lost_1h",
        "share of the pool's liquidity lost, net, over the hour ending with the window: 1 - "
        "the product over the hour's slices of (1 + the slice's net liquidity change over the "
        "level before it), counted as for net_liquidity_change; 0 if it gained "
        "(dexwatch.core.features.horizon)",
    ),
    (
        "price_drift_1h",
        "|the window's last log price - the pool's anchor| over the pool's usual such gap: the "
        "anchor is its log price averaged over time with weights exp(-age / 1 h), the usual "
        "gap the root mean square of each earlier price's gap from the anchor of its time, "
        "weighted exp(-age / 6 h); 0 for a pool seen less than half an hour "
        "(dexwatch.core.features.rates)",
    ),
    (
        "liquidity_lost_24h",
        "share of the pool's liquidity lost, net, over the day ending with the window, counted "
        "as liquidity_lost_1h over the day's slices but for those that moved a tenth of the "
        "pool or more (fast: the window's and the hour's) (dexwatch.core.features.horizon)",
    ),
    (
        "volume_1h_vs_usual",
        "log of (the pool's volume over the last hour + m / 10) over (its usual volume for the "
        "clock hour + m / 10): the last hour's volume weighted exp(-age / 1 h), the window's "
        "included; the usual the larger of the same clock hour's mean over previous days "
        "(weighted exp(-days / 7)) and m, the mean hour of those days; 0 until the pool has "
        "lived through that clock hour on an earlier day (dexwatch.core.features.rates)",
    ),
    (
        "sandwiches",
        "sandwiches in the window's blocks: one trader's swap, other traders' swaps the same "
        "way, the first trader's swap back, in one block and separate transactions, at a "
        "profit (dexwatch.core.features.blocks); each listed in the row's patterns",
    ),
    (
        "crossed_swaps",
        "crossed swaps in the window's blocks, in pairs: one trader's swap and another "
        "trader's swap back right after it in the block, of the same token0 within a tenth "
        "(dexwatch.core.features.blocks): two addresses trading with each other, wash "
        "trading counted in blocks, not seconds",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURE_DEFINITIONS)

# What an incident means, whatever training saw: a window at or past one of these values is
# always anomalous (model.training keeps each learned limit inside its floor). Half of a
# pool's liquidity removed within minutes (a drain), or lost net of what came in; a 10 %
# price move, kept, reverted within the window or one swap's doing; one pair out-trading the
# pool by 6 Poisson deviations in a slice (the tuning day's busiest pair: 4.3; at 2.5x a
# short bootstrap's largest, 8.3, a tenth of the injected wash bursts went through); half of
# the pool lost within the hour, however slowly (the tuning day's largest hourly loss: 1.3 %),
# or within the day; an hour of ten times the pool's usual volume; one sandwich; six crossed
# swaps (two addresses trading the same amount back and forth: the real tuning day's most in
# a window was one, the simulated history of both local chains' three; a wash of two such
# pairs a block reaches six in its third block, whatever the block time).
# A floor below the feature's usual values (net_liquidity_change) is one for its fall.
# Features of ``LIMITS_AT_FLOOR`` have their floor as their limit.
INCIDENT_FLOORS: dict[str, float] = {
    "liquidity_removed_share": 0.5,
    "liquidity_lost_1h": 0.5,
    "liquidity_lost_24h": 0.5,
    "net_liquidity_change": -0.5,
    "price_change": math.log(1.1),
    "price_range": math.log(1.1),
    "max_swap_price_impact": math.log(1.1),
    "pair_two_way_excess": 6.0,
    "volume_1h_vs_usual": math.log(10),
    "sandwiches": 1.0,
    "crossed_swaps": 6.0,
}

# The span each slow view measures (seconds): an alert thread flagged for one stays open that
# long after its last window (beam_pipelines.transforms.threads.AlertThreads), so an hour-long
# drift or build-up that comes and goes about its limit is one thread, not one per crossing.
HORIZON_OF_FEATURE: dict[str, int] = {
    "liquidity_lost_1h": 3600,
    "price_drift_1h": 3600,
    "volume_1h_vs_usual": 3600,
    "liquidity_lost_24h": 86_400,
    # A pool sandwiched again and again: one thread while it goes on.
    "sandwiches": 3600,
}

# Features whose limit is their floor, whatever training saw: training rarely spans the days
# they need (a bootstrap's hours never see a pool's previous days), so a learned limit would
# rest on nothing. An hour of ten times the pool's usual volume for that hour: chosen on the
# first two of five weeks of a real pool's minute bars, whose largest hour was 4.3 times
# (``bench/real_minutes.py`` reports the three weeks after).
# A sandwich is an incident by its shape, however rare in training: one is the limit; so are
# six crossed swaps.
LIMITS_AT_FLOOR: tuple[str, ...] = ("volume_1h_vs_usual", "sandwiches", "crossed_swaps")

# Features whose rise is no incident on its own, only their fall: liquidity coming into a
# pool is a provider's deposit. Mainnet pools take Mints of 7.5x their in-range liquidity on
# ordinary days (the recorded Ethereum day of the real-traffic issue), and the tuning day's
# inflows of 2-6 % were its trained models' only alerts. The window still carries the rise,
# for the forest and as evidence; a TVL spike is the hourly path's, in USD
# (``tvl_rate_24h``).
BENIGN_RISES: tuple[str, ...] = ("net_liquidity_change",)

# Features that inform the forest and the alert's kind but never flag a window alone: two
# addresses carrying most of a busy minute's volume is what routers (recordings without
# senders) and arbitrage bots do all day. The tuning day's trained-on-simulator model raised
# four alerts on that alone. Wash trading is the pair trading both ways
# (pair_two_way_excess), which keeps its limit and floor.
CHAIN_CONTEXT_FEATURES: tuple[str, ...] = ("top_trader_share",)

# Below this many swaps, concentration of volume says little.
_CONCENTRATION_MIN_SWAPS = 20


def window_features(
    slices: Sequence[SliceSummary],
    window_end: int,
    slice_s: int,
    current_slices: int,
    carry: SliceSummary | None = None,
    hour_steps: Sequence[float] = (),
    rates: DecayedRates | None = None,
    day_steps: Sequence[float] = (),
) -> dict[str, float] | None:
    """The features of the window made of the ``current_slices`` slices before
    ``window_end``, against the slices before them. None if the window saw no event.

    Args:
        carry: the pool's last slice before the window's span, for a pool that was silent
            through its baseline: its liquidity, price and tick stand in for the baseline's
            (a drain after a silence is measured against the pool as it was), while the
            rates (volume, swaps) have nothing to compare with and count as usual, but for
            one pair's two-way trading, measured against the silence.
        hour_steps: the liquidity steps (``horizon.hour_steps``) of the pool's slices in the
            hour before ``window_end``, in time order.
        day_steps: the same steps over the day before ``window_end``, the fast ones left out
            (``horizon.slow_steps``).
        rates: the pool's decayed rates from its slices before the window's span: a window
            without a baseline compares its rates with them, and its price with the pool's
            price habits, the baseline's prices folded in (``features.rates``).
    """
    current_start = window_end - current_slices * slice_s
    ordered = sorted(slices, key=lambda s: s.start)
    current = [s for s in ordered if s.start >= current_start]
    baseline = [s for s in ordered if s.start < current_start]
    if not current:
        return None
    price_habits = fold_rates(rates, baseline, slice_s) if rates is not None else None
    current_s = current_slices * slice_s
    volume = sum(s.volume for s in current)
    swaps = sum(s.swaps for s in current)
    if baseline:
        baseline_s = max(slice_s, current_start - baseline[0].start)
        base_volume = sum(s.volume for s in baseline)
        base_swaps = sum(s.swaps for s in baseline)
        usual = base_swaps * slice_s / baseline_s
    else:
        # The pool's habits stand in for the baseline's rates; without them (a pool too new)
        # the window's own, so that the ratios are neutral. One pair trading both ways is
        # measured against the pool's silence before it.
        habits = rates.per_second(current_start) if rates is not None else None
        baseline_s, base_volume, base_swaps = current_s, volume, swaps
        if habits is not None:
            base_volume, base_swaps = habits[0] * current_s, habits[1] * current_s
        usual = 0.0
        if carry is not None:
            usual = carry.swaps * slice_s / max(slice_s, current_start - carry.start)
        baseline = [carry] if carry is not None else []
    # Units differ per pool: scale volumes by the pool's typical volume per second, so the
    # +1 below is "one typical second", whatever the token.
    unit = (base_volume + volume) / (baseline_s + current_s) or 1.0
    volume_ratio = math.log((volume / current_s / unit + 1) / (base_volume / baseline_s / unit + 1))
    swap_count_ratio = math.log((swaps * 60 / current_s + 1) / (base_swaps * 60 / baseline_s + 1))

    level = liquidity_before(baseline, current)
    added, removed = liquidity_changes(baseline, current)
    removed_share = min(removed / level, 1.0) if level else 0.0
    net_change = max(min((added - removed) / level, 10.0), -1.0) if level else 0.0

    last_price = next((s.last_price for s in reversed(current) if s.last_price), None)
    base_price = next((s.last_price for s in reversed(baseline) if s.last_price), None)
    if base_price is None:
        base_price = next((s.first_price for s in current if s.first_price), None)
    price_change = abs(math.log(last_price / base_price)) if last_price and base_price else 0.0
    drift = price_habits.drift(current_start, last_price) if price_habits and last_price else 0.0
    hour_volume = (
        price_habits.hour_vs_usual(current_start, volume, current_s) if price_habits else 0.0
    )
    lows = [s.min_price for s in current if s.min_price]
    highs = [s.max_price for s in current if s.max_price]
    price_range = math.log(max(highs) / min(lows)) if lows and highs else 0.0
    impact = max((s.max_swap_impact for s in current), default=0.0)
    # A slice's impacts start at its first price: the step from the slice before counts too
    # (a manipulation's swap may open a slice).
    previous = base_price if baseline else None
    for s in current:
        if previous and s.first_price:
            impact = max(impact, abs(math.log(s.first_price / previous)))
        previous = s.last_price or previous

    traders: dict[str, float] = {}
    for s in current:
        for trader, amount in s.trader_volume.items():
            traders[trader] = traders.get(trader, 0.0) + amount
    top_two = sum(sorted(traders.values(), reverse=True)[:2])
    concentration = (top_two / volume if volume else 0.0) * min(
        1.0, swaps / _CONCENTRATION_MIN_SWAPS
    )
    # Per slice, against the baseline's swaps per slice: a burst shorter than the window
    # would be diluted by the window's other slices. Swap counts are about Poisson, so the
    # excess is in units of the usual count's noise; a log ratio left normal tails too close.
    two_way = max(s.pair_two_way_swaps for s in current)
    pair_two_way_excess = (two_way - usual) / math.sqrt(usual + 1)
    return {
        "volume_ratio": volume_ratio,
        "swap_count_ratio": swap_count_ratio,
        "liquidity_removed_share": removed_share,
        "net_liquidity_change": net_change,
        "price_change": price_change,
        "price_range": price_range,
        "max_swap_price_impact": impact,
        "top_trader_share": concentration,
        "pair_two_way_excess": pair_two_way_excess,
        "liquidity_lost_1h": max(0.0, -math.expm1(sum(hour_steps))),
        "price_drift_1h": drift,
        "liquidity_lost_24h": max(0.0, -math.expm1(sum(day_steps))),
        "volume_1h_vs_usual": hour_volume,
        "sandwiches": float(sum(len(s.sandwiches) for s in current)),
        "crossed_swaps": float(sum(s.crossed_swaps for s in current)),
    }


def liquidity_changes(
    baseline: Sequence[SliceSummary],
    current: Sequence[SliceSummary],
    trips_from_baseline: bool = True,
) -> tuple[float, float]:
    """Liquidity added and removed in the window's slices, with the changes that came
    before a slice's first swap counted if their range held the tick before the slice (or
    if no tick is known: a V3 pool's first events).

    A range order's removal (a V3 position narrower than DEPTH_BAND_TICKS), up to what the
    same position added earlier in the window or its baseline, is a round trip and counts on
    neither side: the order was placed and withdrawn, and the pool is back where it was
    (mainnet's one-tick range orders, in the real-traffic issue; a real Polygon pool's orders
    of 10-30 ticks, taken back seconds after they came). A wider position taken out minutes
    after it came is a rug's shape, and counts. The window's own adds are taken first, so
    that the net change stays as it was where it can.

    Args:
        trips_from_baseline: False to net only round trips within ``current``: a chain of
            per-slice steps (``horizon``) has counted the baseline's adds already.
    """
    tick = None
    added = removed = 0.0
    # Per position: what the baseline added, and what the window added, not yet taken out.
    held: dict[Position, float] = {}
    fresh: dict[Position, float] = {}
    for index, s in enumerate([*baseline, *current]):
        flows = {p: [a, s.position_removed.get(p, 0.0)] for p, a in s.position_added.items()}
        for p, r in s.position_removed.items():
            flows.setdefault(p, [0.0, r])
        s_added, s_removed = s.liquidity_added, s.liquidity_removed
        for position, change in s.pending_liquidity:
            _, tick_lower, tick_upper = position
            if tick is None or tick_lower <= tick < tick_upper:
                s_added += max(change, 0.0)
                s_removed += max(-change, 0.0)
                if is_range_order(position):
                    flow = flows.setdefault(position, [0.0, 0.0])
                    flow[0 if change > 0 else 1] += abs(change)
        if s.last_tick is not None:
            tick = s.last_tick
        if index < len(baseline):
            if not trips_from_baseline:
                continue
            for position, (a, r) in flows.items():
                held[position] = max(held.get(position, 0.0) + a - r, 0.0)
            continue
        added += s_added
        removed += s_removed
        for position, (a, r) in flows.items():
            from_window = min(r, fresh.get(position, 0.0) + a)
            from_baseline = min(r - from_window, held.get(position, 0.0))
            fresh[position] = fresh.get(position, 0.0) + a - from_window
            held[position] = held.get(position, 0.0) - from_baseline
            added -= from_window
            removed -= from_window + from_baseline
    return max(added, 0.0), max(removed, 0.0)


def liquidity_before(
    baseline: Sequence[SliceSummary], current: Sequence[SliceSummary]
) -> float | None:
    """The pool's liquidity just before the window: the last level the baseline saw, else the
    first level the window saw plus what the window removed before it; None if unknown: no
    level (a V3 pool without swaps), or adds made after the level was seen outweigh it (a
    launch's Mints after its first swap: the level before is unknown, not negative)."""
    for s in reversed(baseline):
        if s.last_liquidity:
            return s.last_liquidity
    first = next((s for s in current if s.first_liquidity), None)
    level = first.first_liquidity + first.liquidity_removed - first.liquidity_added if first else 0
    return level if level > 0 else None


def feature_vector(features: dict[str, float]) -> list[float]:
    return [float(features[name]) for name in FEATURE_NAMES]
