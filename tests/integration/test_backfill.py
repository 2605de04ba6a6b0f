"""`dexwatch backfill --source chain`: a past range read from the chain and scored in batch,
resumed after an interruption, idempotent when run again."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dexwatch.app.workflows.backfill import backfill_chain
from dexwatch.app.workflows.bootstrap import compute_features
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import open_warehouse
from infra.local.market import MarketSimulator
from model.chain_window import TrainingParams, train_detector
from publishers.chain import run as read_chain
from tests.conftest import dexwatch_cli

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# Short slices so that half an hour of history has many windows; small read batches so
# that an interruption falls in the middle of the read.
PIPELINE = {"slice_s": 10, "current_slices": 3, "baseline_slices": 12}
HISTORY_HOURS = 0.5


class _Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def history(module_deployed, tmp_path_factory: pytest.TempPathFactory):
    """(settings, first block timestamp, last block timestamp) of half an hour of normal
    trading on the module's chain, with a model trained on all of it."""
    settings, deployment = module_deployed
    settings = settings.model_copy(
        update={
            "pipeline": settings.pipeline.model_copy(update=PIPELINE),
            # Named, not read from the deployment manifest: each test has its own state dir.
            "chain": settings.chain.model_copy(
                update={
                    "confirmations": 0,
                    "batch_blocks": 20,
                    "factories": list(deployment.factories),
                }
            ),
        }
    )
    first, last = MarketSimulator(settings, deployment).generate_history(HISTORY_HOURS)
    work = tmp_path_factory.mktemp("history")
    recorder = settings.model_copy(
        update={
            "chain": settings.chain.model_copy(
                update={"checkpoint_path": work / "checkpoint.json", "batch_blocks": 2000}
            )
        }
    )
    read_chain(recorder, once=True, record_to=work / "recording")
    rows = compute_features(settings, work / "recording" / "pool-events.jsonl", work)
    model_path = work / "model.joblib"
    train_detector(rows, TrainingParams(n_estimators=50)).save(model_path)
    settings = settings.model_copy(
        update={"model": settings.model.model_copy(update={"path": model_path})}
    )
    stamps = [_block_timestamp(settings, n) for n in (first, last)]
    return settings, stamps[0], stamps[1]


def _block_timestamp(settings: Settings, number: int) -> int:
    from publishers.chain.rpc import RpcClient

    with RpcClient.from_settings(settings.chain) as rpc:
        return rpc.get_headers([number])[number].timestamp


def _own(settings: Settings, state_dir: Path) -> Settings:
    """The same chain and model; a state dir (backfill work files, warehouse) of its own."""
    return settings.model_copy(update={"state_dir": state_dir})


def _scores(settings: Settings) -> dict[str, float]:
    result = open_warehouse(settings).query("select window_id, score from pool_scores")
    return {window_id: score for window_id, score in result.rows}


def _range(first: int, last: int) -> tuple[datetime, datetime]:
    # A range inside the history, away from its ends.
    return (
        datetime.fromtimestamp(first + 600, UTC).replace(second=0),
        datetime.fromtimestamp(last - 300, UTC).replace(second=0),
    )


def test_an_interrupted_backfill_resumes_and_matches_an_uninterrupted_one(history, tmp_path):
    settings, first, last = history
    start, end = _range(first, last)

    whole = backfill_chain(_own(settings, tmp_path / "whole"), start, end)
    assert not whole.resumed
    expected = _scores(_own(settings, tmp_path / "whole"))
    assert whole.rows == len(expected) > 50
    ends = open_warehouse(_own(settings, tmp_path / "whole")).query(
        "select min(epoch(window_end)), max(epoch(window_end)) from pool_scores"
    )
    low, high = ends.rows[0]
    assert start.timestamp() < low and high <= end.timestamp()

    seen: list[tuple[str, int, int]] = []

    def interrupt_after_two_batches(stage: str, done: int, total: int) -> None:
        seen.append((stage, done, total))
        if stage == "read blocks" and len([s for s in seen if s[0] == stage]) == 3:
            raise _Interrupted

    interrupted = _own(settings, tmp_path / "interrupted")
    with pytest.raises(_Interrupted):
        backfill_chain(interrupted, start, end, interrupt_after_two_batches)
    assert not interrupted.warehouse_path.exists()  # stopped while reading

    resumed = backfill_chain(interrupted, start, end)
    assert resumed.resumed
    assert _scores(interrupted) == expected

    # Idempotent: once more from scratch into the same warehouse, nothing doubles.
    again = backfill_chain(interrupted, start, end, restart=True)
    assert not again.resumed
    assert _scores(interrupted) == expected


def test_cli_backfill_reports_the_range_and_rejects_bad_ranges(history, tmp_path):
    import yaml

    settings, first, last = history
    start, end = _range(first, last)
    config = tmp_path / "dexwatch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "local": {"node_modules": str(settings.local.node_modules)},
                "chain": {"rpc_urls": settings.chain.rpc_urls, "confirmations": 0,
                          "factories": [f.model_dump() for f in settings.chain.factories]},
                "pipeline": PIPELINE,
                "model": {"path": str(settings.model.path)},
            }
        )
    )  # fmt: skip
    stamp = "%Y-%m-%dT%H:%M"
    done = dexwatch_cli(
        config, "backfill", "--source", "chain",
        "--from", f"{start:{stamp}}", "--to", f"{end:{stamp}}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"backfilled chain {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}" in done.stdout
    backwards = dexwatch_cli(
        config, "backfill", "--source", "chain",
        "--from", f"{end:{stamp}}", "--to", f"{start:{stamp}}",
    )  # fmt: skip
    assert backwards.returncode != 0
    assert "must be after --from" in backwards.stderr
