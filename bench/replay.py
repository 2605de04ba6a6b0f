"""Pipeline replay throughput, side by side: batch scoring against one row per call.

Records a stream of at least ``--events`` pool events from the simulated market (once; kept
in bench/work/), bootstraps a model, then replays the recording through the batch pipeline
twice into fresh warehouses: with RunInference batching rows (what dexwatch runs) and with
batches of one row. Writes bench/results/replay.json and, with the other pipeline figures,
bench/results/pipeline.json: ``replay_events_per_s`` (events/s from the recording to the
warehouse) and ``replay_speedup_vs_per_row_scoring``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from _results import write_results

from beam_pipelines.options import batch_options
from beam_pipelines.pipeline import build_replay_pipeline
from beam_pipelines.transforms.scoring import DetectorModelHandler
from dexwatch.app.workflows.bootstrap import bootstrap_model, record_history
from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import FEATURES_VERSION
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import open_warehouse
from infra.local.settings import load_local_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "pipeline"
# Events per simulated hour of the default market, to size the recording.
_EVENTS_PER_HOUR = 9_000


def _settings(state_dir: Path) -> Settings:
    # 12-second blocks, as on mainnet: a day of history mines in minutes, not hours.
    return load_local_settings(
        state_dir=str(state_dir),
        local={"node_modules": str(ROOT / "node_modules")},
        simulator={"block_interval_s": 12},
    )


def _recording(settings: Settings, events: int) -> Path:
    path = WORK / f"recording-{events}.jsonl"
    if path.is_file():
        return path
    hours = events / _EVENTS_PER_HOUR * 1.05
    print(f"recording about {events} events ({hours:.1f} simulated hours) ...", flush=True)
    scratch = WORK / "record"
    shutil.rmtree(scratch, ignore_errors=True)
    recorded, _ = record_history(settings, hours, scratch, _progress)
    recorded.replace(path)
    shutil.rmtree(scratch, ignore_errors=True)
    return path


def _progress(stage: str, done: int, total: int) -> None:
    if done == total or done % 1000 == 0:
        print(f"  {stage}: {done}/{total}", flush=True)


def _replay(settings: Settings, events: Path, max_batch_size: int, name: str) -> tuple[float, int]:
    state = WORK / name
    shutil.rmtree(state, ignore_errors=True)
    replay_settings = _settings(state).model_copy(update={"model": settings.model})
    handler = DetectorModelHandler(settings.model_path, max_batch_size)
    started = time.perf_counter()
    build_replay_pipeline(
        replay_settings, batch_options(), events, handler
    ).run().wait_until_finish()
    seconds = time.perf_counter() - started
    (rows,) = open_warehouse(replay_settings).query("select count(*) from pool_scores").rows[0]
    return seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    settings = _settings(WORK / "state")
    events = _recording(settings, args.events)
    count = sum(1 for _ in events.open("rb"))
    model = settings.model_path
    if not model.is_file() or Detector.load(model).features_version != FEATURES_VERSION:
        bootstrap_model(settings, hours=2.0, progress=_progress)
    batched_s, rows = _replay(settings, events, settings.model.max_batch_size, "batched")
    print(f"batched scoring: {count} events, {rows} windows in {batched_s:.1f} s", flush=True)
    per_row_s, per_row_rows = _replay(settings, events, 1, "per-row")
    print(f"one row per call: {per_row_rows} windows in {per_row_s:.1f} s", flush=True)
    assert rows == per_row_rows, "both runs must score the same windows"
    figures = {
        "replay_events_per_s": {"value": round(count / batched_s), "unit": "events/s"},
        "replay_speedup_vs_per_row_scoring": {
            "value": round(per_row_s / batched_s, 1),
            "unit": "x",
        },
        "replay_events": {"value": count, "unit": "events"},
        "replay_windows": {"value": rows, "unit": "windows"},
    }
    path = write_results("replay", figures, note="FnApiRunner, one process", summary="pipeline")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
