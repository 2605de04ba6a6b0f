"""The embedded local stack: the Pub/Sub emulator and anvil, on 127.0.0.1.

``up`` starts both, creates the topics and subscriptions of ``pubsub.yaml`` and deploys
the contracts; ``down`` stops everything it started; ``status`` reports. With several local
chains configured (``LocalSettings.local_chains``), one anvil per chain, each with its own
chain id, port, block time and deployment.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from dexwatch.core.emulator import use_pubsub_emulator
from infra.local import processes
from infra.local.deployment import LocalDeployment
from infra.local.processes import ProcessSpec, StackError
from infra.local.settings import STACK_CHAIN_ID, LocalSettings

ANVIL = "anvil"
EMULATOR = "pubsub-emulator"
EMULATOR_INSTALL_HINT = (
    "the Pub/Sub emulator is not installed. Install Google's Debian package "
    "google-cloud-cli-pubsub-emulator (apt-get install google-cloud-cli-pubsub-emulator, from "
    "Google's Cloud SDK apt repository) or run `gcloud components install pubsub-emulator`, "
    "and make sure Java 11+ is on PATH"
)
# Block gas limit high enough for a busy simulated block of V3 swaps.
_ANVIL_GAS_LIMIT = 1_000_000_000


def _sdk_roots() -> list[Path]:
    roots = [Path(p) for p in (os.environ.get("CLOUDSDK_ROOT_DIR"),) if p]
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(Path(os.path.realpath(gcloud)).parent.parent)
    roots += [Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk")]
    return roots


def emulator_binary() -> Path:
    for root in _sdk_roots():
        candidate = root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if candidate.is_file():
            return candidate
    raise StackError(EMULATOR_INSTALL_HINT)


def anvil_binary(node_modules: Path) -> Path:
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    native = node_modules / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
    if native.is_file():
        return native
    wrapper = node_modules / ".bin" / "anvil"
    if wrapper.exists():
        return wrapper
    raise StackError(f"anvil is not installed under {node_modules}: run `make install`")


# Block states anvil keeps for calls at past blocks: a reorg or a look-back stays far
# shallower than this.
_ANVIL_STATES_KEPT = 256


def anvil_name(settings: LocalSettings) -> str:
    """The process name of the anvil of the settings' local chain: ``anvil`` for the stack's
    default chain, ``anvil-<chain id>`` for others."""
    chain_id = settings.local.chain_id
    return ANVIL if chain_id == STACK_CHAIN_ID else f"{ANVIL}-{chain_id}"


def anvil_spec(settings: LocalSettings, genesis_timestamp: int | None = None) -> ProcessSpec:
    local = settings.local
    argv = [
        str(anvil_binary(local.node_modules)),
        "--host", local.host,
        "--port", str(local.anvil_port),
        "--chain-id", str(local.chain_id),
        "--accounts", str(local.anvil_accounts),
        "--balance", "1000000",
        "--gas-limit", str(_ANVIL_GAS_LIMIT),
        # Transactions in a block in the order they were sent: incidents are sequences.
        "--order", "fifo",
        # Recent block states in memory only. By default anvil also writes older states to
        # ~/.foundry/anvil/tmp (about 2 MB per block here) and leaves them behind when it
        # stops: a day of simulated history filled tens of GB.
        "--prune-history", str(_ANVIL_STATES_KEPT),
        "--silent",
    ]  # fmt: skip
    if genesis_timestamp is not None:
        argv += ["--timestamp", str(genesis_timestamp)]
    return ProcessSpec(anvil_name(settings), argv, local.host, local.anvil_port)


def emulator_spec(settings: LocalSettings) -> ProcessSpec:
    local = settings.local
    argv = [str(emulator_binary()), f"--host={local.host}", f"--port={local.emulator_port}"]
    return ProcessSpec(EMULATOR, argv, local.host, local.emulator_port)


def ensure_pubsub_resources(
    project: str, only: set[str] | None = None, own_topics: tuple[str, ...] = ()
) -> list[str]:
    """Create the declared topics and subscriptions (``only`` these subscriptions, if given)
    that do not exist yet, with the pool-events topics of the chains ``own_topics`` names;
    returns what it made.

    Uses PUBSUB_EMULATOR_HOST when set, as every google-cloud-pubsub client does. Acked
    messages are not retained: the emulator does not implement Seek, so they would only
    grow its memory (the local pipeline replays from its own journal instead).
    """
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    from dexwatch.core.schemas.topics import declaration, subscription_path, topic_path

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    created = []
    try:
        for topic, spec in declaration(own_topics).topics.items():
            try:
                publisher.create_topic(name=topic_path(project, topic))
                created.append(topic)
            except AlreadyExists:
                pass
            for name, sub in spec.subscriptions.items():
                if only is not None and name not in only:
                    continue
                try:
                    subscriber.create_subscription(
                        request={
                            "name": subscription_path(project, name),
                            "topic": topic_path(project, topic),
                            "ack_deadline_seconds": sub.ack_deadline_s,
                            "enable_message_ordering": sub.enable_message_ordering,
                            "filter": sub.filter,
                        }
                    )
                    created.append(name)
                except AlreadyExists:
                    pass
    finally:
        subscriber.close()
        publisher.transport.close()
    return created


@dataclass(frozen=True)
class StackStatus:
    chain: str
    anvil_pid: int | None
    emulator_pid: int | None
    deployment: LocalDeployment | None

    @property
    def running(self) -> bool:
        return self.anvil_pid is not None and self.emulator_pid is not None


@dataclass(frozen=True)
class LocalChain:
    """One chain of the local stack: its one-chain settings and what is deployed on it."""

    settings: LocalSettings
    deployment: LocalDeployment

    @property
    def name(self) -> str:
        return self.settings.chain.name


def status(settings: LocalSettings) -> list[StackStatus]:
    """The emulator's and each local chain's anvil and deployment."""
    emulator_pid = processes.running_pid(settings.state_dir, EMULATOR)
    found = []
    for chain in settings.local_chains():
        path = chain.deployment_path
        found.append(
            StackStatus(
                chain=chain.chain.name,
                anvil_pid=processes.running_pid(settings.state_dir, anvil_name(chain)),
                emulator_pid=emulator_pid,
                deployment=LocalDeployment.load(path) if path.is_file() else None,
            )
        )
    return found


def fresh_chains(settings: LocalSettings) -> bool:
    """Whether ``up`` starts new chains: some local chain's anvil is not running."""
    return any(
        processes.running_pid(settings.state_dir, anvil_name(chain)) is None
        for chain in settings.local_chains()
    )


def _reset_chain_state(settings: LocalSettings) -> None:
    """A new anvil is a new chain: forget what belonged to the previous one (its messages in
    the pipeline's journal too: the new chain reuses block numbers, so event ids, and the
    pool addresses)."""
    state_dir = settings.state_dir
    chains = settings.local_chains()
    for path in (
        *(chain.deployment_path for chain in chains),
        *(chain.checkpoint_path for chain in chains),
        settings.warehouse_path,
    ):
        path.unlink(missing_ok=True)
    for directory in ("checkpoints", "journal"):
        shutil.rmtree(state_dir / directory, ignore_errors=True)


def up(settings: LocalSettings, genesis_timestamp: int | None = None) -> list[LocalChain]:
    """Start the emulator and each local chain's anvil (if not running), create topics,
    deploy contracts; the local chains, in the order configured.

    New chains start at ``genesis_timestamp`` if given (in the past, for chains that mine
    their history before going live), and the deployments' blocks follow it. The chains
    start fresh together: if one is not running, the others are stopped and started anew
    too (the pipeline's journal and warehouse hold all of them)."""
    from infra.local.deploy import deploy_local_contracts

    state_dir = settings.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    use_pubsub_emulator(settings.local.emulator_host)
    processes.start(emulator_spec(settings), state_dir, ready_timeout_s=60)
    ensure_pubsub_resources(settings.pubsub.project, own_topics=settings.own_topics)
    chains = settings.local_chains()
    fresh = fresh_chains(settings)
    if fresh:
        for chain in chains:
            processes.stop(state_dir, anvil_name(chain))
        _reset_chain_state(settings)
        for chain in chains:
            processes.start(anvil_spec(chain, genesis_timestamp), state_dir)
    start = genesis_timestamp + 1 if fresh and genesis_timestamp is not None else None
    up_chains = []
    for chain in chains:
        if not chain.deployment_path.is_file():
            deploy_local_contracts(chain, start_timestamp=start).save(chain.deployment_path)
        deployment = LocalDeployment.load(chain.deployment_path)
        up_chains.append(LocalChain(chain.with_deployment(), deployment))
    return up_chains


def down(settings: LocalSettings) -> list[str]:
    """Stop every process of the local stack; returns the names that were running."""
    state_dir = settings.state_dir
    run_dir = state_dir / "run"
    names = sorted(p.stem for p in run_dir.glob("*.pid")) if run_dir.is_dir() else []
    # Clients first (simulator, publisher, pipeline), then the servers they talk to.
    servers = [n for n in names if n == EMULATOR or n.startswith(ANVIL)]
    order = [n for n in names if n not in servers] + servers
    return [name for name in order if processes.stop(state_dir, name)]
