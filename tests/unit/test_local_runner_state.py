"""The local runner's fix of Beam's DirectRunner user state: a cleared combining state is
removed, not kept as a fresh accumulator for every window it was ever used in."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import PickleCoder, StrUtf8Coder
from apache_beam.runners.direct.direct_userstate import DirectUserStateContext
from apache_beam.runners.direct.evaluation_context import DirectStepContext
from apache_beam.transforms.combiners import CountCombineFn
from apache_beam.transforms.userstate import BagStateSpec, CombiningValueStateSpec
from apache_beam.transforms.window import IntervalWindow

from beam_pipelines.local_runner import state_fix


class _Slices(beam.DoFn):
    COUNT = CombiningValueStateSpec("count", PickleCoder(), CountCombineFn())
    RAW = BagStateSpec("raw", PickleCoder())

    def process(self, element, count=beam.DoFn.StateParam(COUNT), raw=beam.DoFn.StateParam(RAW)):
        pass


def _commit(step: DirectStepContext, change) -> None:  # noqa: ANN001
    """One bundle: ``change(count_state, raw_state)`` for key "pool", window [0, 10)."""
    context = DirectUserStateContext(step, _Slices(), StrUtf8Coder())
    window = IntervalWindow(0, 10)
    change(context.get_state(_Slices.COUNT, "pool", window),
           context.get_state(_Slices.RAW, "pool", window))  # fmt: skip
    context.commit()
    context.reset()


def test_a_cleared_combining_state_leaves_nothing_behind() -> None:
    state_fix.install()
    state_fix.install()  # idempotent
    step = DirectStepContext({})
    _commit(step, lambda count, raw: (count.add(1), count.add(1), raw.add("event")))
    keyed = step.get_keyed_state(StrUtf8Coder().encode("pool"))
    assert list(keyed.state) == [IntervalWindow(0, 10)]
    _commit(step, lambda count, raw: (count.clear(), raw.clear()))
    assert list(keyed.state) == []  # Beam's own commit kept the window with a count of 0
    # Cleared then added in one bundle: the new value stays.
    _commit(step, lambda count, raw: (count.clear(), count.add(1)))
    assert list(keyed.state) == [IntervalWindow(0, 10)]
    _commit(step, lambda count, raw: None)

    def read(count, raw) -> None:  # noqa: ANN001
        assert count.read() == 1

    _commit(step, read)
