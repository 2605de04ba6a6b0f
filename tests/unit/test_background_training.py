"""The first models trained in the background of `dexwatch run`: which are missing, how the
run follows the trainer through its progress file, and when the pipeline starts and gains
its hourly branch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from rich.console import Console

from dexwatch.app.workflows import first_models, local_run
from dexwatch.app.workflows.first_models import CHAIN, HOURLY, TRAINER, TrainingWatch
from dexwatch.core.features.chain import FEATURE_NAMES, FEATURES_VERSION
from infra.local import processes
from infra.local.processes import ProcessSpec, StackError
from infra.local.settings import LocalSettings
from model.training import TrainingParams, fit_detector


def _settings(tmp_path: Path) -> LocalSettings:
    return LocalSettings(state_dir=tmp_path / "state")


def _save_chain_model(settings: LocalSettings, features_version: int) -> None:
    x = np.random.default_rng(0).normal(size=(64, len(FEATURE_NAMES)))
    detector = fit_detector(x, FEATURE_NAMES, features_version, TrainingParams(n_estimators=10))
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    detector.save(settings.model_path)


def test_missing_models_names_each_with_its_reason(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert first_models.missing_models(settings, hourly=True) == {
        CHAIN: "none trained yet",
        HOURLY: "none trained yet",
    }
    _save_chain_model(settings, FEATURES_VERSION)
    assert first_models.missing_models(settings, hourly=False) == {}
    assert list(first_models.missing_models(settings, hourly=True)) == [HOURLY]
    _save_chain_model(settings, FEATURES_VERSION - 1)
    why = first_models.missing_models(settings, hourly=False)[CHAIN]
    assert f"features version {FEATURES_VERSION - 1}, not {FEATURES_VERSION}" in why


def _write(path: Path, *events: dict) -> None:
    with path.open("ab") as handle:
        for event in events:
            handle.write(orjson.dumps(event) + b"\n")


@pytest.fixture
def trainer(tmp_path: Path):
    """A stand-in trainer process (it only sleeps: the events are written by the test),
    tracked under the real name, and the watch over its progress file."""
    settings = _settings(tmp_path)
    progress = tmp_path / "progress.jsonl"
    spec = ProcessSpec(TRAINER, [sys.executable, "-c", "import time; time.sleep(60)"])
    processes.start(spec, settings.state_dir)
    yield settings, progress, TrainingWatch(settings, [CHAIN, HOURLY], progress)
    processes.stop(settings.state_dir, TRAINER)


def test_the_watch_follows_stages_readiness_and_the_end(trainer) -> None:
    settings, progress, watch = trainer
    assert watch.poll() == [] and watch.pending == {CHAIN, HOURLY}
    _write(progress, {"model": CHAIN, "stage": "mine", "done": 50, "total": 100})
    assert watch.poll() == []
    (chain, hourly) = watch.progress.tasks
    # Half the mining, which is three quarters of the work.
    assert chain.completed == pytest.approx(0.75 / 1.0 * 0.5)
    assert "training chain-window model: 38% (mining simulated history" in watch.lines()[0]
    # A line cut by the reader's timing is read whole at the next poll.
    progress.open("ab").write(b'{"model": "chain", "ready": "v1", ')
    assert watch.poll() == []
    progress.open("ab").write(b'"rows": 10}\n')
    assert watch.poll() == [CHAIN] and watch.pending == {HOURLY}
    assert watch.lines() == []  # the hourly model waits its turn
    _write(progress, {"model": HOURLY, "stage": "mine", "done": 1, "total": 100})
    watch.poll()
    assert [line.split(":")[0] for line in watch.lines()] == ["training hourly model"]
    _write(progress, {"model": HOURLY, "ready": "v2", "rows": 5}, {"finished": True})
    assert watch.poll() == [HOURLY] and watch.finished
    watch.close()
    assert processes.running_pid(settings.state_dir, TRAINER) is None


def test_a_failed_model_stops_the_run_with_its_error(trainer) -> None:
    _, progress, watch = trainer
    _write(progress, {"model": CHAIN, "failed": "StackError: anvil did not start"})
    with pytest.raises(StackError, match="first chain model failed: StackError: anvil"):
        watch.poll()


def test_a_trainer_gone_without_finishing_is_an_error_with_its_log(trainer) -> None:
    settings, progress, watch = trainer
    _write(progress, {"model": CHAIN, "ready": "v1", "rows": 10})
    processes.stop(settings.state_dir, TRAINER)
    with pytest.raises(StackError, match="trainer of the first models stopped"):
        watch.poll()


def test_the_pipeline_starts_with_the_chain_model_and_restarts_for_the_hourly_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(processes, "running_pid", lambda state_dir, name: None)
    monkeypatch.setattr(
        processes, "start",
        lambda spec, state_dir: calls.append(("start", spec.env["DEXWATCH_PIPELINE__HOURLY"])),
    )  # fmt: skip
    monkeypatch.setattr(processes, "stop", lambda state_dir, name: calls.append(("stop", name)))
    started: list[str] = []
    console = Console(file=open(tmp_path / "console.txt", "w"))  # noqa: SIM115
    pipeline = local_run._Pipeline(settings, None, True, console, started, None)
    pipeline.update({CHAIN, HOURLY})
    assert calls == [] and not pipeline.running
    pipeline.update({HOURLY})
    assert calls == [("start", "false")] and started == [local_run.PIPELINE]
    pipeline.update({HOURLY})
    assert calls == [("start", "false")]
    pipeline.update(set())
    assert calls[1:] == [("stop", local_run.PIPELINE), ("start", "true")]
    assert started == [local_run.PIPELINE]
    console.file.close()
    printed = (tmp_path / "console.txt").read_text()
    assert printed.count("running: pipeline") == 1
    assert "restarting the pipeline with its hourly branch" in printed
