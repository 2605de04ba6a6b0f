"""The first models of a local run, trained in the background while the stack runs.

`dexwatch run` starts the chain, publishers and dashboard at once and leaves what is missing
of the models (the chain-window model, then the hourly one) to a trainer process of its own
(``python -m dexwatch.app.workflows.first_models``): Beam's batch runs and their log lines
stay in its log file, and the run's console shows a progress bar fed by the progress file
the trainer appends to. The pipeline starts when the chain model is ready and gains its
hourly branch when the hourly model is (local_run.py).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import FEATURES_VERSION
from dexwatch.core.features.hourly import HOURLY_FEATURES_VERSION
from infra.local.processes import ProcessSpec, StackError, log_path, running_pid
from infra.local.settings import LocalSettings

TRAINER = "first-models"
CHAIN = "chain"
HOURLY = "hourly"
# Each stage's share of a model's bar: mining the simulated history is most of the work.
_STAGE_WEIGHTS = {"mine": 0.75, "publish": 0.05, "features": 0.1, "hours": 0.1, "train": 0.1}
_STAGES = {
    CHAIN: ("mine", "publish", "features", "train"),
    HOURLY: ("mine", "publish", "hours", "train"),
}
_QUEUED = "after the one before"
TITLES = {CHAIN: "chain-window model", HOURLY: "hourly model"}


def missing_models(settings: LocalSettings, hourly: bool) -> dict[str, str]:
    """The models a local run must train first, in training order, each with the reason.

    Args:
        settings: where the models are (settings.model_path, settings.hourly_model_path).
        hourly: whether the run scores the hourly path too.
    """
    wanted = {CHAIN: (settings.model_path, FEATURES_VERSION)}
    if hourly:
        wanted[HOURLY] = (settings.hourly_model_path, HOURLY_FEATURES_VERSION)
    missing = {}
    for name, (path, version) in wanted.items():
        if not path.is_file():
            missing[name] = "none trained yet"
            continue
        trained_on = Detector.load(path).features_version
        if trained_on != version:
            missing[name] = f"the one at {path} has features version {trained_on}, not {version}"
    return missing


def trainer_spec(
    models: list[str], progress_file: Path, config: Path | None, env: dict[str, str]
) -> ProcessSpec:
    """The trainer process of ``models``, appending its progress to ``progress_file``."""
    config_args = [] if config is None else ["--config", str(config.resolve())]
    argv = [
        sys.executable, "-m", "dexwatch.app.workflows.first_models", *config_args,
        "--progress-file", str(progress_file), *models,
    ]  # fmt: skip
    return ProcessSpec(TRAINER, argv, env=env)


@dataclass
class _ModelState:
    task: TaskID
    ready: str | None = None


class TrainingWatch:
    """Follows the trainer through its progress file: a progress bar per model with an
    estimate of the time left, the models that became ready, the trainer's failure.

    Args:
        settings: the run's settings (its state directory).
        models: the models being trained, in order.
        progress_file: the file the trainer appends to.
    """

    def __init__(self, settings: LocalSettings, models: list[str], progress_file: Path):
        self._state_dir = settings.state_dir
        self._file = progress_file
        self._offset = 0
        self.progress = Progress(
            TextColumn("[bold]training[/] {task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stage]}"),
            auto_refresh=False,
            # Stages report every few seconds to minutes: estimate over the whole stretch.
            speed_estimate_period=900,
        )
        self._models = {
            name: _ModelState(
                self.progress.add_task(
                    TITLES[name], total=1.0, stage="starting" if i == 0 else _QUEUED
                )
            )
            for i, name in enumerate(models)
        }
        self.finished = False

    @property
    def pending(self) -> set[str]:
        """The models not ready yet."""
        return {name for name, state in self._models.items() if state.ready is None}

    def poll(self) -> list[str]:
        """Read what the trainer wrote since the last poll; returns the models that became
        ready. Raises StackError when the trainer failed or stopped before finishing."""
        newly_ready = self._handle(self._read())
        if not self.finished and running_pid(self._state_dir, TRAINER) is None:
            # Its last lines may have been written just before it exited.
            newly_ready += self._handle(self._read())
            if not self.finished:
                log = log_path(self._state_dir, TRAINER)
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise StackError(f"the trainer of the first models stopped; end of {log}:\n{tail}")
        return newly_ready

    def _handle(self, events: list[dict]) -> list[str]:
        newly_ready = []
        for event in events:
            name = event.get("model")
            state = self._models.get(name) if name else None
            if "failed" in event:
                raise StackError(f"training the first {name} model failed: {event['failed']}")
            if event.get("finished"):
                self.finished = True
            elif state is not None and "ready" in event:
                state.ready = event["ready"]
                self.progress.update(state.task, completed=1.0, visible=False)
                newly_ready.append(name)
            elif state is not None:
                self._advance(name, state, event["stage"], event["done"], event["total"])
        return newly_ready

    def close(self) -> None:
        """The trainer has finished: wait for it to exit (or stop it) and forget it."""
        from infra.local import processes

        deadline = time.monotonic() + 10
        while running_pid(self._state_dir, TRAINER) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        processes.stop(self._state_dir, TRAINER)

    def lines(self) -> list[str]:
        """One plain line per model still training (for a console that is not a terminal)."""
        lines = []
        for task in self.progress.tasks:
            if not task.visible or task.fields["stage"] == _QUEUED:
                continue
            left = task.time_remaining
            estimate = f", about {left:.0f} s left" if left is not None else ""
            stage = task.fields.get("stage", "")
            lines.append(f"training {task.description}: {task.percentage:.0f}% ({stage}{estimate})")
        return lines

    def _advance(self, name: str, state: _ModelState, stage: str, done: int, total: int) -> None:
        stages = _STAGES[name]
        weights = [_STAGE_WEIGHTS[s] for s in stages]
        index = stages.index(stage) if stage in stages else 0
        before = sum(weights[:index])
        fraction = (before + weights[index] * done / max(total, 1)) / sum(weights)
        label = {"mine": "mining simulated history", "publish": "recording its events",
                 "features": "computing features", "hours": "reading its hours",
                 "train": "fitting"}.get(stage, stage)  # fmt: skip
        self.progress.update(state.task, completed=min(fraction, 0.999), stage=label)

    def _read(self) -> list[dict]:
        if not self._file.exists():
            return []
        with self._file.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return [orjson.loads(line) for line in complete.splitlines() if line]


def _writer(progress_file: Path) -> Callable[[dict], None]:
    def write(event: dict) -> None:
        with progress_file.open("ab") as handle:
            handle.write(orjson.dumps(event) + b"\n")

    return write


def train(settings: LocalSettings, models: list[str], progress_file: Path) -> None:
    """Train ``models`` in order, reporting to ``progress_file`` (the trainer's work).

    Args:
        settings: the run's settings (model paths, bootstrap hours).
        models: CHAIN and/or HOURLY.
        progress_file: the JSON lines file TrainingWatch reads.
    """
    from dexwatch.app.workflows.bootstrap import bootstrap_hourly_model, bootstrap_model

    write = _writer(progress_file)
    for name in models:

        def progress(stage: str, done: int, total: int, name: str = name) -> None:
            write({"model": name, "stage": stage, "done": done, "total": total})

        try:
            if name == CHAIN:
                detector = bootstrap_model(settings, settings.model.bootstrap_hours, progress)
            else:
                hours = settings.model.hourly_bootstrap_hours
                detector, _ = bootstrap_hourly_model(settings, hours, progress)
        except Exception as err:
            write({"model": name, "failed": f"{type(err).__name__}: {err}"})
            raise
        write({"model": name, "ready": detector.version, "rows": detector.training_rows})
    write({"finished": True})


def main(argv: list[str] | None = None) -> None:
    from dexwatch.core import logs
    from infra.local.settings import load_local_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path)
    parser.add_argument("--progress-file", type=Path, required=True)
    parser.add_argument("models", nargs="+", choices=[CHAIN, HOURLY])
    args = parser.parse_args(argv)
    settings = load_local_settings(args.config).with_deployment()
    logs.configure(settings.logging.level, settings.logging.format)
    # SIGTERM (the run stopping) unwinds the stack, so the private anvils are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    train(settings, args.models, args.progress_file)


if __name__ == "__main__":
    main()
