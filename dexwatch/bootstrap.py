"""`dexwatch model bootstrap`: a first detector trained on the simulator's normal traffic.

On a private anvil (its own port and state, so a running local stack is not disturbed):
deploy the contracts, mine ``hours`` of normal market history (no injections), record it
with the real chain publisher, compute the features with the real pipeline in batch, and
train the Isolation Forest on them. Nothing here is trained on random numbers.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import orjson

from dexwatch.contracts.detector import Detector
from dexwatch.contracts.topics import POOL_EVENTS
from dexwatch.settings import Settings

log = logging.getLogger("dexwatch.bootstrap")


def record_history(
    settings: Settings, hours: float, workdir: Path, progress: Callable[[str, int, int], None]
) -> tuple[Path, Settings]:
    """Mine ``hours`` of normal history on a private anvil and record its pool events.
    Returns the recording (JSON lines) and the settings the private chain ran with."""
    from infra.local import processes, stack
    from infra.local.deploy import deploy_local_contracts
    from infra.local.market import MarketSimulator, with_live_blocks
    from publishers.chain import run as publish_chain

    port = processes.free_port()
    private = with_live_blocks(settings).model_copy(
        update={
            "local": settings.local.model_copy(
                update={"state_dir": workdir / "state", "anvil_port": port}
            ),
            "chain": settings.chain.model_copy(
                update={
                    "rpc_urls": [f"http://127.0.0.1:{port}"],
                    "confirmations": 0,
                    "factories": [],
                    "checkpoint_path": workdir / "checkpoint.json",
                    "batch_blocks": 2000,
                }
            ),
        }
    )
    private.local.state_dir.mkdir(parents=True, exist_ok=True)
    processes.start(stack.anvil_spec(private), private.local.state_dir)
    try:
        deployment = deploy_local_contracts(private)
        deployment.save(private.local.deployment_path)
        simulator = MarketSimulator(private, deployment)
        simulator.generate_history(
            hours, progress=lambda done, total: progress("mine", done, total)
        )
        recording = workdir / "recording"
        progress("publish", 0, 1)
        stats = publish_chain(private, once=True, record_to=recording)
        progress("publish", 1, 1)
        log.info("recorded %d pool events", stats.events)
    finally:
        processes.stop(private.local.state_dir, stack.ANVIL)
    return recording / f"{POOL_EVENTS}.jsonl", private


def compute_features(settings: Settings, events_file: Path, workdir: Path) -> list[dict]:
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
    settings: Settings,
    hours: float,
    progress: Callable[[str, int, int], None] = lambda stage, done, total: None,
    workdir: Path | None = None,
) -> Detector:
    """Train the first detector on ``hours`` of simulated normal traffic, register it in
    the model registry and promote it (settings.model_path is the production link by
    default; an explicit model.path gets a copy)."""
    from model.chain_window import TrainingParams, train_detector
    from model.registry import CHAIN_WINDOW, ModelRegistry

    with tempfile.TemporaryDirectory(prefix="dexwatch-bootstrap-") as scratch:
        work = workdir or Path(scratch)
        events_file, private = record_history(settings, hours, work, progress)
        progress("features", 0, 1)
        rows = compute_features(private, events_file, work)
        progress("features", 1, 1)
        progress("train", 0, 1)
        detector = train_detector(rows, TrainingParams(seed=settings.simulator.seed))
        registry = ModelRegistry(settings.registry_dir, CHAIN_WINDOW)
        registry.register(detector, {"training_range": _training_range(rows, hours)})
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
