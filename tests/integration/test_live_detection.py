"""The whole detector live, through the real command line: `dexwatch run` (stack,
simulator, publisher, streaming pipeline), incidents injected while it runs, alerts read
with `dexwatch alerts tail`, anomalies queried afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.local import processes
from infra.local.deployment import LocalDeployment
from tests.conftest import dexwatch_cli, write_local_config

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# Short slices so the pipeline warms up in half a minute; a first model trained on the
# same settings by `run` itself.
LIVE = {
    # No back-dated history: this test is about live chain windows, and the run's first
    # minute is its warm-up.
    "local": {"history_hours": 0},
    "simulator": {"block_interval_s": 1.0},
    "chain": {"confirmations": 1},
    "pipeline": {"slice_s": 5, "current_slices": 4, "baseline_slices": 12, "alert_cooldown_s": 60},
    "model": {"bootstrap_hours": 0.5},
}
POOLS = ("sushiswap:WETH/USDC", "uniswap_v3:WBTC/USDC:3000")
# The other pools trade normally all along: at least this much of their traffic is scored
# (event time) before the run stops, and none of it may raise an alert.
NORMAL_SCORED_S = 300


def _cli(config: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "dexwatch", "--config", str(config), *args],
        cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_injected_drains_alert_within_the_run_and_land_in_anomalies(tmp_path: Path):
    # With Slack configured on its local stand-in: `run` starts both and prints the posts.
    slack = {
        "enabled": True, "local_standin": True,
        "standin_port": processes.free_port(), "port": processes.free_port(),
    }  # fmt: skip
    config = write_local_config(tmp_path, **LIVE, slack=slack)
    run = _cli(config, "run", "--duration", "900")
    tail = None
    try:
        for line in run.stdout:  # bootstrap, then every component started
            if line.startswith("running:"):
                break
        tail = _cli(config, "alerts", "tail", "--count", "2")
        time.sleep(60)  # the pipeline's warm-up: half a baseline of history
        labels = []
        for pool in POOLS:
            injected = dexwatch_cli(
                config, "simulate", "inject", "--kind", "liquidity-drain", "--pool", pool
            )
            assert injected.returncode == 0, injected.stderr
            labels.append(injected.stdout)
        alerts, errors = tail.communicate(timeout=120)
        assert tail.returncode == 0, errors
        _wait_for_normal_traffic_scored(config, NORMAL_SCORED_S, deadline_s=600)
    finally:
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
        if tail is not None and tail.poll() is None:
            tail.kill()
    assert run.returncode == 0, err[-3000:]
    deployment = LocalDeployment.load(tmp_path / ".dexwatch" / "deployment.json")
    addresses = {deployment.pool(name).address for name in POOLS}
    alerted = {
        line.split(" pool ")[1].split()[0] for line in alerts.splitlines() if " pool " in line
    }
    assert alerted == addresses, alerts
    assert all("liquidity" in line for line in alerts.splitlines()), alerts
    # `run` printed them too, beside its summary, and no other pool alerted: the rest of the
    # market traded normally all along.
    alert_lines = [line for line in out.splitlines() if line.startswith("ALERT")]
    assert len(alert_lines) >= 2
    assert all(any(f"ALERT {name}:" in line for name in POOLS) for line in alert_lines), alert_lines
    # Each alert thread is in Slack (the stand-in), and `run` printed its post.
    alert_ids = {line.split("alert_id=")[1].split()[0] for line in alerts.splitlines()}
    slack_lines = [line for line in out.splitlines() if line.startswith("SLACK")]
    for alert_id in alert_ids:
        assert any(f"(alert {alert_id})" in line for line in slack_lines), slack_lines
    rows = dexwatch_cli(
        config, "query", "select distinct pool, kind from anomalies where severity = 'high'"
    )
    assert rows.returncode == 0, rows.stderr
    for address in addresses:
        assert address in rows.stdout
    normal = [p.address for p in deployment.pools if p.address not in addresses]
    counts = dexwatch_cli(
        config, "query", "select count(*) from anomalies where pool in "
        f"({', '.join(repr(a) for a in normal)})",
    )  # fmt: skip
    assert counts.returncode == 0, counts.stderr
    assert _numbers(counts.stdout) == [0], counts.stdout


def _numbers(text: str) -> list[int]:
    return [int(t) for t in text.replace("│", " ").split() if t.isdigit()]


def _wait_for_normal_traffic_scored(config: Path, seconds: int, deadline_s: float) -> None:
    """Until every pool has ``seconds`` of event time between its first and last scored
    window (the injected ones included, which got there first)."""
    query = (
        "select min(epoch(max_end) - epoch(min_end))::bigint from (select pool, "
        "min(window_end) as min_end, max(window_end) as max_end from pool_scores group by pool)"
    )
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        done = dexwatch_cli(config, "query", query)
        assert done.returncode == 0, done.stderr
        spans = _numbers(done.stdout)
        if spans and spans[0] >= seconds:
            return
        time.sleep(10)
    raise AssertionError(f"normal traffic was not scored for {seconds} s in time")
