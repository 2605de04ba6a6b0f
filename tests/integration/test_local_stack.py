"""The local stack and the whole local detector through the real command line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.local import processes, stack
from infra.local.deployment import LocalDeployment
from tests._pubsub import drain, pool_events
from tests.conftest import ROOT, dexwatch_cli, make_settings, write_local_config

pytestmark = [pytest.mark.stack, pytest.mark.slow]

POOL_NAMES = (
    "uniswap_v3:WETH/USDC:500",
    "uniswap_v3:WBTC/USDC:3000",
    "sushiswap:WETH/USDC",
    "sushiswap:LINK/WETH",
    "uniswap_v2:UNI/USDC",
    "uniswap_v3:DAI/USDC:500",
    "uniswap_v3:WETH/DAI:3000",
    "uniswap_v3:USDT/USDC:500",
)


def _ports(config: Path) -> list[int]:
    local = yaml.safe_load(config.read_text())["local"]
    return [local["anvil_port"], local["emulator_port"], local["subgraph_port"]]


def _assert_nothing_left(config: Path, pids: list[int]) -> None:
    for port in _ports(config):
        assert not processes.port_open("127.0.0.1", port), f"port {port} still served"
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


def _pids(config: Path) -> list[int]:
    run_dir = Path(yaml.safe_load(config.read_text())["state_dir"]) / "run"
    return [int(p.read_text()) for p in run_dir.glob("*.pid")]


def test_up_is_idempotent_status_reports_and_down_stops_everything(tmp_path: Path) -> None:
    config = write_local_config(tmp_path)
    try:
        first = dexwatch_cli(config, "local", "up")
        assert first.returncode == 0, first.stderr
        for name in POOL_NAMES:
            assert name in first.stdout
        deployment = LocalDeployment.load(tmp_path / ".dexwatch" / "deployment.json")
        assert {p.name for p in deployment.pools} == set(POOL_NAMES)

        again = dexwatch_cli(config, "local", "up")
        assert again.returncode == 0, again.stderr
        assert LocalDeployment.load(tmp_path / ".dexwatch" / "deployment.json") == deployment

        status = dexwatch_cli(config, "local", "status")
        assert status.returncode == 0 and "8 deployed" in status.stdout
        pids = _pids(config)
        assert len(pids) == 2
    finally:
        down = dexwatch_cli(config, "local", "down")
    assert down.returncode == 0 and "anvil" in down.stdout
    _assert_nothing_left(config, pids)
    assert dexwatch_cli(config, "local", "status").returncode == 1


def test_injected_drain_is_published_and_labelled(tmp_path: Path, monkeypatch) -> None:
    # No confirmations: `publish chain --once` then reaches the drain's last block.
    config = write_local_config(tmp_path, chain={"confirmations": 0})
    try:
        assert dexwatch_cli(config, "local", "up").returncode == 0
        injected = dexwatch_cli(
            config,
            "simulate",
            "inject",
            "--kind",
            "liquidity-drain",
            "--pool",
            "sushiswap:WETH/USDC",
        )
        assert injected.returncode == 0, injected.stderr
        published = dexwatch_cli(config, "publish", "chain", "--once")
        assert published.returncode == 0, published.stderr

        labels = dexwatch_cli(
            config, "query", "select pool, kind, first_block, last_block from incident_labels"
        )
        assert labels.returncode == 0, labels.stderr
        assert "liquidity-drain" in labels.stdout

        settings = yaml.safe_load(config.read_text())
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", settings["pubsub"]["emulator_host"])
        events = pool_events(drain("dexwatch-local", "pool-events-monitor"))
        deployment = LocalDeployment.load(tmp_path / ".dexwatch" / "deployment.json")
        pair = deployment.pool("sushiswap:WETH/USDC").address
        first, last = (
            int(n) for n in re.search(r"blocks (\d+)\.\.(\d+)", injected.stdout).groups()
        )
        burns = [
            e
            for e in events
            if e.pool == pair and e.event == "Burn" and first <= e.block_number <= last
        ]
        # Three blocks, each with a Burn of every account that holds the pair's liquidity.
        blocks = {e.block_number for e in burns}
        assert len(blocks) == 3, f"Burns of the drain published in {len(blocks)} blocks"
        holders = 1 + len(deployment.accounts.liquidity_providers)
        assert len(burns) <= 3 * holders
        assert all(e.dex == "sushiswap" and e.kind == "event" for e in burns)

        # The pool just traded (the drain): a quiet pool's drain is refused, in one line.
        refused = dexwatch_cli(
            config, "simulate", "inject", "--kind", "quiet-pool-drain", "--pool",
            "sushiswap:WETH/USDC",
        )  # fmt: skip
        assert refused.returncode == 1
        assert "needs it silent for 600 s" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        dexwatch_cli(config, "local", "down")


# A small first model: `run` trains one when there is none (bootstrap_hours of history).
# One hour of history: complete hours for the subgraph path without mining eight.
# A log record as a console shows it (structlog's rendering, or the stdlib's default).
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\dT\S+ \[\w+ *\]|^(INFO|WARNING|ERROR|DEBUG):\S+:")
QUICK_RUN = {
    "simulator": {"block_interval_s": 1.0},
    "model": {"bootstrap_hours": 0.3},
    "local": {"history_hours": 1},
}


def _run_for(config: Path, seconds: int) -> subprocess.CompletedProcess:
    """`dexwatch run --duration` in the config's directory, with none of this process's
    DEXWATCH_ or PUBSUB_ variables; it must exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "dexwatch", "--config", str(config), "run", "--duration",
         str(seconds)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=180 + 2 * seconds,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_run_shows_every_pool_and_leaves_no_process(tmp_path: Path) -> None:
    config = write_local_config(tmp_path, **QUICK_RUN)
    proc = _run_for(config, seconds=40)
    final_table = proc.stdout[proc.stdout.rfind("pool-events:") :]
    for name in POOL_NAMES:
        row = next((line for line in final_table.splitlines() if name in line), None)
        assert row is not None, f"{name} missing from the summary:\n{final_table}"
        swaps = int(row.split("│")[2].strip())
        assert swaps > 0, row
    # The chain started hours back: the subgraph path published its complete hours.
    hourly = [line for line in proc.stdout.splitlines() if line.startswith("HOURLY ")]
    for name in POOL_NAMES:
        if not name.startswith("uniswap_v2"):  # no subgraph source for the Uniswap V2 pair
            assert any(f" {name} " in line for line in hourly), f"no hourly row of {name}"
    assert "stopped:" in proc.stdout
    _assert_nothing_left(config, _pids(config))
    assert not list((tmp_path / ".dexwatch" / "run").glob("*.pid"))
    # The first model was trained in the background, and the console holds dexwatch's own
    # lines: log records (Beam's, the trainer's) are in the log files.
    assert "chain-window model: none trained yet; training one in the background" in proc.stdout
    assert "chain-window model ready" in proc.stdout
    assert "dashboard on http://127.0.0.1:" in proc.stdout
    records = [line for line in (proc.stdout + proc.stderr).splitlines() if LOG_RECORD.search(line)]
    assert records == []
    logs = tmp_path / ".dexwatch" / "logs"
    assert "deployed the local contracts" in (logs / "run.log").read_text()
    assert "trained detector" in (logs / "first-models.log").read_text()


def test_run_with_two_local_chains_publishes_and_scores_both(tmp_path: Path) -> None:
    """`dexwatch run` with two local chains (infra/local/chains/two-chains.yaml's shape, on
    free ports): two anvils with their own chain ids and block times, a simulator and a chain
    publisher each, a subgraph path each (one stand-in for The Graph serving each chain's own
    subgraphs), one pipeline scoring both, every pool named with its chain. The 12 s chain
    publishes to a topic of its own, as the example does: the live summary and the pipeline
    read it beside the shared one."""
    config = write_local_config(tmp_path, **QUICK_RUN)
    raw = yaml.safe_load(config.read_text())
    second_port = processes.free_port()
    raw.pop("chain")
    example = yaml.safe_load((ROOT / "infra" / "local" / "chains" / "two-chains.yaml").read_text())
    raw["chains"] = [
        {"chain_id": 31337, "rpc_urls": [f"http://127.0.0.1:{raw['local']['anvil_port']}"]},
        {
            "chain_id": 31338, "name": "local-12s", "block_time_s": 12,
            "own_topic": example["chains"][1]["own_topic"],
            "rpc_urls": [f"http://127.0.0.1:{second_port}"],
            "subgraph_sources": example["chains"][1]["subgraph_sources"],
        },
    ]  # fmt: skip
    raw["pipeline"]["slice_s"] = 12
    config.write_text(yaml.safe_dump(raw))
    proc = _run_for(config, seconds=60)
    final_table = proc.stdout[proc.stdout.rfind("pool-events:") :]
    rows = [" ".join(line.split()) for line in final_table.splitlines()]
    for chain in ("local", "local-12s"):
        for name in POOL_NAMES:
            row = next((r for r in rows if f"│ {chain} {name} │" in r), None)
            assert row is not None, f"{chain} {name} missing from the summary:\n{final_table}"
            assert int(row.split("│")[2]) > 0, row
    stopped = proc.stdout.split("stopped:")[-1]
    for name in ("anvil", "anvil-31338", "simulator-local-12s", "chain-publisher-local-12s",
                 "subgraph-publisher-local", "subgraph-publisher-local-12s"):  # fmt: skip
        assert name in stopped
    # The subgraph path too: each chain's complete hours, from its own subgraphs.
    hourly = [line for line in proc.stdout.splitlines() if line.startswith("HOURLY ")]
    for chain in ("local", "local-12s"):
        for name in POOL_NAMES:
            if not name.startswith("uniswap_v2"):  # no subgraph source for the Uniswap V2 pair
                assert any(f" {chain} {name} " in line for line in hourly), f"{chain} {name}"
    # One pipeline scored both chains' windows, each with its own pools.
    from dexwatch.core.warehouse import open_warehouse
    from infra.local.settings import load_local_settings

    warehouse = open_warehouse(load_local_settings(config))
    scored = dict(
        warehouse.query("select chain_id, count(distinct pool) from pool_scores group by 1").rows
    )
    assert scored == {31337: len(POOL_NAMES), 31338: len(POOL_NAMES)}
    state = tmp_path / ".dexwatch"
    # Each topic's events through the pipeline's journal of its own subscription.
    (project,) = (state / "journal").iterdir()
    assert {"pool-events-pipeline", "pool-events-local-12s-pipeline"} <= {
        p.name for p in project.iterdir()
    }
    assert (state / "deployment-31338.json").is_file()
    assert {p.name for p in (state / "checkpoints").glob("chain-*.json")} == {
        "chain-31337.json", "chain-31338.json",
    }  # fmt: skip
    assert not processes.port_open("127.0.0.1", second_port)
    _assert_nothing_left(config, [])
    assert not list((state / "run").glob("*.pid"))


def test_interrupt_stops_every_process_it_started(tmp_path: Path) -> None:
    config = write_local_config(tmp_path, **QUICK_RUN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dexwatch", "--config", str(config), "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:  # wait until every component runs
            if line.startswith("running:"):
                break
        pids = _pids(config)
        # emulator, anvil, simulator, chain publisher, subgraph stand-in and publisher, pipeline
        assert len(pids) == 7
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    _assert_nothing_left(config, pids)


def test_a_new_chain_forgets_the_old_ones_state_but_keeps_the_models(tmp_path: Path) -> None:
    """What a fresh anvil makes stale: the deployment, checkpoints, the warehouse and the
    pipeline's journal (a new chain reuses block numbers and pool addresses, so replaying the
    old messages would mix the two chains); the trained models stay."""
    settings = make_settings(tmp_path / "state")
    stale = [
        settings.deployment_path,
        settings.warehouse_path,
        settings.state_dir / "checkpoints" / "subgraph.json",
        settings.state_dir / "journal" / "p" / "pool-events-pipeline" / "0001.log",
    ]
    model = settings.model_path
    for path in [*stale, model]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    stack._reset_chain_state(settings)
    assert [path for path in stale if path.exists()] == []
    assert model.read_bytes() == b"x"
