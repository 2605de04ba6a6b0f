"""The first run as a new user meets it: `make run` with the install done and a fresh state
directory (no models, no chain), timed to the first scored chain window in the warehouse
(``first_score_s``) and to the first dashboard answer that shows it (``first_page_s``).

The dashboard's pages draw what ``/api/overview`` answers, so the page shows a score as soon
as that answer holds one (tests/integration/test_dashboard_browser.py checks the drawing in
a real browser). Also measured: the first window of live traffic, not of the mined history
(``first_live_window_s``), when the chain-window model was ready (``chain_model_ready_s``),
and the console's log-record lines (``console_log_lines``: Beam's and the libraries' lines
belong in the log files). The default ports must be free: stop any other `dexwatch run`.

    .venv/bin/python bench/first_run.py [--timeout 600]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
from _results import write_results

from dexwatch.app.dashboard.reader import DashboardReader
from dexwatch.core.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "first_run"
# What a log record looks like on a console (structlog's and the stdlib's renderings).
LOG_RECORD = re.compile(r"^\S*\d{4}-\d\d-\d\dT\S+ \[\w+ *\]|^(INFO|WARNING|ERROR|DEBUG):\S+:")
DEFAULT_PORTS = (8545, 8085, 8000, 8050)


class Timeline:
    """What `make run` printed, stamped with the seconds since it was started."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def follow(self, stream) -> None:  # noqa: ANN001
        for line in stream:
            print(line, end="", flush=True)
            with self._lock:
                self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def first(self, pattern: str) -> tuple[float, str] | None:
        with self._lock:
            return next(((t, line) for t, line in self.lines if re.search(pattern, line)), None)


def first_chain_window(reader: DashboardReader, since: float) -> tuple[bool, bool]:
    """(any chain window scored, any scored window of traffic after ``since``)."""
    rows = reader.rows(
        "SELECT count(*) AS scored, count(*) FILTER (WHERE epoch(window_end) >= "
        f"{since}) AS live FROM pool_score_history WHERE source = 'chain' AND score IS NOT NULL"
    )
    return (bool(rows and rows[0]["scored"]), bool(rows and rows[0]["live"]))


def page_shows_a_score(url: str) -> bool:
    try:
        answer = httpx.get(f"{url.rstrip('/')}/api/overview", timeout=10)
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    return any(
        (pool.get("latest") or {}).get("source") == "chain"
        for pool in answer.json().get("pools", [])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    taken = [port for port in DEFAULT_PORTS if _port_open(port)]
    if taken:
        raise SystemExit(f"ports {taken} are taken: `make run` uses the defaults; stop that run")
    shutil.rmtree(WORK, ignore_errors=True)
    state_dir = WORK / ".dexwatch"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    env["DEXWATCH_STATE_DIR"] = str(state_dir)
    settings = load_settings(None, state_dir=state_dir)
    started_wall, started = time.time(), time.monotonic()
    run = subprocess.Popen(
        ["make", "-s", "run"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    timeline = Timeline(started)
    threading.Thread(target=timeline.follow, args=(run.stdout,), daemon=True).start()
    first_score = first_live = first_page = None
    reader = None
    try:
        while time.monotonic() - started < args.timeout and run.poll() is None:
            time.sleep(1.0)
            now = time.monotonic() - started
            if reader is None and settings.warehouse_path.exists():
                reader = DashboardReader(settings)
            if reader is not None and first_live is None:
                scored, live = first_chain_window(reader, started_wall)
                first_score = first_score or (now if scored else None)
                first_live = now if live else None
            dashboard = timeline.first(r"dashboard on (http://\S+)")
            if first_page is None and dashboard is not None:
                url = re.search(r"http://\S+", dashboard[1]).group(0)
                first_page = now if page_shows_a_score(url) else None
            if first_live is not None and first_page is not None:
                break
    finally:
        os.killpg(run.pid, signal.SIGINT)
        try:
            run.wait(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
    if first_score is None or first_page is None:
        raise SystemExit(f"no scored window within {args.timeout:g} s; see the output above")
    ready = timeline.first(r"chain-window model ready")
    noise = [line for _, line in timeline.lines if LOG_RECORD.search(line)]
    figures = {
        "first_score_s": {"value": round(first_score, 1), "unit": "s", "target": "<= 120"},
        "first_page_s": {"value": round(first_page, 1), "unit": "s", "target": "<= 120"},
        "first_live_window_s": {"value": round(first_live, 1), "unit": "s"},
        "chain_model_ready_s": {"value": round(ready[0], 1) if ready else None, "unit": "s"},
        "console_log_lines": {"value": len(noise), "unit": "lines", "target": "0"},
    }
    path = write_results(
        "first_run", figures,
        note="`make run` with the install done and a fresh state directory; the chain-window "
        "and hourly models trained in the background",
        details={"console_log_lines": noise[:20]},
    )  # fmt: skip
    print(f"wrote {path}")


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    main()
