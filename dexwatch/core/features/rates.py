"""A pool's habits: its volume and swaps per second, averaged over hours with exponential decay.

A window whose baseline is empty (a pool silent for the baseline's minutes, as quiet real
pools are most of the time) has no recent rates to compare with. Its rates are measured
against the pool's decayed rates instead: every slice the pool had before the window's span,
each weighted by exp(-age / RATES_TIMESCALE_S), over the time they cover weighted the same way,
silences included. A quiet pool's usual minute is then its long-run minute, and a burst after
an hour's silence stands out; a pool seen for less than ``MIN_EXPOSURE_S`` has no habits yet.

The same fold keeps the pool's price habits: its *anchor*, the mean of its log price over
time weighted by exp(-age / DRIFT_TIMESCALE_S), and its usual *gap*, the root mean square of
how far each new price stood from the anchor, over the prices of the last hours (weighted
like the rates). A window's ``price_drift_1h`` is its price's gap from the anchor in units of
the usual gap: a drift over the last hour against the pool's own history of such drifts, so
a stable pair's 2 % and a volatile pair's 20 % can both stand out, and real pools' momentum
(their hours move more than their minutes suggest) is in the unit as in the gap.

Streaming folds each pool's slices in as they leave state; batch folds them in as they leave
the sliding window. Both fold the same slices in the same order, so both give the same
numbers to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from copy import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dexwatch.core.features.slices import SliceSummary

__all__ = [
    "DRIFT_TIMESCALE_S", "MIN_EXPOSURE_S", "RATES_TIMESCALE_S", "DecayedRates", "fold_rates",
]  # fmt: skip

# Six hours: long enough to span a quiet pool's silences, short enough to follow a day's rhythm.
RATES_TIMESCALE_S = 6 * 3600
# Half an hour of a pool's life before its habits count.
MIN_EXPOSURE_S = 1800
# The price anchor's timescale: a drift is measured over about the last hour.
DRIFT_TIMESCALE_S = 3600
# Prices seen (decayed) before a pool's usual gap counts, and the least usual gap (one basis
# point: a pool whose price never moved must not make any move infinite).
_LEAST_GAPS = 10.0
_LEAST_GAP = 1e-4
# A new price's gap counts for at most this many usual gaps (a winsorized mean square).
_GAP_CLIP = 3.0


@dataclass(slots=True)
class DecayedRates:
    """Decayed sums up to ``at`` (unix seconds): ``volume`` and ``swaps`` of the slices seen,
    and ``exposure``, the seconds since the pool was first seen, weighted alike; the price
    habits: ``log_price``, the last log price seen, ``anchor``, the time-decayed mean log
    price, and ``gap2`` over ``gaps``, the decayed mean squared gap of each price seen from
    the anchor.

    Treat an instance as a value: ``advanced`` and ``fold_rates`` return new ones (a window's
    fold runs once per window, so it updates one copy in place rather than a copy per slice).
    """

    at: int
    volume: float = 0.0
    swaps: float = 0.0
    exposure: float = 0.0
    log_price: float | None = None
    anchor: float = 0.0
    gap2: float = 0.0
    gaps: float = 0.0

    def advanced(self, to: int) -> DecayedRates:
        """The sums at ``to`` (not before ``at``), with nothing seen in between: the anchor
        moves toward the price held since."""
        if to <= self.at:
            return self
        now = copy(self)
        now._advance(to)
        return now

    def per_second(self, at: int) -> tuple[float, float] | None:
        """(volume, swaps) per second at ``at``, or None while the pool is too new to have
        habits."""
        now = self.advanced(at)
        if now.exposure < _LEAST_EXPOSURE:
            return None
        return now.volume / now.exposure, now.swaps / now.exposure

    def drift(self, at: int, price: float) -> float:
        """How far ``price`` at ``at`` stands from the pool's anchor, in units of its usual
        gap (absolute); 0 while the pool is too new to have price habits."""
        now = self.advanced(at)
        if now.log_price is None or now.exposure < _LEAST_EXPOSURE or now.gaps < _LEAST_GAPS:
            return 0.0
        usual = max(math.sqrt(now.gap2 / now.gaps), _LEAST_GAP)
        return abs(math.log(price) - now.anchor) / usual

    def _advance(self, to: int) -> None:
        """In place: the sums at ``to`` (after ``at``), nothing seen in between."""
        decay, pull, exposed = _decays(to - self.at)
        if self.log_price is not None:
            self.anchor = self.log_price + (self.anchor - self.log_price) * pull
        self.at = to
        self.volume *= decay
        self.swaps *= decay
        self.exposure = self.exposure * decay + exposed
        self.gap2 *= decay
        self.gaps *= decay

    def _see(self, summary: SliceSummary) -> None:
        """In place: a slice's volume and swaps, and its last price (at ``at``), whose gap
        from the anchor counts at most ``_GAP_CLIP`` times the usual gap, so that a drift
        under way (or one manipulated price) does not make itself usual within minutes."""
        self.volume += summary.volume
        self.swaps += summary.swaps
        if not summary.last_price:
            return
        x = math.log(summary.last_price)
        if self.log_price is None:
            self.log_price = self.anchor = x
            return
        gap = abs(x - self.anchor)
        if self.gaps >= _LEAST_GAPS:
            gap = min(gap, _GAP_CLIP * max(math.sqrt(self.gap2 / self.gaps), _LEAST_GAP))
        self.log_price = x
        self.gap2 += gap * gap
        self.gaps += 1.0


@lru_cache(maxsize=1024)
def _decays(elapsed: int) -> tuple[float, float, float]:
    """The rates' decay, the anchor's and the exposure gained over ``elapsed`` seconds: a
    pool's slices are mostly a slice apart, so a few values serve every fold."""
    return (
        math.exp(-elapsed / RATES_TIMESCALE_S),
        math.exp(-elapsed / DRIFT_TIMESCALE_S),
        _exposure_of(elapsed),
    )


def _exposure_of(seconds: int) -> float:
    return RATES_TIMESCALE_S * -math.expm1(-seconds / RATES_TIMESCALE_S)


_LEAST_EXPOSURE = _exposure_of(MIN_EXPOSURE_S)


def fold_rates(
    rates: DecayedRates | None, slices: Iterable[SliceSummary], slice_s: int
) -> DecayedRates | None:
    """``rates`` with ``slices`` (SliceSummary, in time order, after ``rates.at``) folded
    in; a pool's first slice starts its exposure. A slice's last price comes at its end.
    ``rates`` itself is left as it was."""
    folded = copy(rates) if rates is not None else None
    for summary in slices:
        if folded is None:
            folded = DecayedRates(at=summary.start)
        if summary.start + slice_s > folded.at:
            folded._advance(summary.start + slice_s)
        folded._see(summary)
    return folded
