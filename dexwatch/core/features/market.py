"""The market around the pools: every configured asset's price from all the chain's pools at
once, the move common to them (the market factor), and the pegs that should hold.

A pool alone cannot tell its own dislocation from the market's move, nor a stablecoin's
depeg from a move of everything priced in it. ``MarketView`` prices the assets together:
at each slice end, a least-absolute-deviations fit of every asset's log price (its *level*)
to the last price of every pool holding two configured assets (``market_fit``). Then:

- **A peg** (assets of one ``peg``: USD stablecoins, WETH and staked ETH) holds while each
  member's level stays within ``peg_tolerance`` of the members' median. A member off it
  for a minute has *depegged* (with two members priced: the one already found off, else
  the one that moved against the floating assets over ``peg_horizon_s``). One ``depeg``
  finding names the asset and every pool that holds it.
- **The market factor** is the median floating asset's move over ``move_horizon_s``, in the
  numeraire assets that agree (a depegged one, or one's blip, left out), over the assets
  quoted in a pool against them (one priced only through another floating asset follows
  it). When it reaches ``move_threshold`` and at least ``min_assets_moved`` assets moved
  that much the same way, one ``market-move`` finding names the pools it moved. A move of
  one pool, or of one asset, leaves the median where it was: it stays that pool's incident.
- **A pool's own move**: a pool whose price moved 1.3 ``move_threshold`` or more over
  ``move_horizon_s`` beyond what the market factor explains (with three quoted floating
  assets or more) raises a ``price-dislocation`` finding of its own pool (scope
  ``pool:<address>``): an asset's lone move of 8 % is its pools' incident, the same move
  of every asset is the market's.
- **Peg pools** (both tokens of one peg, e.g. DAI/USDC) are the peg check's: their price
  moves within the tolerance are no incident.

Blind spots: a pool with a token not configured is not priced here (its moves stay its
own); with two assets in a peg, a depeg during a market move of a similar size can be
pinned on the wrong asset (configure three: real chains have USDC, USDT and DAI).

Same input, same findings: the view is fed slice by slice in time order, in streaming (at
the watermark) and in batch (``beam_pipelines.transforms.market``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dexwatch.core.features.market_fit import UsualMoves, fit_levels, spread
from dexwatch.core.features.slices import Position
from dexwatch.core.market_settings import MarketSettings
from dexwatch.core.schemas.alert import Severity

# Prices count for this long after their pool's last slice: a pool silent for a quarter of
# an hour no longer speaks for its assets (nobody arbitraged its last price).
STALE_AFTER_S = 900
# A pool that lost this share of its liquidity in one slice is drained: its price no longer
# says what its assets are worth.
_DRAINED_SHARE = 0.5
# A pool's own move must be larger than the market's (a pair of two floating assets, LINK/WETH,
# moves 5 % in five minutes in a hectic hour of the calibrated market): 8 % lone moves pass.
_POOL_MOVE_FACTOR = 1.3
# A peg is broken when it has been for this long (every fit of the last minute): one large
# trade not yet arbitraged is not a depeg.
_PEG_PERSIST_S = 60


@dataclass(frozen=True)
class Finding:
    """A market-wide move or a broken peg seen at one slice end.

    Attributes:
        kind: ``market-move`` or ``depeg``.
        scope: ``market``, or ``asset:<address>`` for a depeg.
        at: the slice end it was seen at (unix s).
        since: the start of the span it measures (unix s).
        pools: (dex, pool) of each pool it names, sorted.
        size: the move (log) of the market factor, or the asset's deviation from its peg.
        severity: from its size.
        evidence: what was seen, in words.
    """

    kind: str
    scope: str
    at: int
    since: int
    pools: tuple[tuple[str, str], ...]
    size: float
    severity: Severity
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class _Pool:
    dex: str
    token0: int  # index into the view's assets
    token1: int
    shift: float  # ln 10 * (decimals0 - decimals1): raw price to human price, in logs


def _severity(size: float) -> Severity:
    size = abs(size)
    if size >= math.log(1.2):
        return "high"
    if size >= math.log(1.05):
        return "medium"
    return "low"


class MarketView:
    """One chain's assets priced together; fed pools, slice prices and slice ends in time
    order (``announce``, ``observe``, ``evaluate``).

    Args:
        settings: the market section: assets, pegs and thresholds.
    """

    def __init__(self, settings: MarketSettings) -> None:
        self._settings = settings
        self._assets = list(settings.assets)
        self._index = {asset.address: i for i, asset in enumerate(self._assets)}
        self._numeraire = [
            i for i, asset in enumerate(self._assets) if asset.peg == settings.numeraire
        ]
        # Floating: whatever is not pegged to the numeraire (ETH and its pegs float in USD).
        self._floating = [
            i for i, asset in enumerate(self._assets) if asset.peg != settings.numeraire
        ]
        pegs: dict[str, list[int]] = {}
        for i, asset in enumerate(self._assets):
            if asset.peg is not None:
                pegs.setdefault(asset.peg, []).append(i)
        self._pegs = {peg: members for peg, members in pegs.items() if len(members) >= 2}
        self._pools: dict[str, _Pool] = {}
        self._prices: dict[str, tuple[int, float]] = {}  # pool: (slice end, log human price)
        # (slice end, levels): the fits of the last peg_horizon_s, pinned to the numeraire.
        self._levels: deque[tuple[int, np.ndarray]] = deque()
        # pool: (slice end, log price) at each evaluation its price changed, for move_horizon_s.
        self._pool_history: dict[str, deque[tuple[int, float]]] = {}
        self._usual = UsualMoves()
        self._liquidity: dict[str, float] = {}  # each pool's last
        self._drained: set[str] = set()
        self._ticks: dict[str, int] = {}  # each V3 pool's last tick
        self._depegged: dict[int, int] = {}  # asset: the last fit it was found off its peg at

    @property
    def active(self) -> bool:
        return len(self._assets) >= 2

    def announce(self, dex: str, pool: str, token0: str, token1: str) -> str | None:
        """A pool of the chain; priced here if both its tokens are configured assets.
        Returns the peg both its tokens hold, if they do (a peg pool: the peg check's)."""
        i, j = self._index.get(token0.lower()), self._index.get(token1.lower())
        if i is None or j is None:
            return None
        shift = math.log(10) * (self._assets[i].decimals - self._assets[j].decimals)
        self._pools[pool] = _Pool(dex, i, j, shift)
        peg = self._assets[i].peg
        return peg if peg is not None and peg == self._assets[j].peg else None

    def observe(
        self,
        pool: str,
        at: int,
        raw_price: float | None,
        liquidity: float | None = None,
        removed: float = 0.0,
        pending: Sequence[tuple[Position, float]] = (),
        tick: int | None = None,
    ) -> None:
        """The last price (token1 per token0, raw units) and liquidity of ``pool``'s slice
        ending at ``at``, and the liquidity removed in it. A pool that lost half its liquidity
        in one slice (a drain, a rug pull) no longer prices its assets: its price swings with
        every swap after. (V3's in-range liquidity also falls when the price leaves narrow
        positions, so the level alone says nothing.) V3 changes before the slice's first swap
        (``pending``, its last ``tick``: ``SliceSummary``) count if the tick the slice
        before ended at was in their range, as the window features count them."""
        known = self._pools.get(pool)
        if known is None or pool in self._drained:
            return
        before_tick = self._ticks.get(pool)
        removed += sum(
            -change
            for (_, low, high), change in pending
            if change < 0 and (before_tick is None or low <= before_tick < high)
        )
        if tick is not None:
            self._ticks[pool] = tick
        # Before the price: a rug's removal often comes in a slice without a swap.
        before = self._liquidity.get(pool)
        if before and removed >= _DRAINED_SHARE * before:
            self._drained.add(pool)
            self._prices.pop(pool, None)
            self._pool_history.pop(pool, None)
            return
        if liquidity is not None:
            self._liquidity[pool] = liquidity
        if raw_price is None or raw_price <= 0:
            return
        latest = self._prices.get(pool)
        if latest is None or at >= latest[0]:
            self._prices[pool] = (at, math.log(raw_price) + known.shift)

    def evaluate(self, at: int) -> list[Finding]:
        """The market as of the slice end ``at`` (every slice ending by then observed)."""
        levels = self._fit(at)
        if levels is None:
            return []
        self._levels.append((at, levels))
        horizon = max(self._settings.move_horizon_s, self._settings.peg_horizon_s)
        while self._levels and self._levels[0][0] < at - horizon:
            self._levels.popleft()
        findings = []
        broken: set[int] = set()
        for peg, members in sorted(self._pegs.items()):
            for depeg in self._depegs(at, peg, members, levels):
                asset = self._index[depeg.scope.removeprefix("asset:")]
                broken.add(asset)
                self._depegged[asset] = at
                findings.append(depeg)
        pool_moves = self._track_pools(at)
        asset_moves = self._asset_moves(at, levels, broken)
        if asset_moves is not None:
            move = self._market_move(at, levels, broken, asset_moves, pool_moves)
            if move is not None:
                findings.append(move)
            findings += self._pool_moves(at, asset_moves, pool_moves)
        return findings

    def _track_pools(self, at: int) -> dict[str, float]:
        """Each fresh pool's log price move over the move horizon (pools priced that long)."""
        since = at - self._settings.move_horizon_s
        moved = {}
        for address, (seen, price) in self._prices.items():
            if seen <= at - STALE_AFTER_S:
                continue
            history = self._pool_history.setdefault(address, deque())
            if not history or history[-1][1] != price:
                history.append((at, price))
            while len(history) > 1 and history[1][0] <= since:
                history.popleft()
            if history[0][0] <= since:
                moved[address] = price - history[0][1]
        return moved

    # --- the fit -----------------------------------------------------------------------

    def _fit(self, at: int) -> np.ndarray | None:
        """Every asset's log price in the numeraire (NaN where no pool links it to the
        numeraire's main group), from the fresh pools' last prices (``fit_levels``)."""
        edges = [
            (self._pools[pool].token0, self._pools[pool].token1, price)
            for pool, (seen, price) in self._prices.items()
            if seen > at - STALE_AFTER_S
        ]
        return fit_levels(edges, len(self._assets), self._numeraire)

    def _levels_at(self, when: int) -> tuple[int, np.ndarray] | None:
        """The latest fit at or before ``when``, if one is kept."""
        found = None
        for seen, levels in self._levels:
            if seen > when:
                break
            found = (seen, levels)
        return found

    # --- pegs --------------------------------------------------------------------------

    def _depegs(self, at: int, peg: str, members: list[int], levels: np.ndarray) -> list[Finding]:
        """The members off ``peg`` now and at every fit of the last _PEG_PERSIST_S (the
        same member: another's blip during a depeg is not one)."""
        before = self._levels_at(at - _PEG_PERSIST_S)
        if before is None:
            return []
        # Every fit from the one the minute began at (the current one is the last).
        fits = [fit for seen, fit in self._levels if seen >= before[0]][:-1]
        tolerance = self._settings.log_peg_tolerance
        findings = []
        off_now = [item for item in self._off_peg(at, members, levels) if abs(item[1]) >= tolerance]
        if not off_now:
            return []
        # Each fit's members off the peg, once (not once per member found off now).
        before_off = [{a: d for a, d, _ in self._off_peg(at, members, fit)} for fit in fits]
        for asset, deviation, others in off_now:
            if not all(abs(off.get(asset, 0.0)) >= tolerance for off in before_off):
                continue
            symbol = self._assets[asset].symbol
            pools = self._pools_holding({asset})
            evidence = (
                f"depeg: {symbol} at {math.exp(deviation):.4f} {peg} "
                f"({math.expm1(deviation):+.2%}) against "
                f"{', '.join(self._assets[i].symbol for i in others)}, priced through "
                f"{len(self._prices)} pools",
                f"pools holding {symbol}: {len(pools)}",
            )
            findings.append(Finding(
                "depeg", f"asset:{self._assets[asset].address}", at,
                at - self._settings.peg_horizon_s, pools, deviation, _severity(deviation),
                evidence,
            ))  # fmt: skip
        return findings

    def _off_peg(
        self, at: int, members: list[int], levels: np.ndarray
    ) -> list[tuple[int, float, list[int]]]:
        """(member, its deviation, the others) of the members priced in ``levels``: with
        three or more, each member's from the median of all (two off at once are each their
        own); with two, the one that moved against the floating assets, from the other."""
        priced = [i for i in members if not np.isnan(levels[i])]
        if len(priced) < 2:
            return []
        if len(priced) >= 3:
            median = float(np.median(levels[priced]))
            return [(i, float(levels[i] - median), [o for o in priced if o != i]) for i in priced]
        if spread(levels, priced) < self._settings.log_peg_tolerance:
            return []
        # One found off its peg within the horizon still is: once the move is older than the
        # horizon, the floating assets no longer say which of the two it was.
        since = at - self._settings.peg_horizon_s
        recent = [i for i in priced if self._depegged.get(i, -math.inf) >= since]
        asset = recent[0] if len(recent) == 1 else self._moved_against_floating(at, priced, levels)
        other = next(i for i in priced if i != asset)
        return [(asset, float(levels[asset] - levels[other]), [other])]

    def _moved_against_floating(self, at: int, pair: list[int], levels: np.ndarray) -> int:
        """Of a two-asset peg, the one whose price against the floating assets moved most
        over the peg horizon (the pin cancels out of this difference)."""
        before = self._levels_at(at - self._settings.peg_horizon_s) or self._levels[0]
        then = before[1]
        floating = [i for i in self._floating if not np.isnan(levels[i]) and not np.isnan(then[i])]
        if not floating:
            return max(pair, key=lambda i: self._assets[i].symbol)
        market = float(np.median(levels[floating] - then[floating]))
        return max(pair, key=lambda i: abs((levels[i] - then[i]) - market))

    # --- the market factor ---------------------------------------------------------------

    def _market_move(self, at: int, levels, broken: set[int], moves, pool_moves) -> Finding | None:
        """Asset ``moves`` and ``pool_moves`` over the move horizon (``_asset_moves``,
        ``_track_pools``)."""
        s = self._settings
        since = at - s.move_horizon_s
        healthy = [i for i in self._numeraire if i not in broken and not np.isnan(levels[i])]
        if len(moves) < s.min_assets_moved:
            return None
        factor = float(np.median(list(moves.values())))
        threshold = self._usual.limit("market", at, factor, s.log_move_threshold)
        moved = {i for i, move in moves.items() if abs(move) >= threshold and move * factor > 0}
        if abs(factor) < threshold or len(moved) < s.min_assets_moved:
            return None
        # The pools the move moved: half the threshold or more, its way.
        pools = tuple(
            sorted(
                (self._pools[address].dex, address)
                for address, moved in pool_moves.items()
                if abs(moved) >= threshold / 2
            )
        )
        words = ", ".join(
            f"{self._assets[i].symbol} {math.expm1(moves[i]):+.1%}"
            for i in sorted(moved, key=lambda i: self._assets[i].symbol)
        )
        evidence = (
            f"market-move: the median asset moved {math.expm1(factor):+.1%} against "
            f"{', '.join(self._assets[i].symbol for i in healthy)} in {s.move_horizon_s} s",
            f"moved with it: {words}; {len(pools)} pools",
        )
        return Finding(
            "market-move", "market", at, since, pools, factor, _severity(factor), evidence
        )

    def _pool_moves(
        self, at: int, moves: dict[int, float], pool_moves: dict[str, float]
    ) -> list[Finding]:
        """Pools that moved the threshold beyond what the market factor explains, over the
        move horizon."""
        s = self._settings
        since = at - s.move_horizon_s
        findings = []
        # The median of three or more quoted assets stays where it was when one moves alone.
        if len(moves) < 3:
            return findings
        market = float(np.median(list(moves.values())))
        for address, moved in pool_moves.items():
            pool = self._pools[address]
            expected = market * (self._floats(pool.token0) - self._floats(pool.token1))
            gap = moved - expected
            floor = _POOL_MOVE_FACTOR * s.log_move_threshold
            if abs(gap) < self._usual.limit(address, at, gap, floor):
                continue
            findings.append(
                Finding(
                    "price-dislocation",
                    f"pool:{address}",
                    at,
                    since,
                    ((pool.dex, address),),
                    gap,
                    _severity(gap),
                    (
                        f"price-dislocation: {self._name(pool)} moved {math.expm1(moved):+.1%} "
                        f"in {s.move_horizon_s} s while the market of the other assets moved "
                        f"it {math.expm1(expected):+.1%}",
                    ),
                )  # fmt: skip
            )
        return findings

    def _asset_moves(self, at: int, levels: np.ndarray, broken: set[int]) -> dict | None:
        """Each floating asset's move over the move horizon against the healthy numeraire
        assets, or None before a horizon is kept."""
        before = self._levels_at(at - self._settings.move_horizon_s)
        if before is None:
            return None
        then = before[1]
        healthy = self._agreeing(
            [
                i
                for i in self._numeraire
                if i not in broken and not np.isnan(levels[i]) and not np.isnan(then[i])
            ],
            (levels, then),
        )
        if not healthy:
            return None
        now_unit, then_unit = float(np.mean(levels[healthy])), float(np.mean(then[healthy]))
        # Only assets with a pool of their own against the numeraire: one priced only through
        # another floating asset (LINK through LINK/WETH) follows it, and would count twice.
        quoted = {
            other
            for address, pool in self._pools.items()
            if address in self._prices
            for asset, other in ((pool.token0, pool.token1), (pool.token1, pool.token0))
            if asset in healthy
        }
        return {
            i: float((levels[i] - now_unit) - (then[i] - then_unit))
            for i in self._floating
            if i in quoted and not np.isnan(levels[i]) and not np.isnan(then[i])
        }

    def _agreeing(self, members: list[int], fits: tuple[np.ndarray, ...]) -> list[int]:
        """The numeraire ``members`` within the peg tolerance of their median in every fit:
        the unit of moves. One stablecoin's blip not yet a depeg (a rug's pump of its pool)
        moves no unit; two that disagree give none (which one moved is not known yet)."""
        tolerance = self._settings.log_peg_tolerance
        agreeing = [
            i
            for i in members
            if all(abs(fit[i] - np.median(fit[members])) < tolerance for fit in fits)
        ]
        return agreeing if 2 * len(agreeing) > len(members) else []

    def _floats(self, asset: int) -> float:
        return 1.0 if asset in self._floating else 0.0

    def _name(self, pool: _Pool) -> str:
        return f"{self._assets[pool.token0].symbol}/{self._assets[pool.token1].symbol}"

    def _pools_holding(self, assets: set[int]) -> tuple[tuple[str, str], ...]:
        return tuple(
            sorted(
                (pool.dex, address)
                for address, pool in self._pools.items()
                if address in self._prices and {pool.token0, pool.token1} & assets
            )
        )
