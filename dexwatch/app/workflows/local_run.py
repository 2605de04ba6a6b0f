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
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live

from dexwatch.app.dashboard import start_dashboard
from dexwatch.app.views.alerts_tail import describe
from dexwatch.app.views.monitor import (
    PoolEventSummary,
    describe_hour,
    pool_key,
    subscribe,
    subscribe_alerts,
    subscribe_hourly,
)
from dexwatch.app.workflows import first_models
from dexwatch.app.workflows.first_models import TrainingWatch
from dexwatch.core import logs
from dexwatch.core.emulator import emulator_environment, use_pubsub_emulator
from dexwatch.core.schemas.topics import MONITOR_SUBSCRIPTION
from infra.local.processes import StackError
from infra.local.settings import LocalSettings

if TYPE_CHECKING:
    from infra.local.stack import LocalChain

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


def _component_env(settings: LocalSettings) -> dict[str, str]:
    return {**emulator_environment(settings.local.emulator_host), "PYTHONUNBUFFERED": "1"}


def _config_args(config: Path | None) -> list[str]:
    return [] if config is None else ["--config", str(config.resolve())]


def _base_argv(config: Path | None) -> list[str]:
    return [sys.executable, "-m", "dexwatch", *_config_args(config)]


def _component_specs(  # type: ignore[no-untyped-def]
    settings: LocalSettings, config: Path | None, start_blocks: dict[str, int | None]
):
    """Every component but the pipeline (which waits for its model: ``_pipeline_spec``): per
    local chain a simulator, a chain publisher (from ``start_blocks[chain name]`` when
    given) and a subgraph publisher, and one stand-in for The Graph indexing them all."""
    from infra.local.processes import ProcessSpec

    base = _base_argv(config)
    env = _component_env(settings)
    several = len(settings.chains) > 1
    specs = []
    for chain in settings.local_chains():
        name = chain.chain.name
        one = ["--chain", name] if several else []
        start = start_blocks.get(name)
        from_block = [] if start is None else ["--start-block", str(start)]
        specs += [
            ProcessSpec(_of(SIMULATOR, chain, several), [*base, "simulate", "run", *one], env=env),
            ProcessSpec(
                _of(CHAIN_PUBLISHER, chain, several),
                [*base, "publish", "chain", *one, *from_block],
                env=env,
            ),
        ]
    if uses_local_subgraph(settings):
        # Its lag and faults (local.subgraph_standin) come from the same config and
        # environment, like every component's settings. It indexes every local chain.
        standin = [sys.executable, "-m", "infra.local.subgraph", *_config_args(config)]
        local = settings.local
        specs.append(
            ProcessSpec(SUBGRAPH_STANDIN, standin, local.host, local.subgraph_port, env=env)
        )
        for chain in settings.subgraph_chains():
            one = ["--chain", chain.chain.name] if several else []
            specs.append(
                ProcessSpec(
                    _of(SUBGRAPH_PUBLISHER, chain, several),
                    [*base, "publish", "subgraph", *one],
                    env=env,
                )
            )
    return [*specs, *_slack_specs(settings, base, env)]


def _of(component: str, chain: LocalSettings, several: bool) -> str:
    """A per-chain component's process name: the chain's name follows with several chains."""
    return f"{component}-{chain.chain.name}" if several else component


def _pipeline_spec(settings: LocalSettings, config: Path | None, hourly: bool):  # type: ignore[no-untyped-def]
    from infra.local.processes import ProcessSpec

    env = {**_component_env(settings), "DEXWATCH_PIPELINE__HOURLY": str(hourly).lower()}
    return ProcessSpec(PIPELINE, [*_base_argv(config), "pipeline", "run"], env=env)


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


def _history_start(settings: LocalSettings, training: bool) -> int | None:
    """Genesis time of a chain that starts local.history_hours (first_run_history_hours
    while the first models train) before the current whole hour, or None to start it now."""
    local = settings.local
    hours = (
        min(local.history_hours, local.first_run_history_hours) if training else local.history_hours
    )
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
    # The console is for dexwatch's own lines; log records (Beam's among them) go to a file.
    logs.configure(settings.logging.level, settings.logging.format, to_file=_run_log(settings))
    started: list[str] = []
    if processes.running_pid(state_dir, stack.EMULATOR) is None:
        started.append(stack.EMULATOR)
    fresh_chain = stack.fresh_chains(settings)
    if fresh_chain:
        started += [stack.anvil_name(chain) for chain in settings.local_chains()]
    dashboard = None
    try:
        hourly = scores_hours(settings)
        local_models = settings.model.serving == "local"
        missing = first_models.missing_models(settings, hourly) if local_models else {}
        if uses_local_subgraph(settings):
            settings.subgraph_chains()  # two chains on one subgraph: refused before starting
        console.print("[bold]starting the local stack[/] (Pub/Sub emulator, anvil, contracts)")
        genesis = _history_start(settings, bool(missing)) if fresh_chain else None
        chains = stack.up(settings, genesis_timestamp=genesis)
        dashboard = start_dashboard(settings, settings.local.host, settings.local.dashboard_port)
        console.print(f"[bold]dashboard[/] on {dashboard.url}", highlight=False)
        training = _start_training(settings, missing, config, console, started)
        start_blocks: dict[str, int | None] = {}
        if genesis is not None:
            for chain in chains:
                if len(chains) > 1:
                    console.print(f"chain {chain.name}:")
                start_blocks[chain.name] = _mine_history(chain.settings, chain.deployment, console)
        use_pubsub_emulator(settings.local.emulator_host)
        names = _pool_names(chains)
        summary = PoolEventSummary(names)
        # Every chain's events: the shared topic's, and those of chains with their own.
        stop_monitors = [
            subscribe(settings.pubsub.project, subscription, summary)
            for subscription in settings.event_subscriptions(MONITOR_SUBSCRIPTION)
        ]
        stop_alerts = subscribe_alerts(
            settings.pubsub.project,
            lambda alert: console.print(
                f"[bold red]ALERT[/] {names.get(pool_key(alert.chain_id, alert.pool), alert.pool)}"
                f": {describe(alert)}",
                highlight=False,
                soft_wrap=True,
            ),
        )
        stop_hourly = subscribe_hourly(
            settings.pubsub.project,
            lambda hour: console.print(
                "[bold cyan]HOURLY[/] "
                + describe_hour(hour, names.get(pool_key(hour.chain_id, hour.pool), hour.pool)),
                highlight=False,
                soft_wrap=True,
            ),
        )
        specs = _component_specs(settings, config, start_blocks)
        for spec in specs:
            if processes.running_pid(state_dir, spec.name) is None:
                processes.start(spec, state_dir)
                started.append(spec.name)
        pipeline = _Pipeline(settings, config, hourly, console, started, duration_s)
        stop_slack = _follow_slack(settings, console)
        if SUBGRAPH_STANDIN in started and settings.local.subgraph_standin.model_fields_set:
            from infra.local.subgraph.server import describe_behaviour

            console.print(
                f"the subgraph stand-in: {describe_behaviour(settings.local.subgraph_standin)}"
            )
        try:
            components = [spec.name for spec in specs]
            _watch(settings, components, summary, stop, duration_s, console, pipeline, training)
        finally:
            for stop_monitor in stop_monitors:
                stop_monitor()
            stop_alerts()
            stop_hourly()
            stop_slack()
        console.print(summary.table())
    finally:
        if dashboard is not None:
            dashboard.stop()
        # Clients before servers, so nothing logs connection errors on the way down.
        servers = (SUBGRAPH_STANDIN, SLACK_STANDIN, stack.EMULATOR)
        for name in sorted(started, key=lambda n: n in servers or n.startswith(stack.ANVIL)):
            processes.stop(state_dir, name)
        if started:
            console.print(f"stopped: {', '.join(started)}")


def _pool_names(chains: list[LocalChain]) -> dict[str, str]:
    """Each local pool's name by ``pool_key``, its chain's name first with several chains
    (the chains' contracts may share addresses)."""
    return {
        pool_key(chain.deployment.chain_id, pool.address): (
            f"{chain.name} {pool.name}" if len(chains) > 1 else pool.name
        )
        for chain in chains
        for pool in chain.deployment.pools
    }


def _run_log(settings: LocalSettings) -> Path:
    from infra.local.processes import log_path

    return log_path(settings.state_dir, "run")


def _start_training(
    settings: LocalSettings,
    missing: dict[str, str],
    config: Path | None,
    console: Console,
    started: list[str],
) -> TrainingWatch | None:
    """Start the trainer of the missing first models; None when none is missing."""
    from infra.local import processes

    if not missing:
        return None
    for name, why in missing.items():
        console.print(f"{first_models.TITLES[name]}: {why}; training one in the background")
    log = processes.log_path(settings.state_dir, first_models.TRAINER)
    console.print(
        "  on the simulator's normal traffic (once; `dexwatch model bootstrap` and "
        f"`bootstrap-hourly` do the same); its log: {log}",
        highlight=False,
    )
    progress_file = settings.state_dir / "run" / f"{first_models.TRAINER}.progress"
    progress_file.parent.mkdir(parents=True, exist_ok=True)
    progress_file.unlink(missing_ok=True)
    spec = first_models.trainer_spec(list(missing), progress_file, config, _component_env(settings))
    processes.start(spec, settings.state_dir)
    started.append(first_models.TRAINER)
    return TrainingWatch(settings, list(missing), progress_file)


class _Pipeline:
    """The pipeline process, started once the chain-window model exists and restarted with
    its hourly branch once the hourly model does (what it has not read waits in its
    subscriptions; its sinks are idempotent, so a restart doubles nothing)."""

    def __init__(
        self,
        settings: LocalSettings,
        config: Path | None,
        hourly: bool,
        console: Console,
        started: list[str],
        duration_s: float | None,
    ) -> None:
        from infra.local import processes

        self._settings, self._config, self._hourly = settings, config, hourly
        self._console, self._started, self._duration_s = console, started, duration_s
        # A pipeline already running (another run's) is left as it is.
        self._external = processes.running_pid(settings.state_dir, PIPELINE) is not None
        self._with_hourly: bool | None = None
        self._announced = False

    @property
    def running(self) -> bool:
        return self._external or self._with_hourly is not None

    def update(self, pending: set[str]) -> None:
        """Start or restart the pipeline for the models ready now (``pending``: not yet)."""
        from infra.local import processes

        if not self._external and first_models.CHAIN not in pending:
            with_hourly = self._hourly and first_models.HOURLY not in pending
            state_dir = self._settings.state_dir
            if self._with_hourly != with_hourly:
                if self._with_hourly is not None:
                    self._console.print("restarting the pipeline with its hourly branch")
                    processes.stop(state_dir, PIPELINE)
                spec = _pipeline_spec(self._settings, self._config, with_hourly)
                processes.start(spec, state_dir)
                if self._with_hourly is None:
                    self._started.append(PIPELINE)
                self._with_hourly = with_hourly
        if self.running and not self._announced:
            self._announced = True
            self._console.print(
                f"running: {', '.join(self._started) or 'everything was already running'}; "
                f"logs in {self._settings.state_dir / 'logs'}; Ctrl-C stops"
                + (f" (or after {self._duration_s:g} s)" if self._duration_s else ""),
                highlight=False,
            )


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
    pipeline: _Pipeline,
    training: TrainingWatch | None,
) -> None:
    from infra.local import processes

    # The duration counts once everything runs (the pipeline waits for its first model).
    deadline: float | None = None
    interactive = console.is_terminal
    last_plain = time.monotonic()
    display = (
        Live(summary.table(), console=console, refresh_per_second=2)
        if interactive
        else contextlib.nullcontext()
    )
    pipeline.update(training.pending if training else set())
    with display as live:
        while not stop.wait(0.5):
            if training is not None:
                for name in training.poll():
                    console.print(f"{first_models.TITLES[name]} ready", highlight=False)
                if training.finished:
                    training.close()
                    training = None
                    pipeline.update(set())
                elif training.pending:
                    # (With nothing pending the trainer is about to finish: it is waited for.)
                    pipeline.update(training.pending)
            for name in [*components, *([PIPELINE] if pipeline.running else [])]:
                if processes.running_pid(settings.state_dir, name) is None:
                    log = processes.log_path(settings.state_dir, name)
                    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                    raise StackError(f"{name} stopped unexpectedly; end of {log}:\n{tail}")
            if live is not None:
                shown = [summary.table()]
                if training is not None:
                    shown.insert(0, training.progress.get_renderable())
                live.update(Group(*shown))
            elif time.monotonic() - last_plain >= _PLAIN_REFRESH_S:
                last_plain = time.monotonic()
                lines = summary.lines() or ["no events yet"]
                for line in [*(training.lines() if training else []), *lines]:
                    console.print(line, highlight=False)
            if duration_s and deadline is None and pipeline.running:
                deadline = time.monotonic() + duration_s
            if deadline is not None and time.monotonic() >= deadline:
                break
