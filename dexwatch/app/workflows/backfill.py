"""`dexwatch backfill`: a stretch of history through the pipeline's own transforms, in batch.

Chain: the chain publisher reads the range's pool events from the RPC node into a recording
(its own checkpoint, so an interrupted read goes on where it stopped), then the batch
pipeline replays the recording into the same tables. The read starts one window span
before ``start`` so that the first windows have their baseline, and only windows ending in
(start, end] are written: later ones would see the recording's end as a quiet market.
Every write is an upsert on the natural key, so a backfill run twice, or over a range that
the live pipeline already scored, leaves one row per window.

Subgraph: the subgraph publisher reads the range's complete hours (pages, gap filling,
retries: the live path's code) into a recording, from a day before ``start`` so that the
first hours have their history; the hourly branch then scores the hours ending in
(start, end] in batch.

Work files live under <state_dir>/backfill/<source>-<start>-<end>/, with a state file
saying which phase is done.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from dexwatch.core.errors import DexwatchError
from dexwatch.core.files import write_atomically
from dexwatch.core.schemas.topics import POOL_EVENTS
from dexwatch.core.settings import Settings

log = logging.getLogger("dexwatch.app.workflows.backfill")

Progress = Callable[[str, int, int], None]


class BackfillError(DexwatchError, RuntimeError):
    """A backfill that cannot run, with the reason."""


@dataclasses.dataclass
class BackfillResult:
    source: str
    work_dir: Path
    items: int  # chain: pool events read; subgraph: pool-hours read
    rows: int  # pool_scores rows of the range after the run
    seconds: float
    resumed: bool


def work_dir(settings: Settings, source: str, start: datetime, end: datetime) -> Path:
    stamp = "%Y%m%dT%H%M%S"
    # A chain's backfill reads that chain: its work is kept apart from other chains'.
    name = f"chain-{settings.chain.chain_id}" if source == "chain" else source
    return settings.state_dir / "backfill" / f"{name}-{start:{stamp}}-{end:{stamp}}"


@dataclasses.dataclass
class _Phases:
    """What a source's backfill does in each phase; ``run_phases`` runs the ones not done
    yet, in order, saving the state after each: plan (the range's blocks) → read (into a
    recording) → replay (the batch pipeline) → done."""

    source: str
    plan: Callable[[_State], None]
    read: Callable[[_State, Path], None]
    replay: Callable[[Path], None]
    recording_file: str


def run_phases(
    settings: Settings, phases: _Phases, start: datetime, end: datetime, restart: bool
) -> BackfillResult:
    if end <= start:
        raise BackfillError(f"--to ({end:%Y-%m-%d %H:%M}) must be after --from")
    started = time.perf_counter()
    work = work_dir(settings, phases.source, start, end)
    state = _State.load(work, restart)
    resumed = state.phase != "new"
    recording = work / "recording"
    if state.phase == "new":
        phases.plan(state)
        state.phase = "read"
        state.save()
    if state.phase == "read":
        phases.read(state, recording)
        state.phase = "replay"
        state.save()
    records_file = recording / phases.recording_file
    records = _count_lines(records_file)
    if state.phase == "replay":
        phases.replay(records_file if records else None)
        state.phase = "done"
        state.save()
    rows = _rows_in_range(settings, start, end, phases.source)
    return BackfillResult(
        phases.source, work, records, rows, time.perf_counter() - started, resumed
    )


def backfill_chain(
    settings: Settings,
    start: datetime,
    end: datetime,
    progress: Progress = lambda stage, done, total: None,
    restart: bool = False,
) -> BackfillResult:
    """Score the chain windows ending in (start, end]; resumes an interrupted run of the
    same range unless ``restart``."""
    from beam_pipelines.options import batch_options
    from beam_pipelines.pipeline import build_replay_pipeline
    from publishers.chain import run as read_chain
    from publishers.chain.rpc import RpcClient

    p = settings.pipeline
    span_s = (p.current_slices + p.baseline_slices) * p.slice_s

    def plan(state: _State) -> None:
        with RpcClient.from_settings(settings.chain) as rpc:
            head = rpc.block_number() - settings.chain.confirmations
            state.from_block = rpc.first_block_at(int(start.timestamp()) - span_s, head)
            state.to_block = rpc.first_block_at(int(end.timestamp()) + 1, head) - 1
        if state.to_block < state.from_block:
            raise BackfillError(
                f"no confirmed block between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}"
            )

    def read(state: _State, recording: Path) -> None:
        _import_in_background("sklearn.ensemble")
        total = state.to_block - state.from_block + 1
        chain = {
            "start_block": state.from_block,
            "checkpoint_path": recording.parent / "checkpoint.json",
        }

        def on_batch(stats) -> None:  # noqa: ANN001
            progress("read blocks", stats.last_block - state.from_block + 1, total)

        progress("read blocks", 0, total)
        read_chain(settings.with_sections(chain=chain), once=True, record_to=recording,
                   until_block=state.to_block, on_batch=on_batch)  # fmt: skip
        progress("read blocks", total, total)

    def replay(events_file: Path | None) -> None:
        if settings.model.serving == "local" and not settings.model_path.is_file():
            raise BackfillError(
                f"no model at {settings.model_path}: run `dexwatch model bootstrap` first"
            )
        progress("score windows", 0, 1)
        if events_file is not None:
            window_ends = (int(start.timestamp()), int(end.timestamp()))
            build_replay_pipeline(
                settings, batch_options(), events_file, window_ends=window_ends
            ).run().wait_until_finish()
        progress("score windows", 1, 1)

    phases = _Phases("chain", plan, read, replay, f"{POOL_EVENTS}.jsonl")
    return run_phases(settings, phases, start, end, restart)


def backfill_subgraph(
    settings: Settings,
    start: datetime,
    end: datetime,
    progress: Progress = lambda stage, done, total: None,
    restart: bool = False,
) -> BackfillResult:
    """Score the pool hours ending in (start, end] from the configured subgraphs; resumes an
    interrupted run of the same range unless ``restart``."""
    from beam_pipelines.options import batch_options
    from beam_pipelines.pipeline import build_replay_pipeline
    from dexwatch.core.features.hourly import HISTORY_HOURS
    from dexwatch.core.schemas.pool_hour import HOUR_S
    from dexwatch.core.schemas.topics import POOL_HOURLY
    from publishers.subgraph import run as read_subgraph

    # Hours ending in (start, end] start in [start - 1 h, end - 1 h].
    first_scored = (int(start.timestamp()) // HOUR_S) * HOUR_S
    end_hour = (int(end.timestamp()) // HOUR_S) * HOUR_S
    first_hour = first_scored - HISTORY_HOURS * HOUR_S

    def read(state: _State, recording: Path) -> None:
        subgraph = {"checkpoint_path": recording.parent / "checkpoint.json", "catch_up_wait_s": 0.0}
        total = (end_hour - first_hour) // HOUR_S

        def on_batch(stats) -> None:  # noqa: ANN001
            progress("read hours", (stats.last_hour + HOUR_S - first_hour) // HOUR_S, total)

        progress("read hours", 0, total)
        stats = read_subgraph(
            settings.with_sections(subgraph=subgraph), once=True, record_to=recording,
            hours=(first_hour, end_hour), on_batch=on_batch,
        )  # fmt: skip
        if stats.last_hour is None or stats.last_hour + HOUR_S < end_hour:
            raise BackfillError(
                "the subgraphs have not indexed the whole range yet (read up to "
                f"{'nothing' if stats.last_hour is None else _utc(stats.last_hour + HOUR_S)}); "
                "run the backfill again later to go on"
            )

    def replay(hours_file: Path | None) -> None:
        if settings.model.serving == "local" and not settings.hourly_model_path.is_file():
            raise BackfillError(
                f"no hourly model at {settings.hourly_model_path}: run "
                "`dexwatch model bootstrap-hourly` first"
            )
        progress("score hours", 0, 1)
        if hours_file is not None:
            build_replay_pipeline(
                settings, batch_options(), None, hours_file=hours_file,
                window_ends=(int(start.timestamp()), int(end.timestamp())),
            ).run().wait_until_finish()  # fmt: skip
        progress("score hours", 1, 1)

    phases = _Phases("subgraph", lambda state: None, read, replay, f"{POOL_HOURLY}.jsonl")
    return run_phases(settings, phases, start, end, restart)


def _import_in_background(module: str) -> None:
    """Import ``module`` in a thread: the read mostly waits on the node, and the replay's
    model loading would otherwise spend its first second importing scikit-learn."""
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=(module,), daemon=True).start()


def _utc(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M")


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as lines:
        return sum(1 for _ in lines)


def _rows_in_range(settings: Settings, start: datetime, end: datetime, source: str) -> int:
    from dexwatch.core.warehouse import open_warehouse

    if settings.warehouse.backend == "duckdb" and not settings.warehouse_path.is_file():
        return 0
    of_chain = f" and chain_id = {int(settings.chain.chain_id)}" if source == "chain" else ""
    result = open_warehouse(settings).query(
        f"select count(*) from pool_scores where source = '{source}'{of_chain} and "
        f"epoch(window_end) > {int(start.timestamp())} and "
        f"epoch(window_end) <= {int(end.timestamp())}"
    )
    return int(result.rows[0][0])


@dataclasses.dataclass
class _State:
    """What an interrupted backfill of one range had done: new → read → replay → done."""

    path: Path
    phase: str = "new"
    from_block: int = 0
    to_block: int = 0

    @classmethod
    def load(cls, work: Path, restart: bool) -> _State:
        path = work / "state.json"
        if restart and work.exists():
            import shutil

            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            return cls(path)
        saved = json.loads(path.read_text())
        return cls(path, saved["phase"], saved["from_block"], saved["to_block"])

    def save(self) -> None:
        fields = {"phase": self.phase, "from_block": self.from_block, "to_block": self.to_block}
        write_atomically(self.path, json.dumps(fields).encode())
