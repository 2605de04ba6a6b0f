"""A pool's habits: its volume and swaps per second, averaged over hours with exponential decay.

A window whose baseline is empty (a pool silent for the baseline's minutes, as quiet real
pools are most of the time) has no recent rates to compare with. Its rates are measured
against the pool's decayed rates instead: every slice the pool had before the window's span,
each weighted by exp(-age / RATES_TIMESCALE_S), over the time they cover weighted the same way,
silences included. A quiet pool's usual minute is then its long-run minute, and a burst after
an hour's silence stands out; a pool seen for less than ``MIN_EXPOSURE_S`` has no habits yet.

Streaming folds each pool's slices in as they leave state; batch folds them in as they leave
the sliding window. Both fold the same slices in the same order, so both give the same
numbers to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dexwatch.core.features.slices import SliceSummary

__all__ = ["MIN_EXPOSURE_S", "RATES_TIMESCALE_S", "DecayedRates", "fold_rates"]

# Six hours: long enough to span a quiet pool's silences, short enough to follow a day's rhythm.
RATES_TIMESCALE_S = 6 * 3600
# Half an hour of a pool's life before its habits count.
MIN_EXPOSURE_S = 1800


@dataclass(frozen=True)
class DecayedRates:
    """Decayed sums up to ``at`` (unix seconds): ``volume`` and ``swaps`` of the slices seen,
    and ``exposure``, the seconds since the pool was first seen, weighted alike."""

    at: int
    volume: float = 0.0
    swaps: float = 0.0
    exposure: float = 0.0

    def advanced(self, to: int) -> DecayedRates:
        """The sums at ``to`` (not before ``at``), with nothing seen in between."""
        if to <= self.at:
            return self
        decay = math.exp(-(to - self.at) / RATES_TIMESCALE_S)
        return DecayedRates(
            at=to,
            volume=self.volume * decay,
            swaps=self.swaps * decay,
            exposure=self.exposure * decay + _exposure_of(to - self.at),
        )

    def per_second(self, at: int) -> tuple[float, float] | None:
        """(volume, swaps) per second at ``at``, or None while the pool is too new to have
        habits."""
        now = self.advanced(at)
        if now.exposure < _LEAST_EXPOSURE:
            return None
        return now.volume / now.exposure, now.swaps / now.exposure


def _exposure_of(seconds: int) -> float:
    return RATES_TIMESCALE_S * -math.expm1(-seconds / RATES_TIMESCALE_S)


_LEAST_EXPOSURE = _exposure_of(MIN_EXPOSURE_S)


def fold_rates(
    rates: DecayedRates | None, slices: Iterable[SliceSummary], slice_s: int
) -> DecayedRates | None:
    """``rates`` with ``slices`` (SliceSummary, in time order, after ``rates.at``) folded
    in; a pool's first slice starts its exposure."""
    for summary in slices:
        rates = (rates or DecayedRates(at=summary.start)).advanced(summary.start + slice_s)
        rates = replace(
            rates, volume=rates.volume + summary.volume, swaps=rates.swaps + summary.swaps
        )
    return rates
