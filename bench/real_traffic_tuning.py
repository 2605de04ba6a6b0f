"""Choosing the real-traffic settings on the tuning day alone (``real_traffic.TUNING_DAY``).

The day is cut into ``--folds`` time folds (4: six hours each). For each candidate setting,
a model is trained on each fold's windows alone and scores the rest of the day: once as
recorded (every alert is false) and once with incidents spliced into it (seed
``TUNING_SPLICE_SEED``, not the held-out days' seeds). A model that saw a quarter of a day
and scores the other three is what a day it never saw asks of it, harsher than
halves. The held-out days of ``bench/real_traffic.py`` are never read here.

Each candidate's figures go to ``bench/results/real_traffic_tuning.json``:
``<candidate>.false_alerts_per_pool_day`` and ``<candidate>.spliced_recall`` (and the drains'
recall). The settings chosen are ``min_share_of_floor`` and ``threshold_margin``
(model.training.TrainingParams): the pair whose worst candidate (over the limit factors
beside it, chosen on the simulator and tried here for robustness) has the fewest false
alerts while keeping every drain and at least 95 % of all incidents, the smallest on a tie;
they are written as ``chosen_min_share_of_floor`` and ``chosen_threshold_margin``.

    python bench/real_traffic_tuning.py [--model PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import shutil
import time
from pathlib import Path

import numpy as np
from _results import write_results
from real_traffic import (
    FILE,
    REAL_LOGS,
    TUNING_DAY,
    WORK,
    bootstrap,
    detection,
    feature_rows,
    incident_plan,
    record,
    replay_day,
)

from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.settings import Settings
from infra.local.recorded_chain import open_recording
from infra.local.splice import splice
from model.chain_window import train_detector
from model.training import DEFAULT_PARAMS

TUNING_SPLICE_SEED = 40
SHARES_OF_FLOOR = (0.0, 0.1, 0.2, 0.3)
LIMIT_FACTORS = (2.0, 2.5, 3.0)
MARGINS = (0.1, 0.2, 0.3)
MIN_RECALL = 0.95


def subset(windows: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {key: values[mask] for key, values in windows.items()}


def flags(detector: Detector, windows: dict[str, np.ndarray]) -> np.ndarray:
    x = np.column_stack([windows[name] for name in FEATURE_NAMES])
    return detector.anomaly_score(x) < 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="any model, to replay with (default: bootstrap)")
    parser.add_argument("--folds", type=int, default=4, help="time folds; each trains a model")
    args = parser.parse_args()
    started = time.monotonic()
    work = WORK / "tuning"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model = args.model or bootstrap(work)
    settings = Settings()
    recording = open_recording(REAL_LOGS / FILE.format(day=TUNING_DAY))
    clean = replay_day(record(recording, work / "recording"), work / "clean", model)
    spliced_recording, incidents = splice(recording, incident_plan(recording), TUNING_SPLICE_SEED)
    spliced = replay_day(
        record(spliced_recording, work / "spliced-recording"), work / "spliced", model
    )
    # Folds of equal window counts, in time order; a model trains on one and scores the rest.
    edges = np.quantile(clean["end"], np.linspace(0, 1, args.folds + 1))
    edges[-1] += 1

    def fold(windows: dict[str, np.ndarray], index: int) -> np.ndarray:
        return (windows["end"] >= edges[index]) & (windows["end"] < edges[index + 1])

    figures: dict[str, dict] = {}
    # Per (share of the floor, margin): its worst candidate's false alerts a day.
    worst: dict[tuple[float, float], float] = {}
    for share, factor, margin in itertools.product(SHARES_OF_FLOOR, LIMIT_FACTORS, MARGINS):
        params = dataclasses.replace(
            DEFAULT_PARAMS,
            min_share_of_floor=share,
            feature_limit_factor=factor,
            threshold_margin=margin,
        )
        false_threads, outcomes = 0, []
        for index in range(args.folds):
            detector = train_detector(feature_rows(subset(clean, fold(clean, index))), params)
            scored = subset(clean, ~fold(clean, index))
            false_threads += detection(scored, flags(detector, scored), settings).false_threads
            scored = subset(spliced, ~fold(spliced, index))
            held_out = [
                incident
                for incident in incidents
                if not edges[index] <= incident.first_timestamp < edges[index + 1]
            ]
            found = detection(
                scored, flags(detector, scored), settings, held_out, recording.pool.address
            )
            outcomes += found.outcomes
        recall = sum(o.detected for o in outcomes) / len(outcomes)
        drains = [o for o in outcomes if o.kind == "liquidity-drain"]
        drain_recall = sum(o.detected for o in drains) / len(drains)
        name = f"floor_share_{share:g}_limit_{factor:g}_margin_{margin:g}"
        per_day = false_threads / (args.folds - 1)  # each fold scores (folds - 1) / folds day
        print(f"  {name}: {per_day:.2f} false threads a day, recall {recall:.3f}", flush=True)
        figures[f"{name}.false_alerts_per_pool_day"] = {
            "value": round(per_day, 3),
            "unit": "alert threads per pool-day",
        }
        figures[f"{name}.spliced_recall"] = {
            "value": round(recall, 4),
            "unit": f"share of {len(outcomes)} incidents",
        }
        figures[f"{name}.spliced_drain_recall"] = {
            "value": round(drain_recall, 4),
            "unit": f"share of {len(drains)} drains",
        }
        ok = drain_recall == 1.0 and recall >= MIN_RECALL
        worst[share, margin] = max(worst.get((share, margin), 0), per_day if ok else float("inf"))
    chosen_share, chosen_margin = min(worst, key=lambda pair: (worst[pair], pair))
    print(f"chosen: min_share_of_floor {chosen_share:g}, threshold_margin {chosen_margin:g}")
    figures["chosen_min_share_of_floor"] = {
        "value": chosen_share,
        "unit": "share of the way to a floor",
    }
    figures["chosen_threshold_margin"] = {"value": chosen_margin, "unit": "score units"}
    path = write_results(
        "real_traffic_tuning",
        figures,
        note=f"tuning day {TUNING_DAY} only, {args.folds} time folds, a model trained on each "
        f"and scored on the others; incidents spliced at seed {TUNING_SPLICE_SEED}; "
        f"{time.monotonic() - started:.0f} s",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
