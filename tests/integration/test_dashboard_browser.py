"""The dashboard in a real browser (Debian's Chromium, headless, driven by Playwright) over a
short live run: `dexwatch run` (stack, simulator, publisher, streaming pipeline) with
`dexwatch dashboard` beside it. Every page loads without a console error; the overview shows
the run's pools; an incident injected while it runs appears in the live alert list and on
its pool's chart, whose window opens with its events. Each page's screenshot is written to
docs/dashboard/<page>.png (committed; the README shows them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dexwatch.core.emulator import EMULATOR_ENV
from dexwatch.core.schemas.topics import POOL_EVENTS
from infra.local.deployment import LocalDeployment
from tests.conftest import ROOT, dexwatch_cli, write_local_config

pytestmark = [pytest.mark.stack, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "docs" / "dashboard"
# A short live run: slices of 5 s, a first model on half an hour of simulated traffic.
LIVE = {
    "local": {"history_hours": 0},
    "simulator": {"block_interval_s": 1.0},
    "chain": {"confirmations": 1},
    "pipeline": {"slice_s": 5, "current_slices": 4, "baseline_slices": 12, "alert_cooldown_s": 60},
    "model": {"bootstrap_hours": 0.5},
}
DRAINED = "sushiswap:WETH/USDC"
# Generous: what the page must show well before these; nothing here is timed.
DEADLINE_MS = 240_000


def _dexwatch(config: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "dexwatch", "--config", str(config), *args],
        cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _wait_for_lines(process: subprocess.Popen, *prefixes: str) -> list[str]:
    """Reads the process' output up to its first line starting with each of ``prefixes``, in
    their order; the rest is drained on a thread (a full pipe would block it)."""
    assert process.stdout is not None
    seen, found = [], []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(prefixes[len(found)]):
            found.append(line)
            if len(found) == len(prefixes):
                threading.Thread(target=process.stdout.read, daemon=True).start()
                return found
    raise AssertionError(f"no line {prefixes[len(found)]!r} in:\n{''.join(seen)[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A running `dexwatch run` with the dashboard it serves, and a headless Chromium."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(f"no {CHROMIUM}: `make install` installs Debian's chromium")
    work = tmp_path_factory.mktemp("dashboard")
    config = write_local_config(work, **LIVE)
    run = _dexwatch(config, "run", "--duration", "1200")
    try:
        dashboard, _ = _wait_for_lines(run, "dashboard on ", "running:")
        url = dashboard.split()[2]
        deployment = LocalDeployment.load(work / ".dexwatch" / "deployment.json")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update",
                      "--disable-sync"],
            )  # fmt: skip
            yield {"config": config, "url": url, "deployment": deployment, "browser": browser,
                   "work": work}  # fmt: skip
            browser.close()
    finally:
        _stop(run)


class Page:
    """A browser tab that records what would show in its console as an error."""

    def __init__(self, live: dict, path: str) -> None:
        self.errors: list[str] = []
        self.page = live["browser"].new_page(viewport={"width": 1440, "height": 900})
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"{r.url}: {r.failure}"))
        self.page.goto(live["url"].rstrip("/") + path)

    def wait_for(self, predicate: str, arg: object = None) -> None:
        self.page.wait_for_function(predicate, arg=arg, timeout=DEADLINE_MS, polling=500)

    def screenshot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.page.close()
        assert self.errors == []


def test_the_overview_shows_the_runs_pools(live):
    page = Page(live, "/")
    names = [p.name for p in live["deployment"].pools]
    # Every pool of the local market, each with a latest score.
    page.wait_for(
        """names => names.every(name => [...document.querySelectorAll('#pool-rows tr')]
             .some(row => row.textContent.includes(name)
                          && row.children[2].textContent.trim() !== '—'))""",
        names,
    )
    assert "scoring the last hour: chain:" in page.page.inner_text("#models")
    # The run's chain at a glance; chosen in the header, it goes into the address and links.
    assert page.page.inner_text("#chain-rows").startswith("local")
    page.page.select_option("#chain-select", "local")
    page.wait_for(
        """() => location.search === '?chain=local'
             && document.querySelector('nav a[href="/alerts?chain=local"]') !== null
             && document.querySelectorAll('#pool-rows tr[data-chain]').length > 0"""
    )
    page.close()


def test_an_injected_incident_appears_in_the_alerts_and_on_its_pools_chart(live):
    address = live["deployment"].pool(DRAINED).address
    alerts = Page(live, "/alerts")
    alerts.wait_for("() => document.getElementById('status').textContent.startsWith('updated')")
    _publish_a_bad_message(live)
    # The pipeline's warm-up: a baseline of windows before the drain (test_live_detection).
    _wait_for_scored_windows(live["config"], address, windows=20)
    injected = dexwatch_cli(
        live["config"], "simulate", "inject", "--kind", "liquidity-drain", "--pool", DRAINED
    )
    assert injected.returncode == 0, injected.stderr
    # The open page polls: the thread comes without a reload.
    alerts.wait_for(
        """name => [...document.querySelectorAll('#alert-rows tr[data-alert]')]
             .some(row => row.textContent.includes(name)
                          && row.textContent.includes('liquidity-drain'))""",
        DRAINED,
    )
    alerts.screenshot("alerts")
    alerts.close()

    pool = Page(live, f"/pool?pool={address}&hours=1")
    # Its anomalous windows marked on the score chart, the injected incident's label listed.
    pool.wait_for(
        """() => typeof charts !== 'undefined' && charts.length > 0
             && charts[0].data[3].some(v => v !== null)
             && document.getElementById('overlays').textContent
                  .includes('liquidity-drain injected')"""
    )
    # Hover the first anomalous window, then click it: its features, then its events.
    x, y = pool.page.evaluate(
        """() => { const u = charts[0]; const i = u.data[3].findIndex(v => v !== null);
                   const box = u.over.getBoundingClientRect();
                   return [box.left + u.valToPos(u.data[0][i], 'x'),
                           box.top + u.valToPos(u.data[3][i], 'y')]; }"""
    )
    pool.page.mouse.move(x, y)
    pool.wait_for("() => document.getElementById('hover').textContent.includes('liquidity-drain')")
    pool.page.mouse.click(x, y)
    pool.wait_for("() => document.querySelector('#window table.events') !== null")
    events = pool.page.inner_text("#window table.events")
    assert "Burn" in events, events  # the drain's own transactions, from the journal
    pool.screenshot("pool")
    pool.close()


def test_model_health_and_overview_after_the_incident(live):
    health = Page(live, "/model-health")
    # The rate chart drawn; the dead letter of the bad message counted under its stage.
    health.wait_for(
        """() => typeof rateChart !== 'undefined' && rateChart !== null
             && rateChart.data[0].length > 0
             && document.getElementById('letters').textContent.includes('parse')"""
    )
    assert "chain-window" in health.page.inner_text("#drift")
    health.screenshot("model-health")
    health.close()
    overview = Page(live, "/")
    overview.wait_for(
        """name => [...document.querySelectorAll('#pool-rows tr')].some(row =>
             row.textContent.includes(name) && /[1-9]/.test(row.children[4].textContent))""",
        DRAINED,
    )
    overview.screenshot("overview")
    overview.close()


def _publish_a_bad_message(live: dict) -> None:
    """One message that is not a pool event: the pipeline dead-letters it (stage parse)."""
    import yaml

    from publishers.pubsub import Message, PubSubSink

    emulator = yaml.safe_load(live["config"].read_text())["pubsub"]["emulator_host"]
    before = os.environ.get(EMULATOR_ENV)
    os.environ[EMULATOR_ENV] = emulator
    try:
        with PubSubSink("dexwatch-local") as sink:
            attributes = {"event_time": str(int(time.time() * 1000))}
            sink.publish(POOL_EVENTS, [Message(b"{not a pool event", attributes)])
    finally:
        if before is None:
            os.environ.pop(EMULATOR_ENV)
        else:
            os.environ[EMULATOR_ENV] = before


def _wait_for_scored_windows(config: Path, pool: str, windows: int) -> None:
    deadline = time.monotonic() + DEADLINE_MS / 1000
    while time.monotonic() < deadline:
        done = dexwatch_cli(
            config, "query", f"select count(*) from pool_scores where pool = '{pool}'"
        )
        assert done.returncode == 0, done.stderr
        counts = [int(t) for t in done.stdout.replace("│", " ").split() if t.isdigit()]
        if counts and counts[0] >= windows:
            return
        time.sleep(5)
    raise AssertionError(f"{pool}: fewer than {windows} windows scored in time")
