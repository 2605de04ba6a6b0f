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

The fold also keeps the pool's *hours*: the volume of each clock hour it has lived through,
added into one of 24 hour-of-day bins with weights exp(-days / USUAL_HOUR_TIMESCALE_DAYS), and
its volume over about the last hour (weighted exp(-age / 1 h)). A window's
``volume_1h_vs_usual`` sets the last hour against the pool's usual volume at that time of day:
the larger of the same clock hour's mean over previous days and the mean hour of those days
(on five weeks of a real pool's minute bars the same hour alone was the noisier baseline: its
daily rhythm is weaker than its days' differences). A slice counts in the clock hour it
starts in.

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
    "DRIFT_TIMESCALE_S", "MIN_EXPOSURE_S", "RATES_TIMESCALE_S", "USUAL_HOUR_TIMESCALE_DAYS",
    "DecayedRates", "fold_rates",
]  # fmt: skip

# Six hours: long enough to span a quiet pool's silences, short enough to follow a day's rhythm.
RATES_TIMESCALE_S = 6 * 3600
# Half an hour of a pool's life before its habits count.
MIN_EXPOSURE_S = 1800
# The price anchor's timescale: a drift is measured over about the last hour.
DRIFT_TIMESCALE_S = 3600
# The days behind a pool's usual hour: a week, weighted exp(-days / 7).
USUAL_HOUR_TIMESCALE_DAYS = 7.0
_HOUR_S = 3600
_DAY_DECAY = math.exp(-1.0 / USUAL_HOUR_TIMESCALE_DAYS)
# A silence longer than this many hours adds this many empty hours: older ones weigh nothing.
_MOST_EMPTY_HOURS = 24 * 28
# The regularizer of the hour's ratio, as a share of the usual hour: a pool that barely trades
# at night must not make one swap a spike.
_USUAL_HOUR_SHARE = 0.1
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
    the anchor; the hours: ``recent_volume`` over ``recent_exposure``, the volume and seconds
    of about the last hour (weighted exp(-age / 1 h)), ``clock_hour`` (unix seconds // 3600)
    the hour under way with its ``clock_hour_volume`` so far (``clock_hour_whole`` once it was
    seen from its start), and per hour of day (UTC) the
    decayed volume (``usual_hour``) and count (``usual_days``) of the earlier days' hours.

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
    recent_volume: float = 0.0
    recent_exposure: float = 0.0
    clock_hour: int | None = None
    clock_hour_volume: float = 0.0
    clock_hour_whole: bool = False
    usual_hour: tuple[float, ...] = (0.0,) * 24
    usual_days: tuple[float, ...] = (0.0,) * 24

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

    def hour_vs_usual(self, at: int, volume: float, seconds: int) -> float:
        """log of the pool's volume over about the last hour, ``volume`` in the ``seconds``
        from ``at`` included, over its usual volume for the clock hour of ``at`` (see the
        module), both plus a tenth of its mean hour; 0 until the pool has traded in that clock
        hour on an earlier day."""
        now = self.advanced(at)
        b = at // _HOUR_S % 24
        if not now.usual_days[b] or not now.usual_hour[b]:
            return 0.0
        means = [v / d for v, d in zip(now.usual_hour, now.usual_days, strict=True) if d]
        mean_hour = sum(means) / len(means)
        usual = max(now.usual_hour[b] / now.usual_days[b], mean_hour)
        last_hour = (now.recent_volume + volume) / (now.recent_exposure + seconds) * _HOUR_S
        least = _USUAL_HOUR_SHARE * mean_hour
        return math.log((last_hour + least) / (usual + least))

    def _advance(self, to: int) -> None:
        """In place: the sums at ``to`` (after ``at``), nothing seen in between."""
        decay, pull, exposed, recent_exposed = _decays(to - self.at)
        if self.log_price is not None:
            self.anchor = self.log_price + (self.anchor - self.log_price) * pull
        self.at = to
        self.volume *= decay
        self.swaps *= decay
        self.exposure = self.exposure * decay + exposed
        self.gap2 *= decay
        self.gaps *= decay
        self.recent_volume *= pull
        self.recent_exposure = self.recent_exposure * pull + recent_exposed

    def _see(self, summary: SliceSummary) -> None:
        """In place: a slice's volume and swaps, and its last price (at ``at``), whose gap
        from the anchor counts at most ``_GAP_CLIP`` times the usual gap, so that a drift
        under way (or one manipulated price) does not make itself usual within minutes."""
        self.volume += summary.volume
        self.swaps += summary.swaps
        self.recent_volume += summary.volume
        self._count_hour(summary.start, summary.volume)
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

    def _count_hour(self, start: int, volume: float) -> None:
        """In place: ``volume`` of a slice from ``start`` into its clock hour; the hours before
        it, from the one under way, are done and go into their hour-of-day bins (a silence's
        as empty). The pool's first hour counts only if it was seen from its start: a replay
        or a pool first seen mid-hour has not said what the whole hour held."""
        hour = start // _HOUR_S
        if self.clock_hour is None:
            self.clock_hour, self.clock_hour_whole = hour, start % _HOUR_S == 0
        if hour > self.clock_hour:
            usual, days = list(self.usual_hour), list(self.usual_days)
            for past in range(max(self.clock_hour, hour - _MOST_EMPTY_HOURS), hour):
                if past == self.clock_hour and not self.clock_hour_whole:
                    continue
                b = past % 24
                done = self.clock_hour_volume if past == self.clock_hour else 0.0
                usual[b] = usual[b] * _DAY_DECAY + done
                days[b] = days[b] * _DAY_DECAY + 1.0
            self.usual_hour, self.usual_days = tuple(usual), tuple(days)
            self.clock_hour, self.clock_hour_volume, self.clock_hour_whole = hour, 0.0, True
        self.clock_hour_volume += volume


@lru_cache(maxsize=1024)
def _decays(elapsed: int) -> tuple[float, float, float, float]:
    """The rates' decay, the anchor's (and the last hour's), and the exposure gained over
    ``elapsed`` seconds by the rates and by the last hour: a pool's slices are mostly a slice
    apart, so a few values serve every fold."""
    pull = math.exp(-elapsed / DRIFT_TIMESCALE_S)
    return (
        math.exp(-elapsed / RATES_TIMESCALE_S),
        pull,
        _exposure_of(elapsed),
        DRIFT_TIMESCALE_S * -math.expm1(-elapsed / DRIFT_TIMESCALE_S),
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
