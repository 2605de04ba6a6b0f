"""``dexwatch run``: the whole detector on the local stack, as separate processes.

Each component runs in its own process, as it would in production (the publisher as a
Cloud Run service, the pipeline on Dataflow); this module only starts, watches and stops
them, and shows what flows through Pub/Sub.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live

from dexwatch.app.views.alerts_tail import describe
from dexwatch.app.views.monitor import (
    PoolEventSummary,
    describe_hour,
    subscribe,
    subscribe_alerts,
    subscribe_hourly,
)
from dexwatch.core.detector import Detector
from dexwatch.core.emulator import emulator_environment, use_pubsub_emulator
from dexwatch.core.features.chain import FEATURES_VERSION
from dexwatch.core.features.hourly import HOURLY_FEATURES_VERSION
from dexwatch.core.schemas.topics import MONITOR_SUBSCRIPTION
from infra.local.processes import StackError
from infra.local.settings import LocalSettings

SIMULATOR = "simulator"
CHAIN_PUBLISHER = "chain-publisher"
SUBGRAPH_STANDIN = "subgraph-standin"
SUBGRAPH_PUBLISHER = "subgraph-publisher"
SLACK_STANDIN = "slack-standin"
SLACK_CONSUMER = "slack-consumer"
PIPELINE = "pipeline"
_PLAIN_REFRESH_S = 15.0


def uses_local_subgraph(settings: LocalSettings) -> bool:
    """True when the subgraph publisher reads the local stand-in for The Graph."""
    return settings.subgraph.endpoint_url == settings.local.subgraph_url


def scores_hours(settings: LocalSettings) -> bool:
    """Whether `dexwatch run`'s pipeline scores the hourly rows: pipeline.hourly when it is
    set, otherwise whenever the subgraph publisher runs (against the local stand-in)."""
    if "hourly" in settings.pipeline.model_fields_set:
        return settings.pipeline.hourly
    return uses_local_subgraph(settings)


def _component_specs(  # type: ignore[no-untyped-def]
    settings: LocalSettings, config: Path | None, chain_start_block: int | None, hourly: bool
):
    from infra.local.processes import ProcessSpec

    config_args = [] if config is None else ["--config", str(config.resolve())]
    base = [sys.executable, "-m", "dexwatch", *config_args]
    env = {**emulator_environment(settings.local.emulator_host), "PYTHONUNBUFFERED": "1"}
    publisher_env = dict(env)
    if chain_start_block is not None:
        publisher_env["DEXWATCH_CHAIN__START_BLOCK"] = str(chain_start_block)
    pipeline_env = {**env, "DEXWATCH_PIPELINE__HOURLY": str(hourly).lower()}
    specs = [
        ProcessSpec(SIMULATOR, [*base, "simulate", "run"], env=env),
        ProcessSpec(CHAIN_PUBLISHER, [*base, "publish", "chain"], env=publisher_env),
    ]
    if uses_local_subgraph(settings):
        # Its lag and faults (local.subgraph_standin) come from the same config and
        # environment, like every component's settings.
        standin = [sys.executable, "-m", "infra.local.subgraph", *config_args]
        local = settings.local
        specs += [
            ProcessSpec(SUBGRAPH_STANDIN, standin, local.host, local.subgraph_port, env=env),
            ProcessSpec(SUBGRAPH_PUBLISHER, [*base, "publish", "subgraph"], env=env),
        ]
    return [
        *specs,
        *_slack_specs(settings, base, env),
        ProcessSpec(PIPELINE, [*base, "pipeline", "run"], env=pipeline_env),
    ]


def _slack_specs(settings: LocalSettings, base: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    """The Slack consumer when Slack is configured, and the stand-in of Slack it posts to
    when slack.local_standin."""
    from infra.local.processes import ProcessSpec

    slack = settings.slack
    if not slack.enabled:
        return []
    specs = []
    if slack.local_standin:
        standin = [
            sys.executable, "-m", "infra.local.slack_standin", "--port", str(slack.standin_port),
            "--interactivity-url", f"http://{slack.host}:{slack.port}/slack/actions",
        ]  # fmt: skip
        for channel in slack.channels():
            standin += ["--channel", channel]
        specs.append(ProcessSpec(SLACK_STANDIN, standin, "127.0.0.1", slack.standin_port, env=env))
    consumer = [*base, "slack", "serve"]
    return [*specs, ProcessSpec(SLACK_CONSUMER, consumer, slack.host, slack.port, env=env)]


def _history_start(settings: LocalSettings) -> int | None:
    """Genesis time of a chain that starts local.history_hours before the current whole
    hour, or None to start it now."""
    hours = settings.local.history_hours
    if hours <= 0:
        return None
    return int(time.time()) // 3600 * 3600 - round(hours * 3600)


def _mine_history(settings: LocalSettings, deployment, console: Console) -> int | None:  # type: ignore[no-untyped-def]
    """Mine the market from the back-dated deployment up to now, as fast as anvil goes:
    history_block_interval_s blocks, then live-like ones for the last live_history_minutes.
    Returns the first live-like block (None if there is no history to mine)."""
    from infra.local import evm
    from infra.local.market import MarketSimulator

    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        _, latest = evm.latest_block(rpc)
    finally:
        rpc.close()
    early_interval = settings.simulator.history_block_interval_s
    live_interval = max(1, round(settings.simulator.block_interval_s))
    total = int(time.time()) - latest
    early = max(0, total - round(settings.local.live_history_minutes * 60))
    early = early // early_interval * early_interval
    live = (total - early) // live_interval * live_interval
    if early + live <= 0:
        return None
    console.print(
        f"the new chain starts {total / 3600:.1f} h in the past: mining that history "
        "(complete hours for the subgraph path)"
    )
    started = time.monotonic()
    simulator = MarketSimulator(settings, deployment)
    first = last = None
    if early:
        first, last = simulator.generate_history(early / 3600, block_interval_s=early_interval)
    live_first = None
    if live:
        live_first, last = simulator.generate_history(live / 3600, block_interval_s=live_interval)
    console.print(
        f"  mined blocks {first or live_first}..{last} in {time.monotonic() - started:.0f} s"
    )
    return live_first


def run_local(
    settings: LocalSettings,
    stop: threading.Event,
    duration_s: float | None = None,
    config: Path | None = None,
) -> None:
    from infra.local import processes, stack

    # Wide enough for the summary table when the output is a log file or a pipe.
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    state_dir = settings.state_dir
    before = stack.status(settings)
    started: list[str] = []
    if before.emulator_pid is None:
        started.append(stack.EMULATOR)
    fresh_chain = before.anvil_pid is None
    if fresh_chain:
        started.append(stack.ANVIL)
    try:
        # First models first (on private chains): the live chain's history must run up to the
        # moment the components start, or the chain windows wait out a new baseline.
        local = settings.model.serving == "local"
        if local and _needs_model(settings.model_path, FEATURES_VERSION, console):
            _bootstrap_model(settings, console)
        hourly = scores_hours(settings)
        if (
            hourly
            and local
            and _needs_model(settings.hourly_model_path, HOURLY_FEATURES_VERSION, console)
        ):
            _bootstrap_hourly_model(settings, console)
        console.print("[bold]starting the local stack[/] (Pub/Sub emulator, anvil, contracts)")
        genesis = _history_start(settings) if fresh_chain else None
        deployment = stack.up(settings, genesis_timestamp=genesis)
        chain_start_block = None
        if genesis is not None:
            chain_start_block = _mine_history(settings, deployment, console)
        use_pubsub_emulator(settings.local.emulator_host)
        names = {p.address: p.name for p in deployment.pools}
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
        stop_hourly = subscribe_hourly(
            settings.pubsub.project,
            lambda hour: console.print(
                f"[bold cyan]HOURLY[/] {describe_hour(hour, names.get(hour.pool, hour.pool))}",
                highlight=False,
                soft_wrap=True,
            ),
        )
        specs = _component_specs(settings, config, chain_start_block, hourly)
        for spec in specs:
            if processes.running_pid(state_dir, spec.name) is None:
                processes.start(spec, state_dir)
                started.append(spec.name)
        console.print(
            f"running: {', '.join(started) or 'everything was already running'}; "
            f"logs in {state_dir / 'logs'}; Ctrl-C stops"
            + (f" (or after {duration_s:g} s)" if duration_s else "")
        )
        stop_slack = _follow_slack(settings, console)
        if SUBGRAPH_STANDIN in started and settings.local.subgraph_standin.model_fields_set:
            from infra.local.subgraph.server import describe_behaviour

            console.print(
                f"the subgraph stand-in: {describe_behaviour(settings.local.subgraph_standin)}"
            )
        try:
            _watch(settings, [spec.name for spec in specs], summary, stop, duration_s, console)
        finally:
            stop_monitor()
            stop_alerts()
            stop_hourly()
            stop_slack()
        console.print(summary.table())
    finally:
        # Clients before servers, so nothing logs connection errors on the way down.
        servers = (SUBGRAPH_STANDIN, SLACK_STANDIN, stack.EMULATOR, stack.ANVIL)
        for name in sorted(started, key=lambda n: n in servers):
            processes.stop(state_dir, name)
        if started:
            console.print(f"stopped: {', '.join(started)}")


def _follow_slack(settings: LocalSettings, console: Console) -> Callable[[], None]:
    """Print what the consumer posts to the local stand-in of Slack, when it runs."""
    slack = settings.slack
    if not (slack.enabled and slack.local_standin):
        return lambda: None
    from dexwatch.app.views.slack_feed import follow_standin

    console.print(
        "Slack (local stand-in): posts are printed as [bold magenta]SLACK[/] lines; "
        "`dexwatch slack show` renders them"
    )
    return follow_standin(
        slack.standin_port,
        lambda line: console.print(
            f"[bold magenta]SLACK[/] {line}", highlight=False, soft_wrap=True
        ),
    )


def _watch(
    settings: LocalSettings,
    components: list[str],
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
            for name in components:
                if processes.running_pid(settings.state_dir, name) is None:
                    log = processes.log_path(settings.state_dir, name)
                    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                    raise StackError(f"{name} stopped unexpectedly; end of {log}:\n{tail}")
            if live is not None:
                live.update(summary.table())
            elif time.monotonic() - last_plain >= _PLAIN_REFRESH_S:
                last_plain = time.monotonic()
                for line in summary.lines() or ["no events yet"]:
                    console.print(line, highlight=False)
            if deadline is not None and time.monotonic() >= deadline:
                break


def _needs_model(path: Path, features_version: int, console: Console) -> bool:
    """No model at ``path``, or one of features this dexwatch no longer computes."""
    if not path.is_file():
        return True
    trained_on = Detector.load(path).features_version
    if trained_on == features_version:
        return False
    console.print(
        f"the model at {path} was trained on features version {trained_on}; this dexwatch "
        f"computes version {features_version}: training a new first model"
    )
    return True


def _bootstrap_model(settings: LocalSettings, console: Console) -> None:
    from dexwatch.app.workflows.bootstrap import bootstrap_model

    hours = settings.model.bootstrap_hours
    console.print(
        f"no model yet: training the first one on {hours:g} simulated hours of normal traffic "
        "(once; `dexwatch model bootstrap` does the same)"
    )
    detector = bootstrap_model(settings, hours, _progress_printer(console))
    console.print(f"model {detector.version} trained on {detector.training_rows} windows")


def _bootstrap_hourly_model(settings: LocalSettings, console: Console) -> None:
    from dexwatch.app.workflows.bootstrap import bootstrap_hourly_model

    hours = settings.model.hourly_bootstrap_hours
    console.print(
        f"no hourly model yet: training the first one on {hours} simulated "
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
