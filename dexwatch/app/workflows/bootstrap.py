"""`dexwatch model bootstrap`: a first detector trained on the simulator's normal traffic.

On a private anvil (its own port and state, so a running local stack is not disturbed):
deploy the contracts, mine ``hours`` of normal market history (no injections), record it
with the real chain publisher, compute the features with the real pipeline in batch, and
train the Isolation Forest on them. Nothing here is trained on random numbers.

`dexwatch model bootstrap-hourly` does the same for the hourly model: the local stand-in for
The Graph indexes the private chain and the real subgraph publisher reads its hours as
PoolHours (what the live hourly path sees), and the hourly features of every hour with
enough history are its training rows.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from dexwatch.core.detector import Detector
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour
from dexwatch.core.schemas.topics import POOL_EVENTS, POOL_HOURLY
from infra.local.deployment import LocalDeployment
from infra.local.settings import LocalSettings

log = logging.getLogger("dexwatch.app.workflows.bootstrap")


def record_history(
    settings: LocalSettings,
    hours: float,
    workdir: Path,
    progress: Callable[[str, int, int], None],
    while_chain_runs: Callable[[LocalSettings], None] | None = None,
    genesis_timestamp: int | None = None,
) -> tuple[Path, LocalSettings]:
    """Mine ``hours`` of normal history on a private anvil and record its pool events.
    Returns the recording (JSON lines) and the settings the private chain ran with;
    ``while_chain_runs`` gets those settings before the private chain stops.

    Args:
        genesis_timestamp: mine the hours by this unix time instead of by now. The
            simulator's rhythm follows chain time, so only a fixed time mines the same
            history from the same seed (tests and benchmarks that must repeat). Hours
            shorter than the market's day are mined around its busiest time of day
            (``busiest_span_start``): a first model should know the market at its busiest.
    """
    from infra.local import processes, stack
    from infra.local.deploy import deploy_local_contracts
    from infra.local.market import MarketSimulator, busiest_span_start, with_live_blocks
    from publishers.chain import run as publish_chain

    port = processes.free_port()
    settings = simulated_chain(settings)
    if settings.chain.chain_id != settings.local.chain_id:
        log.warning(
            "bootstrapping from the simulator while chain.chain_id=%d: this model knows "
            "simulated traffic only (for a real pool, mine the calibrated market: --market "
            "infra/local/markets/polygon-busy-pool.yaml); train one on the chain's own "
            "history (README: a model for a real chain) before trusting its alerts",
            settings.chain.chain_id,
        )
    private = with_live_blocks(settings).with_sections(
        state_dir=workdir / "state",
        local={"anvil_port": port},
        chain={
            # The private chain is the simulator's, whatever chain the settings follow.
            "chain_id": settings.local.chain_id,
            "rpc_urls": [f"http://127.0.0.1:{port}"],
            "confirmations": 0,
            "factories": [],
            "checkpoint_path": workdir / "checkpoint.json",
            "batch_blocks": 2000,
        },
    )
    private.state_dir.mkdir(parents=True, exist_ok=True)
    by = time.time() if genesis_timestamp is None else genesis_timestamp
    genesis = busiest_span_start(settings.simulator, hours, by)
    processes.start(stack.anvil_spec(private, genesis), private.state_dir)
    try:
        deployment = deploy_local_contracts(private, start_timestamp=genesis + 1)
        deployment.save(private.deployment_path)
        simulator = MarketSimulator(private, deployment)
        simulator.generate_history(
            hours, progress=lambda done, total: progress("mine", done, total)
        )
        recording = workdir / "recording"
        progress("publish", 0, 1)
        stats = publish_chain(private.with_deployment(), once=True, record_to=recording)
        progress("publish", 1, 1)
        log.info("recorded %d pool events", stats.events)
        if while_chain_runs is not None:
            while_chain_runs(private)
    finally:
        processes.stop(private.state_dir, stack.ANVIL)
    return recording / f"{POOL_EVENTS}.jsonl", private


def simulated_chain(settings: LocalSettings) -> LocalSettings:
    """The chain a first model is mined on. Its models are shared by every chain configured
    (the chain windows' features are in units of each pool's own habits): with several
    chains, the stack's own (local.chain_id) when configured, else the first."""
    if len(settings.chains) == 1:
        return settings
    ids = [chain.chain_id for chain in settings.chains]
    return settings.for_chain(settings.local.chain_id if settings.local.chain_id in ids else ids[0])


def compute_features(settings: LocalSettings, events_file: Path, workdir: Path) -> list[dict]:
    """Feature rows of a recorded stream, through the pipeline's own transforms (batch)."""
    from beam_pipelines.options import batch_options
    from beam_pipelines.pipeline import build_feature_pipeline

    prefix = workdir / "features" / "part"
    build_feature_pipeline(settings, batch_options(), events_file, prefix).run().wait_until_finish()
    rows = []
    for path in sorted(prefix.parent.glob("part*.jsonl")):
        rows += [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    return rows


def bootstrap_model(
    settings: LocalSettings,
    hours: float,
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
    workdir: Path | None = None,
    genesis_timestamp: int | None = None,
) -> Detector:
    """Train the first detector on ``hours`` of simulated normal traffic, register it in
    the model registry and promote it (settings.model_path is the production link by
    default; an explicit model.path gets a copy). ``genesis_timestamp``: see
    ``record_history``."""
    from dexwatch.core.features.chain import FEATURE_NAMES
    from model.chain_window import TrainingParams, train_detector, training_matrix
    from model.drift import feature_bins
    from model.registry import CHAIN_WINDOW, ModelRegistry

    with tempfile.TemporaryDirectory(prefix="dexwatch-bootstrap-") as scratch:
        work = workdir or Path(scratch)
        events_file, private = record_history(
            settings, hours, work, progress, genesis_timestamp=genesis_timestamp
        )
        progress("features", 0, 1)
        rows = compute_features(private, events_file, work)
        progress("features", 1, 1)
        progress("train", 0, 1)
        detector = train_detector(rows, TrainingParams(seed=settings.simulator.seed))
        registry = ModelRegistry(settings.registry_dir, CHAIN_WINDOW)
        registry.register(
            detector,
            {
                "training_range": _training_range(rows, hours),
                # What drift is measured against (dexwatch model drift, the dashboard).
                "feature_bins": feature_bins(training_matrix(rows), FEATURE_NAMES),
            },
        )
        registry.promote(detector.version)
        if settings.model.path is not None:
            detector.save(settings.model.path)
        progress("train", 1, 1)
    log.info(
        "saved detector %s (%d training windows) to %s",
        detector.version,
        detector.training_rows,
        settings.model_path,
    )
    return detector


def _training_range(rows: list[dict], hours: float) -> dict:
    """What the model learned from: the span of its windows (simulated chain time)."""
    ends = [row["window_end"] for row in rows if row.get("window_end") is not None]
    return {
        "source": f"simulated normal traffic, {hours:g} hours (dexwatch model bootstrap)",
        "first_window_end": min(ends, default=None),
        "last_window_end": max(ends, default=None),
    }


# Blocks of the hourly bootstrap, in seconds of chain time. The simulator trades per second
# of chain time, so an hour holds the same trades whatever the block length; longer blocks
# mine faster (about 10 ms a block besides 1 ms a swap). 15 s, as the false-alarm test,
# unless the chain has a block time of its own.
HOURLY_BOOTSTRAP_BLOCK_S = 15


def bootstrap_hourly_model(
    settings: LocalSettings,
    hours: int,
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
    workdir: Path | None = None,
    genesis_timestamp: int | None = None,
) -> tuple[Detector, list[PoolHour]]:
    """Train the first hourly detector on ``hours`` of simulated normal traffic, register it
    in the model registry and promote it (settings.hourly_model_path), with the PoolHours it
    learned from beside it
    (training-hours.jsonl, pool-hourly messages: a replay can feed them to the pipeline).
    ``genesis_timestamp``: as ``record_history``'s."""
    from dexwatch.core.features.hourly import HOURLY_FEATURE_NAMES
    from model.drift import feature_bins
    from model.hourly import train_hourly_detector, training_matrix
    from model.registry import POOL_HOUR, ModelRegistry
    from model.training import TrainingParams

    block_s = simulated_chain(settings).chain.block_time_s or HOURLY_BOOTSTRAP_BLOCK_S
    mining = settings.with_sections(simulator={"block_interval_s": block_s})
    with tempfile.TemporaryDirectory(prefix="dexwatch-bootstrap-hourly-") as scratch:
        work = workdir or Path(scratch)
        pool_hours: list[PoolHour] = []

        def read_hours(private: LocalSettings) -> None:
            progress("hours", 0, 1)
            pool_hours.extend(subgraph_hours(private, work / "subgraph"))
            progress("hours", 1, 1)

        record_history(
            mining, hours, work, progress, while_chain_runs=read_hours,
            genesis_timestamp=genesis_timestamp,
        )  # fmt: skip
    progress("train", 0, 1)
    detector = train_hourly_detector(pool_hours, TrainingParams(seed=settings.simulator.seed))
    registry = ModelRegistry(settings.registry_dir, POOL_HOUR)
    stamps = [hour.hour_start for hour in pool_hours]
    training_range = {
        "source": f"simulated normal traffic, {hours} hours (dexwatch model bootstrap-hourly)",
        "first_hour_start": min(stamps, default=None),
        "last_hour_start": max(stamps, default=None),
    }
    bins = feature_bins(training_matrix(pool_hours), HOURLY_FEATURE_NAMES)
    registry.register(detector, {"training_range": training_range, "feature_bins": bins})
    registry.promote(detector.version)
    if settings.model.hourly_path is not None:
        detector.save(settings.model.hourly_path)
    training_hours = settings.hourly_model_path.parent / "training-hours.jsonl"
    training_hours.write_bytes(b"".join(hour.to_json() + b"\n" for hour in pool_hours))
    progress("train", 1, 1)
    log.info(
        "saved hourly detector %s (%d training hours of %d pool hours) to %s",
        detector.version,
        detector.training_rows,
        len(pool_hours),
        settings.hourly_model_path,
    )
    return detector, pool_hours


def subgraph_hours(private: LocalSettings, workdir: Path) -> list[PoolHour]:
    """Every whole hour of a private chain's pools as the live hourly path sees them: indexed
    by the local stand-in for The Graph, read by the real subgraph publisher."""
    from infra.local.processes import free_port
    from infra.local.subgraph.indexer import ChainIndexer
    from infra.local.subgraph.schema import StandInSubgraph
    from infra.local.subgraph.server import SubgraphStandIn
    from publishers.subgraph import run as read_subgraph

    sources = private.subgraph.sources
    subgraphs = {source.path: StandInSubgraph(source.protocol) for source in sources}
    deployment = LocalDeployment.load(private.deployment_path)
    indexer = ChainIndexer(
        private.local.rpc_url,
        deployment,
        {source.dex: subgraphs[source.path] for source in sources},
    )
    try:
        indexer.index_once()
    finally:
        indexer.close()
    first_stamp, last_stamp = _block_timestamps(
        private.local.rpc_url, deployment.deployed_at_block, "latest"
    )
    # Whole hours only: the first one is cut by the deployment, the last by the end.
    first_hour = -(-first_stamp // HOUR_S) * HOUR_S
    end_hour = last_stamp // HOUR_S * HOUR_S
    if end_hour <= first_hour:
        return []
    with SubgraphStandIn(subgraphs, "127.0.0.1", free_port()) as standin:
        reader = private.with_sections(
            subgraph={
                "endpoint_url": standin.url,
                "checkpoint_path": workdir / "checkpoint.json",
                "catch_up_wait_s": 0.0,
            }
        )
        read_subgraph(reader, once=True, record_to=workdir, hours=(first_hour, end_hour))
    recorded = workdir / f"{POOL_HOURLY}.jsonl"
    return [PoolHour.from_json(line) for line in recorded.read_bytes().splitlines() if line]


def _block_timestamps(rpc_url: str, *blocks: int | str) -> list[int]:
    from infra.local.evm import Rpc

    rpc = Rpc(rpc_url)
    try:
        return [
            int(rpc.call("eth_getBlockByNumber", b if isinstance(b, str) else hex(b), False)
                ["timestamp"], 16)
            for b in blocks
        ]  # fmt: skip
    finally:
        rpc.close()
