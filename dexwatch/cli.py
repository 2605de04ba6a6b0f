"""The ``dexwatch`` command line: one entry point for the local stack, the simulator,
the publishers and the whole detector.

Commands import their component lazily so ``--help`` stays fast and a command only needs
the dependencies it uses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from dexwatch import logs
from dexwatch.contracts.labels import INCIDENT_KINDS
from dexwatch.settings import Settings, SettingsError, load_settings, redact_url

_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]

app = typer.Typer(
    name="dexwatch",
    help="Detect abnormal liquidity on Uniswap V3 and SushiSwap pools, as a stream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
local_app = typer.Typer(
    help="The embedded local stack: Pub/Sub emulator and anvil with the real contracts.",
    no_args_is_help=True,
)
simulate_app = typer.Typer(
    help="The simulated market on the local chain, and incident injection.", no_args_is_help=True
)
publish_app = typer.Typer(
    help="Publishers that feed the pool-events and pool-hourly topics.", no_args_is_help=True
)
pipeline_app = typer.Typer(
    help="The Beam pipeline: windows, features, scores, anomalies, alerts.", no_args_is_help=True
)
model_app = typer.Typer(
    help="The detector's models: training, the registry, promotion and rollback.",
    no_args_is_help=True,
)
alerts_app = typer.Typer(help="The alerts topic.", no_args_is_help=True)
app.add_typer(local_app, name="local")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(model_app, name="model")
app.add_typer(alerts_app, name="alerts")
app.add_typer(simulate_app, name="simulate")
app.add_typer(publish_app, name="publish")

if TYPE_CHECKING:
    from rich.progress import TaskID

log = logging.getLogger("dexwatch.cli")


class _State:
    config: Path | None = None


@contextlib.contextmanager
def _stage_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per stage of a long command, fed by ``(stage, done, total)`` calls."""
    from rich.progress import Progress

    with Progress(transient=not sys.stderr.isatty()) as progress:
        tasks: dict[str, TaskID] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield on_progress


def _fail(message: str, code: int = 1) -> NoReturn:
    """Stop with one error line; messages may quote what a node or server answered, so the
    line is scrubbed of secrets."""
    typer.secho(f"error: {logs.scrub(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        settings = load_settings(_State.config)
    except SettingsError as err:
        _fail(str(err), code=2)
    logs.configure(settings.logging.level, settings.logging.format)
    return settings


def _use_local_emulator(settings: Settings) -> None:
    # google-cloud-pubsub clients (and Beam's) find the emulator through this variable.
    if settings.pubsub.emulator_host:
        os.environ["PUBSUB_EMULATOR_HOST"] = settings.pubsub.emulator_host


def _stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM, so long-running commands can finish cleanly."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML settings file (default: $DEXWATCH_CONFIG or ./dexwatch.yaml).",
        ),
    ] = None,
) -> None:
    """Settings come from the YAML file and DEXWATCH_* environment variables (nested keys
    joined by __, e.g. DEXWATCH_CHAIN__CONFIRMATIONS=5); unknown keys are errors."""
    logs.install_excepthooks()
    _State.config = config


@app.command("config")
def show_config() -> None:
    """Print the effective settings as YAML (RPC URLs reduced to scheme://host:port, other
    secrets as ***)."""
    import yaml

    settings = _settings()
    data = settings.model_dump(mode="json")
    data["chain"]["rpc_urls"] = [redact_url(u) for u in settings.chain.rpc_urls]
    typer.echo(logs.scrub(yaml.safe_dump(data, sort_keys=False)))


# --- local stack ---------------------------------------------------------------------


@local_app.command("up")
def local_up() -> None:
    """Start the Pub/Sub emulator and anvil, create the topics, deploy the contracts.

    Idempotent: what already runs is kept. A newly started anvil is a new chain, so the
    previous deployment, checkpoints and warehouse are cleared.
    """
    from infra.local import stack
    from infra.local.processes import StackError

    settings = _settings()
    try:
        deployment = stack.up(settings)
    except StackError as err:
        _fail(str(err))
    typer.echo(
        f"Pub/Sub emulator  {settings.local.emulator_host}  "
        f"(export PUBSUB_EMULATOR_HOST={settings.local.emulator_host})"
    )
    typer.echo(f"anvil             {settings.local.rpc_url}  chain id {deployment.chain_id}")
    typer.echo(f"deployment        {settings.local.deployment_path}")
    for pool in deployment.pools:
        typer.echo(f"  {pool.name:<28} {pool.address}")


@local_app.command("down")
def local_down() -> None:
    """Stop every process the local stack started (servers, simulator, publisher)."""
    from infra.local import stack

    stopped = stack.down(_settings())
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@local_app.command("status")
def local_status() -> None:
    """Show which local processes run and what is deployed; exit 1 if the stack is down."""
    from infra.local import stack

    settings = _settings()
    status = stack.status(settings)
    typer.echo(
        "pubsub-emulator  " + (f"pid {status.emulator_pid}" if status.emulator_pid else "stopped")
    )
    typer.echo(
        f"anvil            {'pid ' + str(status.anvil_pid) if status.anvil_pid else 'stopped'}"
    )
    if status.deployment:
        typer.echo(f"pools            {len(status.deployment.pools)} deployed")
        for pool in status.deployment.pools:
            typer.echo(f"  {pool.name:<28} {pool.address}")
    if not status.running:
        raise typer.Exit(1)


def _deployment(settings: Settings):  # type: ignore[no-untyped-def]
    from dexwatch.contracts.deployment import LocalDeployment

    try:
        return LocalDeployment.load(settings.local.deployment_path)
    except FileNotFoundError as err:
        _fail(str(err))


# --- simulator -------------------------------------------------------------------------


@simulate_app.command("run")
def simulate_run(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
) -> None:
    """Keep the local pools busy: traders, liquidity providers and prices that wander,
    one block every simulator.block_interval_s, stamped with the wall clock."""
    from infra.local.market import MarketSimulator

    settings = _settings()
    simulator = MarketSimulator(settings, _deployment(settings))
    stop = _stop_on_signals()
    simulator.run_live(stop, duration_s=duration)


@simulate_app.command("history")
def simulate_history(
    hours: Annotated[float, typer.Option(help="Simulated hours of trading to generate.")] = 24.0,
) -> None:
    """Generate a stretch of history as fast as the chain mines (block timestamps run
    ahead of the wall clock), for batch replay and training data."""
    from rich.progress import Progress

    from infra.local.market import MarketSimulator

    settings = _settings()
    simulator = MarketSimulator(settings, _deployment(settings))
    with Progress(transient=not sys.stderr.isatty()) as progress:
        task = progress.add_task(f"mining {hours:g} simulated hours", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        first, last = simulator.generate_history(hours, progress=on_progress)
    typer.echo(f"mined blocks {first}..{last}")


@simulate_app.command("inject")
def simulate_inject(
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(INCIDENT_KINDS)}.")],
    pool: Annotated[str, typer.Option(help="Pool name (see `dexwatch local status`) or address.")],
) -> None:
    """Inject an incident into a pool and record its ground truth in incident_labels."""
    if kind not in INCIDENT_KINDS:
        _fail(f"unknown incident kind {kind!r}; choose one of {', '.join(INCIDENT_KINDS)}", code=2)
    from dexwatch.contracts.tables import INCIDENT_LABELS
    from dexwatch.warehouse import open_warehouse
    from infra.local.incidents import inject

    settings = _settings()
    deployment = _deployment(settings)
    try:
        deployment.pool(pool)
    except KeyError as err:
        _fail(str(err.args[0]), code=2)
    label = inject(settings, deployment, kind, pool)
    open_warehouse(settings).upsert(INCIDENT_LABELS, [label.model_dump()])
    typer.echo(
        f"{label.kind} on {deployment.pool(label.pool).name}: "
        f"blocks {label.first_block}..{label.last_block}"
        f" ({label.details}); recorded as {label.label_id}"
    )


# --- publishers --------------------------------------------------------------------------


@publish_app.command("chain")
def publish_chain(
    once: Annotated[
        bool, typer.Option("--once", help="Catch up to the safe head and exit (a Cloud Run Job).")
    ] = False,
    record: Annotated[
        Path | None,
        typer.Option(help="Record to JSON lines in this directory instead of Pub/Sub."),
    ] = None,
) -> None:
    """Publish pool events read from chain RPC (eth_getLogs) to the pool-events topic,
    following the chain by default."""
    from publishers.chain import ChainPublisherError, run
    from publishers.pubsub import PublishError

    settings = _settings()
    _use_local_emulator(settings)
    stop = _stop_on_signals()
    try:
        run(settings, once=once, stop=stop, record_to=record)
    except (ChainPublisherError, PublishError) as err:
        _fail(str(err))


@publish_app.command("subgraph")
def publish_subgraph(
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Publish every complete hour and exit (Cloud Scheduler + Cloud Run Job)."
        ),
    ] = False,
) -> None:
    """Publish hourly pool statistics from The Graph (Uniswap V3 poolHourDatas, SushiSwap
    pairHourDatas) to the pool-hourly topic, one record per pool and complete hour, at every
    time of subgraph.schedule (hourly by default)."""
    from publishers.pubsub import PublishError
    from publishers.subgraph import SubgraphPublisherError, run

    settings = _settings()
    _use_local_emulator(settings)
    stop = _stop_on_signals()
    try:
        run(settings, once=once, stop=stop)
    except (SubgraphPublisherError, PublishError) as err:
        _fail(str(err))


# --- pipeline, model, alerts -------------------------------------------------------------


@pipeline_app.command("run")
def pipeline_run() -> None:
    """Follow pool-events (Pub/Sub) with the streaming pipeline on the local runner: scores
    to pool_scores, anomalies to anomalies, alerts to the alerts topic. Runs until stopped;
    messages are journaled before they are acknowledged, and a restart resumes from the
    journal (in <state_dir>/journal)."""
    from beam_pipelines.local_pubsub import build_local_streaming_pipeline

    settings = _settings()
    _use_local_emulator(settings)
    _require_model(settings, hourly=settings.pipeline.hourly)
    build_local_streaming_pipeline(settings).run().wait_until_finish()


@pipeline_app.command("replay")
def pipeline_replay(
    events: Annotated[Path, typer.Argument(help="Recorded pool events (JSON lines).")],
    hours: Annotated[
        Path | None,
        typer.Option(help="Recorded pool-hourly messages (JSON lines), for the hourly branch."),
    ] = None,
) -> None:
    """Replay a recorded stream through the same transforms in batch, into the same tables
    (upserts: replaying twice changes nothing). Record one with
    `dexwatch publish chain --once --record DIR`."""
    from beam_pipelines.options import batch_options
    from beam_pipelines.pipeline import build_replay_pipeline

    settings = _settings()
    for path in (events, hours):
        if path is not None and not path.is_file():
            _fail(f"no recording at {path}")
    _require_model(settings, hourly=hours is not None)
    build_replay_pipeline(
        settings, batch_options(), events, hours_file=hours
    ).run().wait_until_finish()
    typer.echo(f"replayed {events} into {settings.warehouse_path}")


def _require_model(settings: Settings, hourly: bool = False) -> None:
    if settings.model.serving != "local":
        return
    if not settings.model_path.is_file():
        _fail(f"no model at {settings.model_path}: run `dexwatch model bootstrap` first")
    if hourly and not settings.hourly_model_path.is_file():
        _fail(
            f"no hourly model at {settings.hourly_model_path}: run "
            "`dexwatch model bootstrap-hourly` first, or set pipeline.hourly to false"
        )


@model_app.command("bootstrap")
def model_bootstrap(
    hours: Annotated[float, typer.Option(help="Simulated hours of normal traffic to learn.")] = 4.0,
) -> None:
    """Train the first detector on the simulator's normal traffic (no injections), mined on
    a private chain and run through the real publisher and pipeline; registers it and
    promotes it to production, where the pipeline loads it (model.path)."""
    from dexwatch.bootstrap import bootstrap_model

    settings = _settings()
    with _stage_progress() as on_progress:
        detector = bootstrap_model(settings, hours, on_progress)
    typer.echo(
        f"model {detector.version}: trained on {detector.training_rows} windows of "
        f"{hours:g} simulated hours; registered and promoted, loaded from {settings.model_path}"
    )


@model_app.command("list")
def model_list(
    model: Annotated[
        str | None, typer.Option(help="Only this model (chain-window, pool-hour).")
    ] = None,
) -> None:
    """List the registered versions of each model; production and previous are marked."""
    from model.registry import ModelRegistry, registered_model_names

    settings = _settings()
    names = [model] if model else registered_model_names(settings.registry_dir)
    if not names:
        _fail(f"no models in {settings.registry_dir}: run `dexwatch model bootstrap` first")
    for name in names:
        registry = ModelRegistry(settings.registry_dir, name)
        versions = registry.versions()
        aliases = registry.aliases()
        typer.echo(f"{name}  ({len(versions)} versions, {registry.directory})")
        for v in versions:
            mark = {aliases.production: "production", aliases.previous: "previous"}.get(
                v.version, ""
            )
            meta = v.metadata
            typer.echo(
                f"  {mark:<10}  {v.version:<24}  trained {meta.get('trained_at', '?')[:19]}  "
                f"{meta.get('training_rows', '?')} rows  features v{meta.get('features_version')}"
                f"  code {meta.get('code_version', '?')}"
            )


def _change_production(model_name: str | None, version: str | None, rollback: bool) -> None:
    """Promote ``version`` (or roll back): on Vertex AI first when GCP is configured, so a
    failed deployment leaves the local alias where it was too."""
    from model.registry import CHAIN_WINDOW, ModelRegistry, RegistryError, find_version

    settings = _settings()
    try:
        if version is not None:
            registry = find_version(settings.registry_dir, version, model_name)
            target = registry.get(version)
        else:
            registry = ModelRegistry(settings.registry_dir, model_name or CHAIN_WINDOW)
            target = registry.rollback_target()
        if settings.model.gcp_configured:
            from model.vertex import VertexError, promote_on_vertex

            try:
                deployed = promote_on_vertex(settings.model, registry, target)
            except VertexError as err:
                _fail(str(err), code=2)
            typer.echo(
                f"Vertex AI: {deployed.model_resource_name} "
                f"({'uploaded to ' + deployed.artifact_uri if deployed.uploaded else 'reused'})"
                f" deployed to endpoint {deployed.endpoint_id} with all the traffic"
            )
        if rollback:
            registry.rollback()
        else:
            registry.promote(target.version)
    except RegistryError as err:
        _fail(str(err))
    aliases = registry.aliases()
    typer.echo(
        f"{registry.model_name}: production is now {aliases.production}"
        + (f" (previous {aliases.previous})" if aliases.previous else "")
        + f"; the pipeline loads {registry.production_path()}"
    )


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="A version from `dexwatch model list`.")],
    model: Annotated[
        str | None, typer.Option(help="The model, when a version name is ambiguous.")
    ] = None,
) -> None:
    """Make VERSION the production model. A running local pipeline and `dexwatch serve`
    use it from their next batch or request. With GCP configured (model.vertex_project),
    it is also uploaded to the Vertex AI Model Registry and deployed to its endpoint."""
    _change_production(model, version, rollback=False)


@model_app.command("rollback")
def model_rollback(
    model: Annotated[str, typer.Option(help="chain-window or pool-hour.")] = "chain-window",
) -> None:
    """Return production to the version promoted before the current one (on Vertex AI too
    when GCP is configured)."""
    _change_production(model, None, rollback=True)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port (default: $AIP_HTTP_PORT, else 8080).")
    ] = None,
    threads: Annotated[int, typer.Option(help="Requests served at once.")] = 4,
) -> None:
    """Run the prediction server, a Vertex AI custom container: POST {"instances": [[...]]}
    to $AIP_PREDICT_ROUTE (/predict), GET $AIP_HEALTH_ROUTE (/health). Serves the production
    version of each registered model (from $AIP_STORAGE_URI on Vertex); instances of 9
    numbers go to chain-window, of 13 to the hourly model."""
    from model.serving.app import Routes, make_server, prediction_app
    from model.serving.models import ServedModels, artifact_models, registry_models

    settings = _settings()
    routes = Routes.from_environment()
    storage_uri = os.environ.get("AIP_STORAGE_URI")
    models = ServedModels(
        artifact_models(storage_uri) if storage_uri else registry_models(settings.registry_dir)
    )
    app_ = prediction_app(models, routes, settings.model.server_max_instances)
    server = make_server(app_, host, routes.port if port is None else port, threads)
    served = models.current()
    typer.echo(
        f"serving {', '.join(f'{n} {d.version}' for n, d in sorted(served.items())) or 'no model'}"
        f" on http://{host}:{server.effective_port}{routes.predict} "
        f"(health {routes.health})",
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@model_app.command("bootstrap-hourly")
def model_bootstrap_hourly(
    hours: Annotated[
        int | None,
        typer.Option(
            help="Simulated hours to mine (default model.hourly_bootstrap_hours); each pool's "
            "first 20 are history only."
        ),
    ] = None,
) -> None:
    """Train the first hourly model (the pool-hourly branch's) on the simulator's normal
    traffic: mined on a private chain, recorded by the real publisher, aggregated into
    PoolHours as a subgraph would; saves it at model.hourly_path."""
    from dexwatch.bootstrap import bootstrap_hourly_model

    settings = _settings()
    hours = hours or settings.model.hourly_bootstrap_hours
    with _stage_progress() as on_progress:
        detector, _ = bootstrap_hourly_model(settings, hours, on_progress)
    typer.echo(
        f"hourly model {detector.version}: trained on {detector.training_rows} pool hours of "
        f"{hours} simulated hours; saved to {settings.hourly_model_path}"
    )


@app.command("backfill")
def backfill(
    source: Annotated[
        str,
        typer.Option(
            help="chain: pool events from the RPC node; subgraph: pool hours from the subgraphs."
        ),
    ],
    start: Annotated[
        datetime, typer.Option("--from", help="Start of the range (UTC).", formats=_DATE_FORMATS)
    ],
    end: Annotated[
        datetime, typer.Option("--to", help="End of the range (UTC).", formats=_DATE_FORMATS)
    ],
    restart: Annotated[
        bool, typer.Option(help="Start over instead of resuming an interrupted run.")
    ] = False,
) -> None:
    """Score a past range through the pipeline's own transforms in batch, into the same
    tables (upserts: a second run changes nothing). An interrupted run of the same range
    resumes where it stopped."""
    from dexwatch.backfill import BackfillError, backfill_chain, backfill_subgraph

    runs = {"chain": (backfill_chain, "events"), "subgraph": (backfill_subgraph, "pool hours")}
    if source not in runs:
        _fail(f"unknown --source {source!r}: chain or subgraph")
    backfill_source, items = runs[source]
    settings = _settings()
    start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    try:
        with _stage_progress() as on_progress:
            result = backfill_source(settings, start, end, on_progress, restart)
    except BackfillError as err:
        _fail(str(err))
    typer.echo(
        f"{'resumed and ' if result.resumed else ''}backfilled {source} "
        f"{start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}: {result.items} {items} read, "
        f"{result.rows} rows of this source in pool_scores, {result.seconds:.1f} s"
    )


@app.command("evaluate")
def evaluate(
    nab: Annotated[
        bool, typer.Option("--nab", help="Only the Numenta Anomaly Benchmark (bench/nab.py).")
    ] = False,
    incidents: Annotated[
        bool,
        typer.Option(
            "--incidents",
            help="Only the injected incidents on the local chain (bench/incidents.py).",
        ),
    ] = False,
    data: Annotated[
        Path | None, typer.Option(help="The NAB corpus (default: ../shared/data/nab).")
    ] = None,
    workers: Annotated[int, typer.Option(help="NAB: worker processes.")] = 2,
    model: Annotated[
        Path | None,
        typer.Option(help="Incidents: a saved chain detector (default: bootstrap a first one)."),
    ] = None,
) -> None:
    """Honest evaluation, each beside baselines in the same run: the Numenta Anomaly
    Benchmark and injected incidents on the local chain (both unless one is chosen); writes
    bench/results/nab.json and bench/results/incidents.json."""
    import subprocess

    bench = Path(__file__).resolve().parent.parent / "bench"
    if not bench.is_dir():
        _fail(f"{bench} not found: run from a checkout of dexwatch")
    runs = []
    if nab or not incidents:
        args = ["--workers", str(workers)] + ([] if data is None else ["--data", str(data)])
        runs.append([sys.executable, str(bench / "nab.py"), *args])
    if incidents or not nab:
        args = [] if model is None else ["--model", str(model.resolve())]
        runs.append([sys.executable, str(bench / "incidents.py"), *args])
    for args in runs:
        code = subprocess.call(args)
        if code:
            raise typer.Exit(code)


@alerts_app.command("tail")
def alerts_tail(
    count: Annotated[int | None, typer.Option(help="Exit after this many alerts.")] = None,
) -> None:
    """Print each alert as it arrives on the alerts topic."""
    from dexwatch.alerts import tail

    settings = _settings()
    _use_local_emulator(settings)
    tail(settings, _stop_on_signals(), count, typer.echo)


# --- queries -----------------------------------------------------------------------------


@app.command("query")
def query(sql: Annotated[str, typer.Argument(help="SQL to run against the warehouse.")]) -> None:
    """Query the warehouse (local DuckDB) while the detector runs."""
    from rich.console import Console
    from rich.table import Table

    from dexwatch.warehouse import open_warehouse

    settings = _settings()
    try:
        result = open_warehouse(settings).query(sql)
    except FileNotFoundError as err:
        _fail(str(err))
    except Exception as err:  # noqa: BLE001 - SQL errors are the user's to read
        _fail(str(err).splitlines()[0], code=2)
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


# --- the whole detector ------------------------------------------------------------------


@app.command("run")
def run(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
) -> None:
    """Run dexwatch on the local stack: start what is not running, the market simulator and
    the chain publisher, show a live per-pool summary, and stop everything it started."""
    from dexwatch.runner import run_local

    settings = _settings()
    stop = _stop_on_signals()
    try:
        run_local(settings, stop, duration_s=duration, config=_State.config)
    except RuntimeError as err:
        _fail(str(err))


# --- training runs, drift and metrics ----------------------------------------------------

drift_app = typer.Typer(help="Feature drift of the production models.", no_args_is_help=True)
metrics_app = typer.Typer(help="The detector's metrics (Prometheus).", no_args_is_help=True)
app.add_typer(drift_app, name="drift")
app.add_typer(metrics_app, name="metrics")


def _moment(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{flag}: not a date or ISO time: {value!r}", code=2)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("train")
def train(
    params_file: Annotated[
        Path | None, typer.Option("--params", help="A YAML file of training parameters.")
    ] = None,
    path: Annotated[str | None, typer.Option(help="chain or hourly.")] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Data window start (window_end, UTC).")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Data window end (default now).")] = None,
    days: Annotated[float | None, typer.Option(help="Data window: the N days before --to.")] = None,
    n_estimators: Annotated[int | None, typer.Option(help="Trees in the forest.")] = None,
    max_samples: Annotated[int | None, typer.Option(help="Rows per tree.")] = None,
    threshold_rule: Annotated[
        str | None, typer.Option(help="quantile (with margin) or contamination.")
    ] = None,
    threshold_quantile: Annotated[float | None, typer.Option()] = None,
    threshold_margin: Annotated[float | None, typer.Option()] = None,
    contamination: Annotated[float | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of the forest.")] = None,
    holdout_share: Annotated[
        float | None, typer.Option(help="Latest share of the window kept for evaluation.")
    ] = None,
    include_incidents: Annotated[
        bool, typer.Option("--include-incidents", help="Train on labelled incident rows too.")
    ] = False,
    schedule: Annotated[
        str | None,
        typer.Option(
            help='Run at every time of this cron (UTC), e.g. "0 3 * * 1", until Ctrl-C; '
            '"default": monitoring.training_schedule (weekly).'
        ),
    ] = None,
    submit: Annotated[
        str | None, typer.Option(help="vertex: submit the run as a Vertex AI CustomJob.")
    ] = None,
) -> None:
    """Train a detector on the warehouse's feature rows, evaluate it, register it as a new
    version (not promoted) and write its HTML report beside it."""
    from pydantic import ValidationError

    from model.train_run import load_run_params, run_training

    settings = _settings()
    overrides = {
        "path": path, "from": _moment(start, "--from"), "to": _moment(end, "--to"), "days": days,
        "n_estimators": n_estimators, "max_samples": max_samples,
        "threshold_rule": threshold_rule, "threshold_quantile": threshold_quantile,
        "threshold_margin": threshold_margin, "contamination": contamination, "seed": seed,
        "holdout_share": holdout_share, "exclude_incidents": False if include_incidents else None,
    }  # fmt: skip
    try:
        params = load_run_params(params_file, overrides)
    except (ValidationError, ValueError, OSError) as err:
        _fail(f"training parameters: {err}", code=2)

    if submit is not None:
        from model.train_schedule import VertexJobError, custom_job_spec, submit_custom_job

        if submit != "vertex":
            _fail(f"--submit: only vertex is known, not {submit!r}", code=2)
        try:
            spec = custom_job_spec(
                settings.model, params.cli_args(), f"dexwatch-train-{params.path}"
            )
        except VertexJobError as err:
            _fail(str(err), code=2)
        typer.echo(f"submitted Vertex AI job {submit_custom_job(settings.model, spec)}")
        return

    def train_once() -> None:
        from dexwatch.warehouse import open_reader

        try:
            run = run_training(open_reader(settings), settings.registry_dir, params)
        except (ValueError, FileNotFoundError) as err:
            _fail(str(err))
        metrics = run.evaluation
        typer.echo(
            f"{run.spec.model_name} {run.version}: trained on {len(run.train):,} rows, "
            f"held-out anomaly rate {100 * metrics.held_out_anomaly_rate:.2f} %"
            + (f", incident recall {100 * metrics.recall:.0f} %" if metrics.recall is not None
               else "")
            + "; registered, not promoted (`dexwatch model promote "
            f"{run.version}`)\nreport: {run.directory / 'report.html'}"
        )  # fmt: skip

    if schedule is None:
        train_once()
        return
    from croniter import croniter

    from model.train_schedule import run_on_schedule

    if schedule == "default":
        schedule = settings.monitoring.training_schedule
    if not croniter.is_valid(schedule):
        _fail(f"--schedule: not a cron expression: {schedule!r}", code=2)

    run_on_schedule(
        schedule,
        train_once,
        _stop_on_signals(),
        on_wait=lambda due: typer.echo(f"next training run at {due:%Y-%m-%d %H:%M} UTC"),
    )


def _snapshot(settings: Settings):  # type: ignore[no-untyped-def]
    from dexwatch.warehouse import open_reader
    from model.monitoring import take_snapshot

    return take_snapshot(
        open_reader(settings),
        settings.registry_dir,
        settings.monitoring.drift_hours,
        settings.monitoring.anomaly_rate_hours,
    )


@drift_app.command("check")
def drift_check(
    threshold: Annotated[
        float | None,
        typer.Option(
            help="PSI above which a feature has drifted (default monitoring.psi_threshold)."
        ),
    ] = None,
) -> None:
    """PSI of each feature of each production model, its training data against the last
    monitoring.drift_hours of rows; publishes a feature-drift alert on the alerts topic
    for each model with a feature above the threshold. Exit code 3 when one did."""
    from dexwatch.contracts.topics import ALERTS
    from model.drift_alert import drift_alerts
    from publishers.pubsub import Message, PubSubSink

    settings = _settings()
    limit = threshold if threshold is not None else settings.monitoring.psi_threshold
    snapshot = _snapshot(settings)
    for model in snapshot.models:
        worst = sorted(model.psi.items(), key=lambda item: -item[1])[:3]
        typer.echo(
            f"{model.model_name} {model.version}: {model.recent_rows} recent rows; "
            + (", ".join(f"{n} PSI {v:.3f}" for n, v in worst) or "no feature bins")
        )
    alerts = drift_alerts(
        snapshot.models, limit, settings.chain.chain_id, settings.monitoring.drift_hours
    )
    if not alerts:
        typer.echo(f"no feature above PSI {limit:g}")
        return
    _use_local_emulator(settings)
    with PubSubSink(settings.pubsub.project) as sink:
        sink.publish(ALERTS, [Message(a.to_json(), a.attributes()) for a in alerts])
    for alert in alerts:
        typer.echo(
            f"ALERT {alert.kind} {alert.alert_id}: "
            + ", ".join(f"{f.name} PSI {f.value:.3f}" for f in alert.top_features)
        )
    raise typer.Exit(3)


@metrics_app.command("serve")
def metrics_serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port (default monitoring.metrics_port, 9464).")
    ] = None,
) -> None:
    """Serve GET /metrics in Prometheus format: per-feature PSI, the anomaly rate per source
    over the last monitoring.anomaly_rate_hours, and the model versions in production."""
    from model.monitoring import metrics_server

    settings = _settings()
    server = metrics_server(
        lambda: _snapshot(settings),
        host,
        settings.monitoring.metrics_port if port is None else port,
    )
    typer.echo(f"metrics on http://{host}:{server.server_address[1]}/metrics")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@metrics_app.command("export")
def metrics_export() -> None:
    """Production: write the same metrics once to Cloud Monitoring
    (monitoring.cloud_monitoring_project); schedule it like the drift check."""
    from model.monitoring import export_to_cloud_monitoring

    settings = _settings()
    project = settings.monitoring.cloud_monitoring_project
    if not project:
        _fail("set monitoring.cloud_monitoring_project to export to Cloud Monitoring", code=2)
    written = export_to_cloud_monitoring(project, _snapshot(settings))
    typer.echo(f"wrote {written} time series to Cloud Monitoring ({project})")
