"""Fixtures that start real servers on 127.0.0.1 (free ports, a temporary state dir) and stop them.

- ``pubsub_emulator``: one Pub/Sub emulator for the session, topics created; sets
  PUBSUB_EMULATOR_HOST.
- ``anvil_settings``: a fresh anvil per test (module-scoped variant ``module_anvil_settings``).
- ``deployed``: a fresh anvil with the local contracts deployed (``LocalDeployment``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dexwatch.core.settings import Settings
from infra.local import processes, stack
from infra.local.settings import load_local_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
# 2026-11-30 00:00 UTC, a Monday: where chains of tests that must draw the same market start.
FIXED_GENESIS = 1_795_996_800


def make_settings(state_dir: Path, **sections: dict) -> Settings:
    """Settings for a test: its own state dir and the repo's node_modules."""
    local = {"node_modules": str(ROOT / "node_modules")}
    local.update(sections.pop("local", {}))
    return load_local_settings(state_dir=str(state_dir), local=local, **sections)


@pytest.fixture(autouse=True)
def _no_stray_dexwatch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DEXWATCH_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a running Pub/Sub emulator with the declared topics."""
    try:
        stack.emulator_binary()
    except processes.StackError as err:
        pytest.fail(str(err))
    state_dir = tmp_path_factory.mktemp("emulator")
    port = processes.free_port()
    settings = make_settings(state_dir, local={"emulator_port": port})
    processes.start(stack.emulator_spec(settings), state_dir, ready_timeout_s=60)
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = settings.local.emulator_host
    try:
        stack.ensure_pubsub_resources(settings.pubsub.project)
        yield settings.local.emulator_host
    finally:
        processes.stop(state_dir, stack.EMULATOR)
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture
def pubsub_project(pubsub_emulator: str) -> str:
    """A project of its own per test on the shared emulator, with the declared topics."""
    project = f"test-{uuid.uuid4().hex[:10]}"
    stack.ensure_pubsub_resources(project)
    return project


def _start_anvil(
    state_dir: Path, genesis_timestamp: int | None = None, **sections: dict
) -> Iterator[Settings]:
    port = processes.free_port()
    local = {"anvil_port": port, **sections.pop("local", {})}
    settings = make_settings(
        state_dir,
        local=local,
        chain={"rpc_urls": [f"http://127.0.0.1:{port}"], **sections.pop("chain", {})},
        **sections,
    )
    processes.start(stack.anvil_spec(settings, genesis_timestamp), state_dir)
    try:
        yield settings
    finally:
        processes.stop(state_dir, stack.ANVIL)


@pytest.fixture
def anvil_settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings pointing at a fresh, empty anvil of this test's own."""
    yield from _start_anvil(tmp_path)


@pytest.fixture
def deployed(anvil_settings: Settings):
    """(settings, LocalDeployment): a fresh anvil with the local contracts deployed."""
    from infra.local.deploy import deploy_local_contracts

    deployment = deploy_local_contracts(anvil_settings)
    deployment.save(anvil_settings.deployment_path)
    return anvil_settings.with_deployment(), deployment


def _deployed_chain(state_dir: Path, genesis_timestamp: int | None = None):
    """(settings, LocalDeployment) of a fresh anvil under ``state_dir`` with the local
    contracts deployed, its first block at ``genesis_timestamp`` (else the wall clock)."""
    from infra.local.deploy import deploy_local_contracts

    gen = _start_anvil(state_dir, genesis_timestamp)
    settings = next(gen)
    start = None if genesis_timestamp is None else genesis_timestamp + 1
    deployment = deploy_local_contracts(settings, start_timestamp=start)
    deployment.save(settings.deployment_path)
    yield settings.with_deployment(), deployment
    gen.close()


@pytest.fixture
def deployed_at_a_fixed_time(tmp_path: Path):
    """Like ``deployed``, on a chain that starts at FIXED_GENESIS: the simulator's rhythm
    follows chain time, so a test that counts what an hour of it holds sees the same hour on
    every run (a chain started at the wall clock draws another one each time)."""
    yield from _deployed_chain(tmp_path, FIXED_GENESIS)


@pytest.fixture(scope="module")
def module_deployed(tmp_path_factory: pytest.TempPathFactory):
    """Like ``deployed``, shared by a module's tests (which must not disturb each other)."""
    yield from _deployed_chain(tmp_path_factory.mktemp("anvil"))


def write_local_config(directory: Path, **sections: dict) -> Path:
    """A dexwatch.yaml for a whole local stack of its own: free ports, state in ``directory``."""
    import yaml

    anvil_port, emulator_port = processes.free_port(), processes.free_port()
    subgraph_port = processes.free_port()
    config: dict = {
        "state_dir": str(directory / ".dexwatch"),
        "local": {
            "anvil_port": anvil_port,
            "emulator_port": emulator_port,
            "subgraph_port": subgraph_port,
            "node_modules": str(ROOT / "node_modules"),
            "dashboard_port": 0,
        },
        "chain": {"rpc_urls": [f"http://127.0.0.1:{anvil_port}"]},
        "pubsub": {"emulator_host": f"127.0.0.1:{emulator_port}"},
        "subgraph": {"endpoint_url": f"http://127.0.0.1:{subgraph_port}"},
        # The chain path only, unless a test asks: `dexwatch run` would otherwise train a
        # first hourly model (minutes of mining) before going live.
        "pipeline": {"hourly": False},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = directory / "dexwatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def dexwatch_cli(
    config: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real ``dexwatch`` command line in a subprocess with ``config``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    return subprocess.run(
        [sys.executable, "-m", "dexwatch", "--config", str(config), *args],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
