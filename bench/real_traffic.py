"""Real traffic: dexwatch on recorded days of a real pool, served as a chain to the real
publisher, replayed through the real pipeline.

The days are every log of the USDC/WETH 0.05 % Uniswap V3 pool on Polygon on three days
(``../shared/data/real-logs/``, 2 s blocks). Settings may be chosen on ``TUNING_DAY`` only;
the figures are reported on the two others (``HELD_OUT_DAYS``: a quiet day and a busy one),
which no choice looks at. Nothing in these days is a known incident: every alert is false.

Each day: the recorded-chain node (``infra.local.recorded_chain``) serves the logs over
JSON-RPC, the chain publisher records them, ``pipeline replay`` scores them. Detectors, side
by side on the same windows:

- ``default``: the model a new user has, bootstrapped by ``dexwatch run`` from the
  simulator (or ``--model``);
- ``real``: a model trained (``model.chain_window.train_detector``, the fitting ``dexwatch
  train`` does) on the tuning day's windows, as a user who trained on real traffic other
  than the day scored;
- ``rule``: the fixed-threshold rules of ``model.rules``.

Figures (held-out days): ``false_alerts_per_pool_day`` (the alert threads the pipeline
opened, per pool-day, with the ``real`` model; ``default_...`` and ``rule_...`` beside
it); ``scored_event_share`` (share of the pool's events inside a scored window); the same
on the tuning day with a ``tuning_`` prefix, for reference. The recordings carry no
transaction senders or pool balances: features that would need them run without.

    python bench/real_traffic.py [--model PATH]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _results import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from beam_pipelines.options import batch_options  # noqa: E402
from beam_pipelines.pipeline import build_replay_pipeline  # noqa: E402
from dexwatch.app.workflows.bootstrap import bootstrap_model  # noqa: E402
from dexwatch.core.features.chain import FEATURE_NAMES  # noqa: E402
from dexwatch.core.settings import Settings  # noqa: E402
from dexwatch.core.warehouse import open_warehouse  # noqa: E402
from infra.local import processes  # noqa: E402
from infra.local.recorded_chain import RecordedChainNode, Recording, open_recording  # noqa: E402
from infra.local.settings import load_local_settings  # noqa: E402
from infra.local.splice import KINDS, SplicedIncident, splice  # noqa: E402
from model.chain_window import train_detector  # noqa: E402
from model.evaluation import (  # noqa: E402
    AlertThread,
    IncidentDetection,
    LabelledIncident,
    incident_detection,
)
from model.rules import rule_flags  # noqa: E402
from publishers.chain import run as publish_chain  # noqa: E402

REAL_LOGS = ROOT.parent / "shared" / "data" / "real-logs"
FILE = "polygon-uniswap-v3-usdc-weth-500-{day}.csv"
TUNING_DAY = "2022-01-05"
HELD_OUT_DAYS = ("2021-12-22", "2023-11-25")
WORK = ROOT / "bench" / "work" / "real-traffic"
BOOTSTRAP_SEED = 21
DAYS = (TUNING_DAY, *HELD_OUT_DAYS)
SPLICE_SEEDS = {"2021-12-22": 41, "2023-11-25": 42}
# Figure-name prefixes: the detector a user would have is reported unprefixed.
LABELS = {"real": "", "default": "default_", "rule": "rule_"}
INCIDENT_EVERY_S = 3600


def record(recording: Recording, work: Path) -> Path:
    """Serve a recorded day to the real chain publisher; its recording of pool events."""
    with RecordedChainNode(recording) as node:
        settings = node.following(Settings(state_dir=work / "publisher"), batch_blocks=2000)
        stats = publish_chain(settings, once=True, record_to=work)
    print(f"  {work.parent.name}: {stats.events} events published from {len(recording.logs)} logs")
    return work / "pool-events.jsonl"


def incident_plan(recording: Recording) -> list[tuple[int, str]]:
    """Where the incidents go: one every INCIDENT_EVERY_S of the day, kinds in turn, each
    at the first block after its time that has a swap before it."""
    first = recording.timestamp(recording.first_block)
    day = recording.timestamp(recording.last_block) - first
    plan = []
    for index in range(int(day // INCIDENT_EVERY_S)):
        at = first + INCIDENT_EVERY_S * (index + 0.5)
        plan.append((recording.block_at(at), KINDS[index % len(KINDS)]))
    return plan


def replay_day(events: Path, work: Path, model: Path) -> dict[str, np.ndarray]:
    """Score a recorded day with ``model``; its chain windows as columns."""
    shutil.rmtree(work, ignore_errors=True)
    settings = Settings(state_dir=work).with_sections(model={"path": model})
    build_replay_pipeline(settings, batch_options(flags=[]), events).run().wait_until_finish()
    names = ", ".join(FEATURE_NAMES)
    rows = (
        open_warehouse(settings)
        .query(
            f"select pool, epoch(window_start), epoch(window_end), is_anomaly, {names} "
            "from pool_scores where source = 'chain' order by window_end"
        )
        .rows
    )
    keys = ["pool", "start", "end", "is_anomaly", *FEATURE_NAMES]
    return {
        key: np.array(values, dtype=object if key == "pool" else float)
        for key, values in zip(keys, zip(*rows, strict=True), strict=True)
    }


def opened_threads(work: Path) -> list[AlertThread]:
    """The alert threads the pipeline opened in a replay's warehouse."""
    return [
        AlertThread(pool, start, end)
        for pool, start, end in open_warehouse(Settings(state_dir=work))
        .query(
            "select pool, min(epoch(window_start)), max(epoch(window_end)) from anomalies "
            "where source = 'chain' group by pool, alert_id"
        )
        .rows
    ]


def scored_event_share(recording: Recording, windows: dict[str, np.ndarray]) -> float:
    """Share of the recording's logs whose block time falls inside a scored window."""
    starts, ends = windows["start"], windows["end"]
    order = np.argsort(starts)
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    stamps = np.array([recording.timestamp(int(log["blockNumber"], 16)) for log in recording.logs])
    # The last window starting at or before each event covers it if it ends after it.
    at = np.searchsorted(starts, stamps, side="right") - 1
    covered = (at >= 0) & (ends[np.maximum(at, 0)] > stamps)
    return float(covered.mean())


def detection(
    windows: dict[str, np.ndarray],
    flagged: np.ndarray,
    settings: Settings,
    incidents: Sequence[SplicedIncident] = (),
    pool: str = "",
    threads: list[AlertThread] | None = None,
) -> IncidentDetection:
    """The alerts (``threads`` the pipeline opened, or else the flags threaded as the
    pipeline threads them) against the spliced incidents."""
    labels = [
        LabelledIncident(
            incident.label_id,
            pool,
            incident.kind,
            datetime.fromtimestamp(incident.first_timestamp, UTC),
            datetime.fromtimestamp(incident.last_timestamp, UTC),
        )  # fmt: skip
        for incident in incidents
    ]
    pipeline = settings.pipeline
    return incident_detection(
        windows["pool"], windows["start"], windows["end"], flagged, labels,
        pipeline.current_slices * pipeline.slice_s, pipeline.alert_cooldown_s, threads,
    )  # fmt: skip


def flags(name: str, windows: dict[str, np.ndarray]) -> np.ndarray:
    return rule_flags(windows) if name == "rule" else windows["is_anomaly"] > 0


def bootstrap(work: Path) -> Path:
    """The first model ``dexwatch run`` trains when it has none (simulated traffic)."""
    model = work / "default.joblib"
    port = processes.free_port()
    settings = load_local_settings(
        state_dir=str(work / "bootstrap"),
        local={"anvil_port": port, "node_modules": str(ROOT / "node_modules")},
        chain={"rpc_urls": [f"http://127.0.0.1:{port}"]},
        simulator={"seed": BOOTSTRAP_SEED},
        model={"path": str(model)},
    )
    print(f"bootstrapping the default model ({settings.model.bootstrap_hours:g} h)", flush=True)
    bootstrap_model(settings, hours=settings.model.bootstrap_hours)
    return model


def train_on(windows: dict[str, np.ndarray], path: Path) -> Path:
    """A model trained on real windows, as ``dexwatch train`` trains it."""
    rows = [dict(zip(FEATURE_NAMES, values, strict=True))
            for values in zip(*(windows[name] for name in FEATURE_NAMES), strict=True)]  # fmt: skip
    train_detector(rows).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="the default model (default: bootstrap one)")
    args = parser.parse_args()
    started = time.monotonic()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    models = {"default": args.model or bootstrap(WORK)}
    settings = Settings()

    print("recording the days through the chain publisher", flush=True)
    recordings = {day: open_recording(REAL_LOGS / FILE.format(day=day)) for day in DAYS}
    events = {day: record(recordings[day], WORK / day / "recording") for day in DAYS}
    tuning_windows = replay_day(
        events[TUNING_DAY], WORK / TUNING_DAY / "default", models["default"]
    )
    models["real"] = train_on(tuning_windows, WORK / "real.joblib")
    detectors = (*models, "rule")

    figures: dict[str, dict] = {}
    for prefix, chosen in (("tuning_", (TUNING_DAY,)), ("", HELD_OUT_DAYS)):
        threads = dict.fromkeys(detectors, 0)
        shares = []
        for day in chosen:
            for name, model in models.items():
                windows = replay_day(events[day], WORK / day / name, model)
                names = ("real", "rule") if name == "real" else (name,)
                for detector in names:
                    opened = None if detector == "rule" else opened_threads(WORK / day / name)
                    found = detection(windows, flags(detector, windows), settings, threads=opened)
                    threads[detector] += found.false_threads
                if name == "real":
                    shares.append(scored_event_share(recordings[day], windows))
            print(f"  {day}: false alert threads so far {threads}", flush=True)
        for name in detectors:
            figures[f"{prefix}{LABELS[name]}false_alerts_per_pool_day"] = {
                "value": round(threads[name] / len(chosen), 3),
                "unit": "alert threads per pool-day",
            }
        figures[f"{prefix}scored_event_share"] = {
            "value": round(float(np.mean(shares)), 4),
            "unit": "share of events",
        }

    print("splicing incidents into the held-out days", flush=True)
    found: dict[str, list[IncidentDetection]] = {name: [] for name in detectors}
    for day in HELD_OUT_DAYS:
        recording = recordings[day]
        spliced, incidents = splice(recording, incident_plan(recording), SPLICE_SEEDS[day])
        spliced_events = record(spliced, WORK / f"{day}-spliced" / "recording")
        for name, model in models.items():
            work = WORK / f"{day}-spliced" / name
            windows = replay_day(spliced_events, work, model)
            for detector in ("real", "rule") if name == "real" else (name,):
                opened = None if detector == "rule" else opened_threads(work)
                result = detection(
                    windows, flags(detector, windows), settings, incidents,
                    recording.pool.address, opened,
                )  # fmt: skip
                found[detector].append(result)
        print(f"  {day}: {len(incidents)} incidents spliced", flush=True)
    block_s = recordings[HELD_OUT_DAYS[0]].pool.block_time_s
    for name in detectors:
        outcomes = [o for result in found[name] for o in result.outcomes]
        drains = [o for o in outcomes if o.kind == "liquidity-drain"]
        delays = [o.delay_s for o in outcomes if o.delay_s is not None]
        label = LABELS[name]
        figures[f"{label}spliced_recall"] = {
            "value": round(sum(o.detected for o in outcomes) / len(outcomes), 4),
            "unit": f"share of {len(outcomes)} incidents",
        }
        figures[f"{label}spliced_drain_recall"] = {
            "value": round(sum(o.detected for o in drains) / len(drains), 4),
            "unit": f"share of {len(drains)} drains of 50-90 % of the in-range liquidity",
        }
        figures[f"{label}median_delay_blocks"] = {
            "value": round(float(np.median(delays)) / block_s, 1) if delays else None,
            "unit": "blocks from the incident's first block to its first alert's window end",
        }
        for kind in KINDS:
            of_kind = [o for o in outcomes if o.kind == kind]
            figures[f"{label}spliced_recall_{kind.replace('-', '_')}"] = {
                "value": round(sum(o.detected for o in of_kind) / len(of_kind), 4),
                "unit": f"share of {len(of_kind)}",
            }
    path = write_results(
        "real_traffic",
        figures,
        note=f"settings chosen on {TUNING_DAY}; reported on {' and '.join(HELD_OUT_DAYS)}; "
        f"the 'real' model trained on {TUNING_DAY}; incidents spliced one an hour at seeds "
        f"{SPLICE_SEEDS}; no senders or balances in the recordings; "
        f"{time.monotonic() - started:.0f} s",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
