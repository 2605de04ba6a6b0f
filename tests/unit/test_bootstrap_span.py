"""Which hours a first model is mined from (infra.local.market.busiest_span_start)."""

from __future__ import annotations

import pytest

from infra.local.market import busiest_span_start
from infra.local.settings import SimulatorSettings

DAY = 86_400
MIDNIGHT = 1_795_996_800  # 2026-11-30 00:00 UTC


def test_two_hours_of_a_real_day_are_mined_around_its_busiest_time_the_day_before():
    settings = SimulatorSettings(day_length_s=DAY, busiest_at=0.56)
    start = busiest_span_start(settings, 2.0, MIDNIGHT)
    busiest = MIDNIGHT - DAY + 0.56 * DAY
    assert start == pytest.approx(busiest - 3600, abs=1)
    assert start <= MIDNIGHT


def test_the_same_day_when_its_busiest_hours_have_begun():
    settings = SimulatorSettings(day_length_s=DAY, busiest_at=0.5)
    assert busiest_span_start(settings, 2.0, MIDNIGHT + 18 * 3600) == MIDNIGHT + 11 * 3600


def test_spans_of_a_day_or_more_start_where_asked():
    """The default market's ten-minute days: two hours hold twelve of them."""
    assert busiest_span_start(SimulatorSettings(), 2.0, MIDNIGHT) == MIDNIGHT
    real_days = SimulatorSettings(day_length_s=DAY)
    assert busiest_span_start(real_days, 40.0, MIDNIGHT) == MIDNIGHT
