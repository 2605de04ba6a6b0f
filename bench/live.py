"""Sustained live rate of the streaming pipeline on the local runner.

Trains a model on the synthetic market's windows, then, with a Pub/Sub emulator of its own
for each run, runs `dexwatch pipeline run` (the journaled local read) while this process
publishes the synthetic market live, at ``--rates`` events per second in turn (event time =
wall clock), each for ``--minutes``. The lag is the wall clock less the newest event time the
pipeline has written rows for; a rate is sustained when the lag at the end is no more than
``--flat-s`` above the lag after the first minute. Beside it, the same pipeline with Beam's
stock local read at ``--stock-rate`` for four minutes: how fast it gets through.

Writes bench/results/live.json and the figures into bench/results/pipeline.json.

``--chains 2``: the same market split over two chains (ids 1 and 137, half the pools and
half the rate each, both configured), beside one chain in the same run at the same rates;
the lag is the larger of the two chains'. Adds ``live_sustained_events_per_s`` (both) and
``live_sustained_events_per_s_one_chain`` to bench/results/multi_chain.json.

A pool's state grows for ``pipeline.allowed_lateness_s`` (600 s) and a sweep (the ids it
has admitted, kept against copies): runs shorter than about 12 minutes measure the pipeline
before it carries its full state, at the synthetic market's 100 events/s per pool (a busy
mainnet pool has a few events a block).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _emulator import newest_window_end, own_emulator
from _results import add_figures, write_results
from _synthetic import SyntheticMarket, history

from dexwatch.app.workflows.bootstrap import compute_features
from dexwatch.core.emulator import use_pubsub_emulator  # noqa: E402
from dexwatch.core.schemas.topics import PIPELINE_SUBSCRIPTION, POOL_EVENTS
from infra.local import stack
from infra.local.settings import load_local_settings  # noqa: E402
from model.chain_window import train_detector

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "live"
POOLS = 20
PROJECT = "dexwatch-bench"
CHAIN_IDS = (1, 137)
_SETTLE_S = 20


# The local demo's short slices (as in the live tests): rows from half a minute in. Each
# slice update rewrites up to current_slices windows, so short slices are the costlier case.
PIPELINE = {"slice_s": 5, "current_slices": 4, "baseline_slices": 12}


def _settings(state_dir: Path, chains: int = 1, emulator: str | None = None):
    return load_local_settings(
        state_dir=str(state_dir),
        pubsub={"project": PROJECT, "emulator_host": emulator},
        pipeline=PIPELINE,
        model={"path": str(WORK / "model.joblib")},
        chains=[{"chain_id": chain_id} for chain_id in CHAIN_IDS[:chains]],
    )


def _train_model(settings) -> None:
    """A model for the synthetic market: trained on an hour of its windows."""
    if Path(settings.model.path).is_file():
        return
    recording = WORK / "history.jsonl"
    with recording.open("wb") as out:
        for _, batch in history(POOLS, 1_800_000_000, 3600, 2):
            out.write(b"".join(event.to_json() + b"\n" for event in batch))
    rows = compute_features(settings, recording, WORK / "features")
    train_detector(rows).save(Path(settings.model.path))
    print(f"model trained on {len(rows)} windows")


def _start_pipeline(config: Path, stock: bool) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    command = [sys.executable, "-m", "dexwatch", "--config", str(config), "pipeline", "run"]
    if stock:
        command = [sys.executable, __file__, "--serve-stock", str(config)]
    log = (config.parent / f"pipeline-{'stock' if stock else 'journaled'}.log").open("w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _written_until(settings) -> float | None:
    """The newest event time the pipeline has written rows for (unix s), of the chain it
    is furthest behind on: rows reach the end of the newest slice it has seen."""
    newest = newest_window_end(settings, len(settings.chains))
    return None if newest is None else newest - settings.pipeline.slice_s


class _LoadPublisher:
    """Publishes as cheaply as the client allows (batches of 1,000, no ordering keys): the
    load generator shares the machine's two cores with the pipeline and the emulator."""

    def __init__(self, project: str) -> None:
        from google.cloud import pubsub_v1

        self._client = pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_messages=1000, max_latency=0.05)
        )
        self._topic = self._client.topic_path(project, POOL_EVENTS)

    def publish(self, events) -> None:
        futures = [self._client.publish(self._topic, e.to_json(), **e.attributes()) for e in events]
        for future in futures:
            future.result(timeout=60)


def _run_at(settings, sink: _LoadPublisher, rate: int, seconds: float) -> dict:
    """Publish the market live at ``rate`` events/s; sample the lag every 5 s."""
    chains = [chain.chain_id for chain in settings.chains]
    markets = [
        SyntheticMarket(POOLS // len(chains), seed=rate + n, chain_id=chain_id)
        for n, chain_id in enumerate(chains)
    ]
    # A batch every ~0.1 s: a market step is a Sync and a Swap in every pool.
    per_step = max(1, round(rate * 0.1 / (2 * POOLS)))
    steps_per_s = rate / (2 * POOLS * per_step)
    sink.publish([a for market in markets for a in market.announcements(int(time.time()))])
    started = time.time()
    published = 0
    lags: list[tuple[float, float]] = []
    next_sample = started + 5
    step = 0
    while time.time() - started < seconds:
        due = started + step / steps_per_s
        if time.time() < due:
            time.sleep(due - time.time())
        batch = []
        for _ in range(per_step):
            for market in markets:
                batch += market.step(int(time.time()))
        step += 1
        sink.publish(batch)
        published += len(batch)
        if time.time() >= next_sample:
            next_sample += 5
            written = _written_until(settings)
            if written is not None:
                lags.append((time.time() - started, time.time() - written))
                print(
                    f"  {rate} ev/s: t={lags[-1][0]:5.0f} s  lag {lags[-1][1]:6.1f} s", flush=True
                )
    elapsed = time.time() - started
    return {"published_per_s": published / elapsed, "lags": lags}


def _sustained(result: dict, rate: int, flat_s: float) -> bool:
    lags = result["lags"]
    after_warmup = [lag for t, lag in lags if t >= 60]
    if len(after_warmup) < 2 or result["published_per_s"] < 0.97 * rate:
        return False
    return after_warmup[-1] - after_warmup[0] <= flat_s


def _serve_stock(config: Path) -> None:
    """Beam's stock local Pub/Sub read with the same pipeline (the comparison)."""
    from beam_pipelines.options import local_streaming_options
    from beam_pipelines.pipeline import build_streaming_pipeline

    settings = load_local_settings(config_file=config)
    use_pubsub_emulator(settings.pubsub.emulator_host)
    build_streaming_pipeline(settings, local_streaming_options()).run().wait_until_finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="2000,3000,4000", help="events/s, tried in turn")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--flat-s", type=float, default=10.0)
    parser.add_argument("--stock-rate", type=int, default=300)
    parser.add_argument("--chains", type=int, choices=(1, 2), default=1)
    parser.add_argument("--serve-stock", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stock:
        _serve_stock(args.serve_stock)
        return

    WORK.mkdir(parents=True, exist_ok=True)
    rates = [int(r) for r in args.rates.split(",")]
    _train_model(_settings(WORK / "train"))
    if args.chains == 2:
        _two_chains(rates, args)
        return
    figures: dict[str, dict] = {}
    sustained = _sustained_rate(rates, args.minutes, args.flat_s, "journaled", 1)
    stock_result = _run_pipeline(args.stock_rate, 4.0, "stock", 1)
    figures["stock_read_events_per_s"] = {
        "value": round(_drained_rate(stock_result, args.stock_rate)),
        "unit": "events/s",
    }
    figures["live_sustained_events_per_s"] = {"value": sustained, "unit": "events/s"}
    stock = figures["stock_read_events_per_s"]["value"]
    if sustained and stock:  # a stock read that stalled has no ratio
        figures["live_speedup_vs_stock_read"] = {
            "value": round(sustained / stock, 1),
            "unit": "x",
        }
    for name, figure in figures.items():
        print(f"{name}: {figure['value']} {figure['unit']}")
    path = write_results(
        "live",
        figures,
        note=f"streaming DirectRunner, Pub/Sub emulator, {POOLS} synthetic pools",
        summary="pipeline",
    )
    print(f"wrote {path.relative_to(ROOT)}")


def _two_chains(rates: list[int], args: argparse.Namespace) -> None:
    """The sustained rate with the market on one chain and split over two, same run."""
    one = _sustained_rate(rates, args.minutes, args.flat_s, "journaled", 1)
    both = _sustained_rate(rates, args.minutes, args.flat_s, "journaled", 2)
    figures = {
        "live_sustained_events_per_s": {"value": both, "unit": "events/s (two chains)"},
        "live_sustained_events_per_s_one_chain": {"value": one, "unit": "events/s"},
    }
    for name, figure in figures.items():
        print(f"{name}: {figure['value']} {figure['unit']}")
    note = (
        f"bench/live.py --chains 2 --rates {args.rates} --minutes {args.minutes:g}: "
        f"streaming DirectRunner, a Pub/Sub emulator per run, {POOLS} synthetic pools on chain 1, "
        f"then {POOLS // 2} on each of chains 1 and 137 at half the rate each, the lag the "
        "larger of the two chains'"
    )
    path = add_figures("multi_chain", figures, note)
    print(f"added to {path.relative_to(ROOT)}")


def _sustained_rate(rates: list[int], minutes: float, flat_s: float, read: str, chains: int) -> int:
    """The highest of ``rates`` (tried in turn, up to the first that is not) sustained."""
    sustained = 0
    for rate in rates:
        result = _run_pipeline(rate, minutes, read, chains)
        if not _sustained(result, rate, flat_s):
            break
        sustained = rate
    return sustained


def _run_pipeline(rate: int, minutes: float, read: str, chains: int) -> dict:
    """A fresh pipeline (``read``: journaled or stock) fed live at ``rate`` for ``minutes``,
    with an emulator of its own: the emulator keeps a backlog in its Java heap, and a run
    after an overrun one would start on a slower emulator."""
    project_state = WORK / f"{read}-{rate}-{chains}-chains"
    shutil.rmtree(project_state, ignore_errors=True)
    project_state.mkdir(parents=True)
    with own_emulator(project_state / "emulator") as emulator:
        settings = _settings(project_state / "state", chains, emulator)
        stack.ensure_pubsub_resources(PROJECT, only={PIPELINE_SUBSCRIPTION})
        config = project_state / "dexwatch.yaml"
        config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
        pipeline = _start_pipeline(config, stock=read == "stock")
        try:
            time.sleep(8)  # the pipeline's start-up
            result = _run_at(settings, _LoadPublisher(PROJECT), rate, minutes * 60)
        finally:
            pipeline.send_signal(signal.SIGKILL)
            pipeline.wait()
    # The next run starts on a settled machine: a run right after an overrun one (its
    # journal and emulator writes still being flushed) once fell behind from its start.
    os.sync()
    time.sleep(_SETTLE_S)
    first, last = (result["lags"][i][1] if result["lags"] else None for i in (0, -1))
    print(
        f"{read} read, {chains} chain(s), at {rate} ev/s: published "
        f"{result['published_per_s']:.0f}/s, lag {first} → {last} s"
    )
    return result


def _drained_rate(result: dict, rate: int) -> float:
    """Events/s the pipeline got through: the offered rate times how fast its written event
    time advanced against the wall clock (1 when it keeps up)."""
    lags = result["lags"]
    if len(lags) < 2:
        return 0.0
    (t0, lag0), (t1, lag1) = lags[0], lags[-1]
    advance = (t1 - t0) - (lag1 - lag0)  # event time written during t1 - t0
    return rate * max(advance, 0.0) / (t1 - t0)


if __name__ == "__main__":
    main()
