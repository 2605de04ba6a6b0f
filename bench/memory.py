"""Memory of the streaming pipeline with many pools over hours of event time.

`dexwatch pipeline run` (the local runner, journaled Pub/Sub read, default pipeline
settings, the chain path) reads a synthetic market (not mined: a chain of 10,000 funded
pools would take longer to build than to measure) from a Pub/Sub emulator of its own:
``--busy`` pools trade every 15 s, the others about every ``--quiet-every-min`` minutes,
over ``--hours`` of event time that ends now (the market is published as fast as the
pipeline takes it, a few minutes of event time ahead of what it has written: the watermark
follows the data). The pipeline process's resident memory is sampled every second;
the figures are its peak, and its RSS when it has written the end of the second hour over
its RSS at the end of the first (``rss_growth_second_hour``: state that only grows shows
here). Run for 1,000 pools and for 10,000, the same busy pools in both.

Writes bench/results/memory.json (and the figures into bench/results/pipeline.json).

    .venv/bin/python bench/memory.py [--pools 1000,10000] [--hours 2]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from _emulator import delete_subscriptions, newest_window_end, own_emulator
from _results import write_results
from _synthetic import SyntheticMarket, history

from dexwatch.app.workflows.bootstrap import compute_features
from dexwatch.core.schemas.topics import PIPELINE_SUBSCRIPTION, POOL_EVENTS
from infra.local import stack
from infra.local.settings import load_local_settings
from model.chain_window import train_detector

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "memory"
PROJECT = "dexwatch-bench-memory"
BUSY_EVERY_S = 15


def _settings(state_dir: Path, emulator: str):
    return load_local_settings(
        state_dir=str(state_dir),
        pubsub={"project": PROJECT, "emulator_host": emulator},
        pipeline={"hourly": False},
        model={"path": str(WORK / "model.joblib")},
    )


def _train_model(settings) -> None:
    """A model for the synthetic market: an hour of 20 pools' windows."""
    if Path(settings.model.path).is_file():
        return
    recording = WORK / "train" / "history.jsonl"
    recording.parent.mkdir(parents=True, exist_ok=True)
    with recording.open("wb") as out:
        for _, batch in history(20, 1_800_000_000, 3600, BUSY_EVERY_S):
            out.write(b"".join(event.to_json() + b"\n" for event in batch))
    rows = compute_features(settings, recording, WORK / "train" / "features")
    train_detector(rows).save(Path(settings.model.path))


def _market(pools: int, busy: int, start: int, seconds: int, quiet_every_s: float, seed: int):
    """(event time, events) in time order: ``busy`` pools every 15 s, each other pool at
    random times, on average every ``quiet_every_s``."""
    market = SyntheticMarket(pools, seed=seed)
    rng = random.Random(seed)
    yield start, market.announcements(start)
    quiet_rate = (pools - busy) * BUSY_EVERY_S / quiet_every_s  # quiet trades per step
    for t in range(start + BUSY_EVERY_S, start + seconds + 1, BUSY_EVERY_S):
        events = market.step(t, range(busy))
        trades = int(quiet_rate) + (rng.random() < quiet_rate % 1)
        for p in rng.sample(range(busy, pools), min(trades, pools - busy)):
            events += market.step(t, range(p, p + 1))
        yield t, events


def _tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (the runner may fork workers)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")
        )
        pids += [int(child) for child in children]
    return total / 1024


def _run(pools: int, args, emulator: str) -> dict:
    from google.cloud import pubsub_v1

    work = WORK / f"{pools}-pools"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settings = _settings(work / "state", emulator)
    stack.ensure_pubsub_resources(PROJECT, only={PIPELINE_SUBSCRIPTION})
    config = work / "dexwatch.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    log = (work / "pipeline.log").open("w")
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "dexwatch", "--config", str(config), "pipeline", "run"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    samples: list[tuple[float, float]] = []  # (seconds since start, RSS MiB)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            samples.append((time.monotonic(), _tree_rss_mib(pipeline.pid)))

    threading.Thread(target=sample, daemon=True).start()
    client = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_latency=0.05)
    )
    topic = client.topic_path(PROJECT, POOL_EVENTS)
    seconds = round(args.hours * 3600)
    start = (int(time.time()) - seconds) // BUSY_EVERY_S * BUSY_EVERY_S
    marks: dict[int, float] = {}  # hour → RSS when the pipeline had written its end
    published = 0
    started = time.monotonic()

    def written_by(t: int) -> float | None:
        """Wait until event time ``t`` is at most ``--ahead-s`` past what the pipeline has
        written (or, before its first rows, past the start); the newest written."""
        while True:
            if pipeline.poll() is not None:
                raise RuntimeError(f"the pipeline stopped; see {work / 'pipeline.log'}")
            written = newest_window_end(settings)
            if t <= (written or start) + args.ahead_s:
                return written
            time.sleep(0.5)

    try:
        for t, events in _market(pools, args.busy, start, seconds, args.quiet_every_min * 60, 7):
            written = written_by(t)
            futures = [client.publish(topic, e.to_json(), **e.attributes()) for e in events]
            for future in futures:
                future.result(timeout=120)
            published += len(events)
            rss = samples[-1][1] if samples else 0.0
            for hour in range(1, int(args.hours) + 1):
                if hour not in marks and written is not None and written >= start + hour * 3600:
                    marks[hour] = rss
                    print(f"  {pools} pools: hour {hour} written, RSS {rss:.0f} MiB", flush=True)
            if (t - start) % 600 == 0:
                print(f"  {pools} pools: event time +{(t - start) // 60} min, {published} "
                      f"events, RSS {rss:.0f} MiB", flush=True)  # fmt: skip
        # The end of the last hour, written.
        deadline = time.monotonic() + 600
        final = int(args.hours)
        while final not in marks and time.monotonic() < deadline:
            written = newest_window_end(settings)
            if written is not None and written >= start + seconds - 2 * BUSY_EVERY_S:
                marks[final] = samples[-1][1]
            time.sleep(1)
    finally:
        done.set()
        pipeline.send_signal(signal.SIGINT)
        try:
            pipeline.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pipeline.kill()
        delete_subscriptions(PROJECT)
    return {
        "peak": max(rss for _, rss in samples),
        "marks": marks,
        "events": published,
        "seconds": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", default="1000,10000")
    parser.add_argument("--busy", type=int, default=300)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--quiet-every-min", type=float, default=30.0)
    parser.add_argument("--ahead-s", type=int, default=300)
    args = parser.parse_args()
    # Stopped with SIGTERM: unwind, so the emulator and the pipeline are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    WORK.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict] = {}
    details: dict[str, list[str]] = {}
    with own_emulator(WORK / "emulator") as emulator:
        _train_model(_settings(WORK / "train" / "state", emulator))
        for pools in (int(p) for p in args.pools.split(",")):
            result = _run(pools, args, emulator)
            figures[f"peak_rss_mib_{pools}_pools"] = {
                "value": round(result["peak"]), "unit": "MiB",
                **({"target": "<= 1024"} if pools == 10000 else {}),
            }  # fmt: skip
            marks = result["marks"]
            details[f"{pools}_pools"] = [
                f"{result['events']} events over {args.hours:g} h of event time in "
                f"{result['seconds']:.0f} s; RSS at the end of each hour written: "
                + ", ".join(f"hour {h}: {rss:.0f} MiB" for h, rss in sorted(marks.items()))
            ]
            if pools == max(int(p) for p in args.pools.split(",")) and 1 in marks and 2 in marks:
                figures["rss_growth_second_hour"] = {
                    "value": round(marks[2] / marks[1], 3), "unit": "ratio", "target": "<= 1.1",
                }  # fmt: skip
            print(f"{pools} pools: peak {result['peak']:.0f} MiB; {details[f'{pools}_pools'][0]}")
    path = write_results(
        "memory", figures,
        note=f"`dexwatch pipeline run` (local runner, journaled read, default pipeline "
        f"settings), synthetic market: {args.busy} pools trading every 15 s, the others about "
        f"every {args.quiet_every_min:g} min, {args.hours:g} h of event time",
        summary="pipeline", details=details,
    )  # fmt: skip
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
