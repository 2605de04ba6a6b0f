"""`dexwatch run` on its own local stack (free ports, its own state under bench/work/<name>)
for the live benchmarks: start it, inject incidents, hear the alerts, time them against the
chain's blocks, and stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml
from google.cloud import pubsub_v1

from dexwatch.core.emulator import use_pubsub_emulator
from dexwatch.core.schemas.alert import V1_COPY_ATTRIBUTE, Alert, parse_alert
from dexwatch.core.schemas.topics import ALERTS_SUBSCRIPTION, subscription_path
from infra.local.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "dexwatch-local"


class LocalRun:
    """One `dexwatch run` with the chain path only, live traffic from its first block.

    Args:
        work: its directory (state, logs, config), emptied first by the caller.
        block_interval_s: the simulator's live block interval.
        confirmations: the chain publisher's.
        pipeline: extra pipeline settings.
    """

    def __init__(
        self,
        work: Path,
        block_interval_s: float = 2.0,
        confirmations: int = 1,
        pipeline: dict | None = None,
    ) -> None:
        self.work = work
        self.confirmations = confirmations
        anvil, emulator = free_port(), free_port()
        self.rpc_url = f"http://127.0.0.1:{anvil}"
        self.emulator_host = f"127.0.0.1:{emulator}"
        config = {
            "state_dir": str(work / ".dexwatch"),
            "local": {
                "anvil_port": anvil,
                "emulator_port": emulator,
                "node_modules": str(ROOT / "node_modules"),
                # Live traffic only: a warm-up gives the windows their baseline.
                "history_hours": 0,
            },
            "chain": {"rpc_urls": [self.rpc_url], "confirmations": confirmations},
            "pubsub": {"emulator_host": self.emulator_host},
            "simulator": {"block_interval_s": block_interval_s},
            # The chain path alone: its alerts are what the live benchmarks measure.
            "pipeline": {"hourly": False, **(pipeline or {})},
            "model": {"bootstrap_hours": 1.0},
        }
        self.config = work / "dexwatch.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.alerts: list[tuple[float, Alert]] = []
        self._lock = threading.Lock()
        self._run: subprocess.Popen | None = None
        self._subscriber = None
        self._stream = None

    @property
    def state_dir(self) -> Path:
        return self.work / ".dexwatch"

    def dexwatch(self, *args: str, **kwargs) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
        return subprocess.Popen(
            [sys.executable, "-m", "dexwatch", "--config", str(self.config), *args],
            cwd=self.work, env=env, text=True, **kwargs,
        )  # fmt: skip

    def start(self) -> None:
        """Start `dexwatch run` (first model included) and listen to the alerts topic."""
        self._run = self.dexwatch("run", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self._run.stdout is not None
        for line in self._run.stdout:
            print(line, end="", flush=True)
            if line.startswith("running:"):
                break
        else:
            raise RuntimeError("dexwatch run ended before it ran; see its output above")
        # Keep reading its output, or `run` blocks on a full pipe.
        threading.Thread(target=self._run.stdout.read, daemon=True).start()
        use_pubsub_emulator(self.emulator_host)
        self._subscriber = pubsub_v1.SubscriberClient()

        def on_alert(message) -> None:  # noqa: ANN001
            if V1_COPY_ATTRIBUTE not in message.attributes:
                alert = parse_alert(message.data)
                with self._lock:
                    self.alerts.append((time.time(), alert))
            message.ack()

        self._stream = self._subscriber.subscribe(
            subscription_path(PROJECT, ALERTS_SUBSCRIPTION), on_alert
        )

    def running(self) -> bool:
        return self._run is not None and self._run.poll() is None

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
        if self._subscriber is not None:
            self._subscriber.close()
        if self._run is not None:
            self._run.send_signal(signal.SIGINT)
            try:
                self._run.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self._run.kill()

    def inject(self, kind: str, pool: str) -> None:
        done = self.dexwatch("simulate", "inject", "--kind", kind, "--pool", pool,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        _, err = done.communicate(timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"inject failed: {err[-500:]}")

    def alerts_since(self, index: int, matching: Callable[[Alert], bool]) -> list:
        with self._lock:
            return [(t, a) for t, a in self.alerts[index:] if matching(a)]

    def alert_count(self) -> int:
        with self._lock:
            return len(self.alerts)

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a warehouse query through the CLI (the pipeline holds the file), as text."""
        done = self.dexwatch("query", sql, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = done.communicate(timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"query failed: {err[-500:]}")
        rows = []
        for line in out.splitlines():
            cells = [c.strip() for c in line.replace("│", "|").split("|") if c.strip()]
            if cells:
                rows.append(cells)
        return rows

    def rpc(self, method: str, params: list) -> object:
        reply = httpx.post(
            self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
            timeout=30,
        ).json()  # fmt: skip
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def block_time(self, number: int) -> int:
        block = self.rpc("eth_getBlockByNumber", [hex(number), False])
        return int(block["timestamp"], 16)

    def first_incident_block(self, pool: str, since: float) -> int:
        """The first block of the incident the injector labelled on ``pool`` after ``since``."""
        sql = (
            f"select first_block from incident_labels where pool = '{pool}' "
            f"and epoch(injected_at) >= {since - 1} order by first_block limit 1"
        )
        for row in self.query(sql):
            if row[0].isdigit():
                return int(row[0])
        raise RuntimeError(f"no incident label for {pool} since {since}")

    def confirmed_at(self, pool: str, since: float) -> tuple[float, float]:
        """(timestamp of the incident's first block, timestamp of the block that confirmed
        it: the publisher cannot see the incident before)."""
        first = self.first_incident_block(pool, since)
        return float(self.block_time(first)), float(self.block_time(first + self.confirmations))

    def alert_latency(
        self, kind: str, pool: str, wait_s: float = 30.0
    ) -> tuple[float, float] | None:
        """Inject ``kind`` on ``pool`` (its name) and return the seconds to the first alert
        (a new thread or revision) on the pool from the block that confirmed the incident's
        first block and from that first block itself; None if no alert came."""
        from infra.local.deployment import LocalDeployment

        address = LocalDeployment.load(self.state_dir / "deployment.json").pool(pool).address
        seen = self.alert_count()
        started = time.time()
        self.inject(kind, pool)
        deadline = time.time() + wait_s
        while time.time() < deadline:
            new = self.alerts_since(seen, lambda a: address in {p.pool for p in a.pools})
            if new:
                first, confirmed = self.confirmed_at(address, started)
                return new[0][0] - confirmed, new[0][0] - first
            time.sleep(0.05)
        return None
