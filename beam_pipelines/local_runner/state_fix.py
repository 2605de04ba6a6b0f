"""A fix of the local runner's user state: a cleared combining state is removed.

Beam's DirectRunner (apache_beam/runners/direct/direct_userstate.py) commits a cleared
CombiningValueState as a fresh accumulator, so the state of every window whose stateful
DoFn cleared it stays in memory for the rest of the run: the slice progress of every
(pool, slice) ever seen (``_SliceUpdatesFn``), tens of MiB an hour with a few hundred busy
pools (bench/memory.py). Dataflow removes cleared state; only the local runner needs this.
"""

from __future__ import annotations

from apache_beam.runners.direct import direct_userstate

_INSTALLED = "_dexwatch_removes_cleared_combining_state"


def install() -> None:
    """Make the DirectRunner remove a combining state cleared and not added to since
    (idempotent)."""
    if getattr(direct_userstate, _INSTALLED, False):
        return
    runtime_state = direct_userstate.CombiningValueRuntimeState
    context = direct_userstate.DirectUserStateContext
    clear, add, commit = runtime_state.clear, runtime_state.add, context.commit

    def clear_and_mark(self) -> None:
        clear(self)
        self.dexwatch_cleared = True

    def add_and_unmark(self, value) -> None:  # noqa: ANN001
        add(self, value)
        self.dexwatch_cleared = False

    def commit_removing_cleared(self) -> None:
        cleared = [
            cache_key
            for cache_key, state in self.cached_states.items()
            if isinstance(state, runtime_state) and getattr(state, "dexwatch_cleared", False)
        ]
        for cache_key in cleared:
            self.cached_states[cache_key]._modified = False  # no fresh accumulator written
        commit(self)
        for encoded_key, window, spec in cleared:
            keyed = self.step_context.get_keyed_state(encoded_key)
            keyed.clear_state(window, self.state_tags[spec])

    runtime_state.clear = clear_and_mark
    runtime_state.add = add_and_unmark
    context.commit = commit_removing_cleared
    setattr(direct_userstate, _INSTALLED, True)
