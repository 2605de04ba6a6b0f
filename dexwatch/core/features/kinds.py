"""What an anomalous chain window is: its alert kind, confidence and size, from a documented
rule over its features (``dexwatch.core.features.chain``), not from its top feature alone.

The model says *that* a window is abnormal, and which features deviate most from what it
learned. The rule says *what* it is, from the sizes those features measure. The first test
that holds names the kind:

1. ``rug-pull``: most of the pool gone: 80 % or more of its liquidity removed in the window,
   net (``liquidity_removed_share`` and ``-net_liquidity_change``), or lost over the hour
   (``liquidity_lost_1h``).
2. ``liquidity-drain``: 10 % or more of the pool removed in the window, net of what was
   added (``liquidity_removed_share`` and ``-net_liquidity_change`` both), or lost over the
   hour. A provider's ordinary exit is less, and names nothing. The day's loss
   (``liquidity_lost_24h``) tests nothing: a drain hours ago must not name the pool's next
   incident; a window flagged for it alone is named by its top feature.
3. ``sandwich``: a sandwich in the window's blocks (``sandwiches``; the row's ``patterns``
   list each: attacker, front and back transactions, victims' transactions, value taken).
4. ``round-trips``: one trader's round trips through the pool (its swap and its swap back,
   nobody between, ``dexwatch.core.features.blocks``) in 3 blocks of the window or more:
   a flash loan's shape repeated (moving the price and back within a block, over and over),
   or volume made at the cost of fees. The row's ``patterns`` list each.
5. ``wash-trading``: one pair of addresses out-trading the whole pool both ways
   (``pair_two_way_excess`` of 6 Poisson deviations, the incident floor), six crossed swaps
   in the window's blocks (``crossed_swaps``, its floor: two addresses trading the same
   amount back and forth, however the rest of the pool trades), or two addresses
   with 80 % of a busy window's volume (``top_trader_share``) while volume is up 3-fold and
   the price stays within 3 % (one trader's large swap that moves the price is not washing).
6. ``price-dislocation``: the price moved 3 % or more (``price_change``, ``price_range`` or
   one swap's ``max_swap_price_impact``), and the model found a price feature among the
   most deviating: a thin pool moves 3 % in an ordinary minute, and a window flagged for
   its liquidity alone (a slow drain thinning the pool) is not named by that. A slow drift
   (``price_drift_1h``, in units of the pool's usual drift, not a size) tests nothing, but
   counts for the kind's confidence and names it when it deviates most.
7. ``liquidity-inflow``: half the pool or more added, net.
8. ``volume-spike``: ``volume_ratio`` of log 5 or more, or the last hour's volume at 5 times
   the pool's usual hour or more (``volume_1h_vs_usual``). ``volume_ratio`` measures volume
   in "typical seconds" of the baseline and the window together, so the window's own
   volume raises its unit: log 5 is about 25 times the baseline's rate with the default
   window and baseline (4 and 20 slices), 20 times reads as about 4.7.
9. ``activity-spike``: swaps at 5 times the baseline's rate or more (``swap_count_ratio``).

When no test holds, the kind of the most deviating feature is kept (``kind_of``).

``confidence``: 0.5 when a test holds, plus half the share of the top features' deviation
that the kind's own features carry (the model agrees with the sizes); when none holds, half
that share for the top feature's kind. ``severity``: from the incident's size (a half of the
pool or a 20 % move is high; a tenth of the pool or a 5 % move is medium), or from the score
(``severity_of``), whichever is higher. A chain window measures volume in token units, not
USD: USD value is not part of its size here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dexwatch.core.features.blocks import round_trips_in, sandwiches_in
from dexwatch.core.schemas.alert import (
    SEVERITY_RANK,
    Severity,
    TopFeature,
    kind_and_confidence,
    kind_of,
    severity_of,
)

_Test = Callable[[Mapping[str, float]], bool]


def _removed(f: Mapping[str, float]) -> float:
    """The share of the pool taken out: in the window, net of what was added, or over the
    hour, whichever is more."""
    window = min(f["liquidity_removed_share"], max(0.0, -f["net_liquidity_change"]))
    return max(window, f["liquidity_lost_1h"])


# Round trips of one trader in this many blocks of a window are repeated: one is an
# arbitrageur's correction, a flash loan's shape over and over is not.
REPEATED_ROUND_TRIPS = 3


def _round_trip_blocks(f: Mapping[str, object]) -> int:
    """The most blocks of the window one trader made round trips in."""
    patterns = f.get("patterns")
    blocks: dict[str, set[int]] = {}
    for trip in round_trips_in(patterns if isinstance(patterns, str) else None):
        blocks.setdefault(trip.trader, set()).add(trip.block_number)
    return max((len(b) for b in blocks.values()), default=0)


def _price_move(f: Mapping[str, float]) -> float:
    """The largest price move the window shows, as a log."""
    return max(f["price_change"], f["price_range"], f["max_swap_price_impact"])


@dataclass(frozen=True)
class _Kind:
    name: str
    features: tuple[str, ...]  # what it rests on
    holds: _Test
    # The size alone is ordinary for some pools: the test holds only if one of the kind's
    # features is also among the model's most deviating.
    needs_deviation: bool = False

    def names(self, features: Mapping[str, float], deviating: set[str]) -> bool:
        if self.needs_deviation and not deviating.intersection(self.features):
            return False
        return self.holds(features)


_LIQUIDITY = (
    "liquidity_removed_share", "net_liquidity_change", "liquidity_lost_1h", "liquidity_lost_24h",
)  # fmt: skip
_PRICE = ("price_change", "price_range", "max_swap_price_impact")
# In order: the first whose test holds names the window.
KIND_RULE: tuple[_Kind, ...] = (
    _Kind("rug-pull", _LIQUIDITY, lambda f: _removed(f) >= 0.8),
    _Kind("liquidity-drain", _LIQUIDITY, lambda f: _removed(f) >= 0.1),
    _Kind("sandwich", ("sandwiches",), lambda f: f["sandwiches"] >= 1),
    _Kind("round-trips", ("volume_ratio", "max_swap_price_impact", "top_trader_share"),
          lambda f: _round_trip_blocks(f) >= REPEATED_ROUND_TRIPS),
    _Kind(
        "wash-trading",
        ("pair_two_way_excess", "crossed_swaps", "top_trader_share", "volume_ratio"),
        lambda f: f["pair_two_way_excess"] >= 6.0
        or f["crossed_swaps"] >= 6.0
        or (f["top_trader_share"] >= 0.8 and f["volume_ratio"] >= math.log(3)
            and _price_move(f) < math.log(1.03)),
    ),
    _Kind("price-dislocation", (*_PRICE, "price_drift_1h"),
          lambda f: _price_move(f) >= math.log(1.03), needs_deviation=True),
    _Kind("liquidity-inflow", ("net_liquidity_change",),
          lambda f: f["net_liquidity_change"] >= 0.5),
    _Kind("volume-spike", ("volume_ratio", "volume_1h_vs_usual"),
          lambda f: max(f["volume_ratio"], f["volume_1h_vs_usual"]) >= math.log(5)),
    _Kind("activity-spike", ("swap_count_ratio",), lambda f: f["swap_count_ratio"] >= math.log(5)),
)  # fmt: skip


@dataclass(frozen=True)
class Classification:
    """An anomalous window's kind, how sure it is (0 to 1), its severity, and the evidence
    in words (the test that held first, then the top features)."""

    kind: str
    confidence: float
    severity: Severity
    evidence: list[str]


def size_severity(features: Mapping[str, float]) -> Severity:
    """Severity from the incident's size: the share of the pool taken and the price move."""
    removed, move = _removed(features), _price_move(features)
    if removed >= 0.5 or move >= math.log(1.2):
        return "high"
    if removed >= 0.1 or move >= math.log(1.05):
        return "medium"
    return "low"


def classify(features: Mapping[str, float], top: list[TopFeature], score: float) -> Classification:
    """The rule of this module applied to one anomalous chain window.

    Args:
        features: the window's feature values, by name.
        top: its most deviating features, strongest first (the model's explanation).
        score: its Isolation Forest decision value (below 0: anomalous).
    """
    total = sum(abs(t.deviation) for t in top) or 1.0
    words = [f"{t.name} = {t.value:.4g} ({t.deviation:+.1f} robust sd)" for t in top]
    by_score, by_size = severity_of(score), size_severity(features)
    severity = max(by_score, by_size, key=SEVERITY_RANK.__getitem__)
    deviating = {t.name for t in top}
    for kind in KIND_RULE:
        if kind.names(features, deviating):
            carried = sum(abs(t.deviation) for t in top if t.name in kind.features) / total
            shown = ", ".join(f"{name} = {features[name]:.4g}" for name in kind.features)
            return Classification(
                kind.name, round(0.5 + 0.5 * carried, 3), severity,
                [f"{kind.name}: {shown}", *_pattern_words(features), *words],
            )  # fmt: skip
    if not top:
        return Classification("other", 0.0, severity, [])
    first = top[0]
    kind = kind_of(first.name, first.value, first.deviation)
    confidence = round(0.5 * abs(first.deviation) / total, 3)
    return Classification(kind, confidence, severity, [f"{kind}: no size test held", *words])


def _pattern_words(row: Mapping[str, object]) -> list[str]:
    """The row's same-block patterns, in words: who sandwiched whom, and what it took; whose
    round trips, in how many blocks, at what cost."""
    patterns = row.get("patterns")
    patterns = patterns if isinstance(patterns, str) else None
    words = [
        f"sandwich in block {s.block_number}: {s.attacker} around "
        f"{len(s.victim_txs)} victim transaction(s) ({', '.join(s.victim_txs)}), taking about "
        f"{s.extracted:.6g} token1 units (front {s.front_tx}, back {s.back_tx})"
        for s in sandwiches_in(patterns)
    ]
    trips: dict[str, list] = {}
    for trip in round_trips_in(patterns):
        trips.setdefault(trip.trader, []).append(trip)
    for trader, made in sorted(trips.items(), key=lambda item: -len(item[1])):
        blocks = sorted({t.block_number for t in made})
        moved, cost = sum(t.amount0 for t in made), sum(t.cost for t in made)
        words.append(
            f"round trips: {trader} swapped and swapped back {len(made)} time(s) in "
            f"{len(blocks)} block(s) ({blocks[0]} to {blocks[-1]}), {moved:.6g} token0 units "
            f"through the pool, at a cost of {cost:.6g} token1 units"
        )
    return words


def by_top_feature(top: list[TopFeature], score: float) -> Classification:
    """An anomalous hourly row's kind: its top feature's (``kind_and_confidence``), its
    severity from the score. Hourly rows measure no sizes this rule could test."""
    kind, confidence, evidence = kind_and_confidence(top)
    return Classification(kind, confidence, severity_of(score), evidence)
