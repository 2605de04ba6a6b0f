"""An idle pool's streaming state is compacted: once the windows after its newest slice are
out and no update can reach its slices, they fold into the carry, decayed rates and steps,
and the windows of its next event come out as if nothing had been folded (batch keeps
every slice and is the reference)."""

from __future__ import annotations

from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.transforms.pool_windows import PoolSlices, PoolWindowsFn, pool_windows
from dexwatch.core.features.slices import summarize_slice
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.settings import PipelineSettings

POOL = "0x" + "cd" * 20
KEY = f"31337:uniswap_v2:{POOL}"
T0 = 1_800_000_000
SETTINGS = PipelineSettings(
    slice_s=10, current_slices=2, baseline_slices=6, min_baseline_share=0.5,
    allowed_lateness_s=60, alert_cooldown_s=60,
)  # fmt: skip


def _sync(n: int, t: int, reserve0: int) -> PoolEvent:
    return PoolEvent(
        chain_id=31337, dex="uniswap_v2", pool=POOL, event="Sync", block_number=n,
        block_hash=f"0x{n:064x}", block_timestamp=t, tx_hash=f"0x{n + 10**6:064x}",
        log_index=0, args={"reserve0": str(reserve0), "reserve1": str(2 * reserve0)},
    )  # fmt: skip


class _State:
    def __init__(self) -> None:
        self.value: PoolSlices | None = None

    def read(self) -> PoolSlices | None:
        return self.value

    def write(self, value: PoolSlices) -> None:
        self.value = value


class _Timer:
    def __init__(self) -> None:
        self.at: int | None = None

    def set(self, at: Timestamp) -> None:
        self.at = int(at.seconds())


class _Runner:
    """The DoFn driven as a runner would: elements in order, each timer fired when the
    watermark passes it (the watermark follows the elements' slices)."""

    def __init__(self) -> None:
        self.fn = PoolWindowsFn(SETTINGS)
        self.state, self.prune, self.tail = _State(), _Timer(), _Timer()
        self.rows: dict[str, dict] = {}

    def advance_to(self, watermark: int) -> None:
        while True:
            due = [
                (t.at, t) for t in (self.tail, self.prune) if t.at is not None and t.at <= watermark
            ]
            if not due:
                return
            at, timer = min(due, key=lambda d: (d[0], d[1] is self.prune))
            timer.at = None
            if timer is self.tail:
                self._keep(self.fn.emit_tail(KEY, Timestamp(at), self.state, self.tail))
            else:
                self.fn.prune(Timestamp(at), self.state, self.prune)

    def add(self, summary, version: int = 1) -> None:  # noqa: ANN001
        self._keep(self.fn.process((KEY, (version, summary)), self.state, self.prune, self.tail))

    def _keep(self, rows) -> None:  # noqa: ANN001
        for row in rows or ():
            self.rows[row["window_id"]] = row


def test_an_idle_pools_slices_fold_away_and_its_next_windows_match_batch() -> None:
    busy = [summarize_slice(POOL, T0 + 10 * i, [_sync(i, T0 + 10 * i, 10**6 + 997 * i)])
            for i in range(30)]  # fmt: skip
    runner = _Runner()
    for summary in busy:
        runner.advance_to(summary.start)
        runner.add(summary)
    # An hour of silence: the watermark moves on, the timers fire.
    later = T0 + 3600
    runner.advance_to(later - 10)
    compacted = runner.state.value
    assert compacted is not None and compacted.slices == {}
    assert compacted.carry == busy[-1] and compacted.rates is not None
    assert runner.prune.at is None and runner.tail.at is None  # nothing left to wake it
    # Its next events: every window they make is batch's, which kept every slice.
    after = [summarize_slice(POOL, later + 10 * i, [_sync(100 + i, later + 10 * i, 5 * 10**5)])
             for i in range(3)]  # fmt: skip
    for summary in after:
        runner.advance_to(summary.start)
        runner.add(summary)
    runner.advance_to(later + 3600)
    expected = {row["window_id"]: row for row in pool_windows((KEY, busy + after), SETTINGS)}
    assert runner.rows.keys() == expected.keys()
    for window_id, row in runner.rows.items():
        assert row == expected[window_id], window_id
    assert any(row["window_end"].timestamp() > later for row in runner.rows.values())
