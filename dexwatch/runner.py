"""``dexwatch run``: the whole detector on the local stack, as separate processes.

Each component runs in its own process, as it would in production (the publisher as a
Cloud Run service, the pipeline on Dataflow); this module only starts, watches and stops
them, and shows what flows through Pub/Sub.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live

from dexwatch.alerts import describe
from dexwatch.contracts.topics import MONITOR_SUBSCRIPTION
from dexwatch.monitor import PoolEventSummary, subscribe, subscribe_alerts
from dexwatch.settings import Settings

SIMULATOR = "simulator"
CHAIN_PUBLISHER = "chain-publisher"
PIPELINE = "pipeline"
COMPONENTS = (SIMULATOR, CHAIN_PUBLISHER, PIPELINE)
_PLAIN_REFRESH_S = 15.0


def _component_specs(settings: Settings, config: Path | None):  # type: ignore[no-untyped-def]
    from infra.local.processes import ProcessSpec

    base = [sys.executable, "-m", "dexwatch"]
    if config is not None:
        base += ["--config", str(config.resolve())]
    env = {"PUBSUB_EMULATOR_HOST": settings.local.emulator_host, "PYTHONUNBUFFERED": "1"}
    return [
        ProcessSpec(SIMULATOR, [*base, "simulate", "run"], env=env),
        ProcessSpec(CHAIN_PUBLISHER, [*base, "publish", "chain"], env=env),
        ProcessSpec(PIPELINE, [*base, "pipeline", "run"], env=env),
    ]


def run_local(
    settings: Settings,
    stop: threading.Event,
    duration_s: float | None = None,
    config: Path | None = None,
) -> None:
    from infra.local import processes, stack

    # Wide enough for the summary table when the output is a log file or a pipe.
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    state_dir = settings.local.state_dir
    before = stack.status(settings)
    started: list[str] = []
    if before.emulator_pid is None:
        started.append(stack.EMULATOR)
    if before.anvil_pid is None:
        started.append(stack.ANVIL)
    try:
        console.print("[bold]starting the local stack[/] (Pub/Sub emulator, anvil, contracts)")
        deployment = stack.up(settings)
        os.environ["PUBSUB_EMULATOR_HOST"] = settings.local.emulator_host
        names = {p.address: p.name for p in deployment.pools}
        if settings.model.serving == "local" and not settings.model_path.is_file():
            _bootstrap_model(settings, console)
        if (
            settings.pipeline.hourly
            and settings.model.serving == "local"
            and not settings.hourly_model_path.is_file()
        ):
            _bootstrap_hourly_model(settings, console)
        summary = PoolEventSummary(names)
        stop_monitor = subscribe(settings.pubsub.project, MONITOR_SUBSCRIPTION, summary)
        stop_alerts = subscribe_alerts(
            settings.pubsub.project,
            lambda alert: console.print(
                f"[bold red]ALERT[/] {names.get(alert.pool, alert.pool)}: {describe(alert)}",
                highlight=False,
                soft_wrap=True,
            ),
        )
        for spec in _component_specs(settings, config):
            if processes.running_pid(state_dir, spec.name) is None:
                processes.start(spec, state_dir)
                started.append(spec.name)
        console.print(
            f"running: {', '.join(started) or 'everything was already running'}; "
            f"logs in {state_dir / 'logs'}; Ctrl-C stops"
            + (f" (or after {duration_s:g} s)" if duration_s else "")
        )
        try:
            _watch(settings, summary, stop, duration_s, console)
        finally:
            stop_monitor()
            stop_alerts()
        console.print(summary.table())
    finally:
        # Clients before servers, so nothing logs connection errors on the way down.
        for name in sorted(started, key=lambda n: n in (stack.EMULATOR, stack.ANVIL)):
            processes.stop(state_dir, name)
        if started:
            console.print(f"stopped: {', '.join(started)}")


def _watch(
    settings: Settings,
    summary: PoolEventSummary,
    stop: threading.Event,
    duration_s: float | None,
    console: Console,
) -> None:
    from infra.local import processes

    deadline = time.monotonic() + duration_s if duration_s else None
    interactive = console.is_terminal
    last_plain = time.monotonic()
    display = (
        Live(summary.table(), console=console, refresh_per_second=2)
        if interactive
        else contextlib.nullcontext()
    )
    with display as live:
        while not stop.wait(0.5):
            for name in COMPONENTS:
                if processes.running_pid(settings.local.state_dir, name) is None:
                    log = processes.log_path(settings.local.state_dir, name)
                    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                    raise RuntimeError(f"{name} stopped unexpectedly; end of {log}:\n{tail}")
            if live is not None:
                live.update(summary.table())
            elif time.monotonic() - last_plain >= _PLAIN_REFRESH_S:
                last_plain = time.monotonic()
                for line in summary.lines() or ["no events yet"]:
                    console.print(line, highlight=False)
            if deadline is not None and time.monotonic() >= deadline:
                break


def _bootstrap_model(settings: Settings, console: Console) -> None:
    from dexwatch.bootstrap import bootstrap_model

    hours = settings.model.bootstrap_hours
    console.print(
        f"no model yet: training the first one on {hours:g} simulated hours of normal traffic "
        "(once; `dexwatch model bootstrap` does the same)"
    )
    detector = bootstrap_model(settings, hours, _progress_printer(console))
    console.print(f"model {detector.version} trained on {detector.training_rows} windows")


def _bootstrap_hourly_model(settings: Settings, console: Console) -> None:
    from dexwatch.bootstrap import bootstrap_hourly_model

    hours = settings.model.hourly_bootstrap_hours
    console.print(
        f"pipeline.hourly and no hourly model yet: training the first one on {hours} simulated "
        "hours of normal traffic (once; `dexwatch model bootstrap-hourly` does the same)"
    )
    detector, _ = bootstrap_hourly_model(settings, hours, _progress_printer(console))
    console.print(f"hourly model {detector.version} trained on {detector.training_rows} pool hours")


def _progress_printer(console: Console) -> Callable[[str, int, int], None]:
    """Prints each stage's progress every 25 %."""
    last: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent >= last.get(stage, -25) + 25:
            last[stage] = percent
            console.print(f"  {stage}: {percent}%", highlight=False)

    return progress
