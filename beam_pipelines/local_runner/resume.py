"""Where a restarted local pipeline replays from: the windows it had not finished, from
the newest rows it wrote to the warehouse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from beam_pipelines.local_runner.journal import WATERMARK_LAG_S, journal_keep_s, span_s
from dexwatch.core.settings import PipelineSettings


@dataclass(frozen=True)
class ResumePoint:
    """Where a restart picks up: journaled messages with event time >= replay_from (unix s)
    are replayed; a pool's windows ending at or before its ``final_before`` (by
    ``chain_id:pool``) were final and written."""

    replay_from: int
    final_before: dict[str, int] | None


def resume_point(settings: PipelineSettings, written: dict[str, int]) -> ResumePoint:
    """``written``: per pool (chain_id:pool), the newest window end the previous run wrote
    (empty: nothing written, so the whole journal is replayed).

    Pools are processed side by side and one may lag another, so each pool resumes from its
    own progress: its rows reach the end of the newest slice it had processed, a window's
    current part back is on the safe side, and a window that far behind by the lag and the
    allowed lateness could take no more updates. The replay covers the span of every window
    after the earliest of those. A pool whose newest row is older than the journal keeps
    has been quiet (or gone) for longer than any replay could reach: its rows are final."""
    if not written:
        return ResumePoint(replay_from=0, final_before=None)
    newest = max(written.values())
    settled = _window_current_s(settings) + WATERMARK_LAG_S + settings.allowed_lateness_s
    final_before = {
        pool: end if end < newest - journal_keep_s(settings) else end - settled
        for pool, end in written.items()
    }
    active = [end - settled for end in written.values() if end >= newest - journal_keep_s(settings)]
    return ResumePoint(replay_from=min(active) - span_s(settings), final_before=final_before)


class RestartNeeds:
    """Where a restart of the chain path would replay from now, from what the pipeline has
    written (None while it has written nothing: a restart would replay everything)."""

    def __init__(self, warehouse_path: Path, pipeline: PipelineSettings) -> None:
        self._warehouse_path = warehouse_path
        self._pipeline = pipeline

    def __call__(self) -> int | None:
        written_chain, _ = newest_written(self._warehouse_path, beside_writer=True)
        if not written_chain:
            return None
        return resume_point(self._pipeline, written_chain).replay_from


def _window_current_s(settings: PipelineSettings) -> int:
    return settings.current_slices * settings.slice_s


def newest_written(
    warehouse_path: Path, beside_writer: bool = False
) -> tuple[dict[str, int], dict[str, int]]:
    """The newest window end written (unix s) per pool (chain_id:pool): of the chain windows,
    and of the hours. ``beside_writer``: asked from inside the running pipeline."""
    from dexwatch.core.warehouse.duckdb import DuckDBWarehouse

    if not warehouse_path.exists():
        return {}, {}
    warehouse = DuckDBWarehouse(warehouse_path)
    tables = warehouse.query(
        "select count(*) from information_schema.tables where table_name = 'pool_scores'",
        beside_writer,
    ).rows
    if not tables[0][0]:
        return {}, {}
    newest = warehouse.query(
        "select source, chain_id, pool, max(epoch(window_end)) from pool_scores "
        "group by source, chain_id, pool",
        beside_writer,
    ).rows
    by_source: dict[str, dict[str, int]] = {"chain": {}, "subgraph": {}}
    for source, chain_id, pool, end in newest:
        by_source.setdefault(source, {})[f"{chain_id}:{pool}"] = int(end)
    return by_source["chain"], by_source["subgraph"]
