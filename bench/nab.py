"""dexwatch's detector on the Numenta Anomaly Benchmark, beside three baselines in the same run.

Runs, on every NAB series in time order (no look-ahead): dexwatch's detector family
(``model.nab.detectors.dexwatch_scores``), scikit-learn's Isolation Forest on plain sliding
windows, and Beam's own online ZScore and IQR detectors in a Beam pipeline. Each is scored
with ``model.nab.scoring`` (one corpus-wide threshold per detector and profile), printed
beside NAB's published scoreboard, and written to bench/results/nab.json: ``standard``,
``reward_low_fp_rate``, ``reward_low_fn_rate`` for dexwatch, the same prefixed
``sklearn_iforest_``, ``beam_zscore_`` and ``beam_iqr_`` for the baselines.

    python bench/nab.py [--data ../shared/data/nab] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _results import write_results  # noqa: E402

from beam_pipelines.nab_baselines import beam_detector_scores  # noqa: E402
from model.nab.corpus import Series, load_corpus, load_profiles  # noqa: E402
from model.nab.detectors import dexwatch_scores, sliding_window_forest_scores  # noqa: E402
from model.nab.scoring import sweep  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nab"

# Figure suffix per NAB profile name.
PROFILE_FIGURES = {
    "standard": "standard",
    "reward_low_FP_rate": "reward_low_fp_rate",
    "reward_low_FN_rate": "reward_low_fn_rate",
}
# Detector name → figure prefix ("" for dexwatch's own).
DETECTORS = {
    "dexwatch": "",
    "sklearn_iforest": "sklearn_iforest_",
    "beam_zscore": "beam_zscore_",
    "beam_iqr": "beam_iqr_",
}
_PROCESS_DETECTORS = {
    "dexwatch": dexwatch_scores,
    "sklearn_iforest": sliding_window_forest_scores,
}
# NAB's published scoreboard (standard, reward low FP, reward low FN), from its README.
PUBLISHED = {
    "ARTime": (74.9, 65.1, 80.4),
    "Numenta HTM": (70.5, 62.6, 75.2),
    "CAD OSE": (69.9, 67.0, 73.2),
    "earthgecko Skyline": (58.2, 46.2, 63.9),
    "KNN CAD": (58.0, 43.4, 64.8),
    "Relative Entropy": (54.6, 47.6, 58.8),
    "Random Cut Forest": (51.7, 38.4, 59.7),
    "Twitter ADVec": (47.1, 33.6, 53.5),
    "Windowed Gaussian": (39.6, 20.9, 47.4),
    "Etsy Skyline": (35.7, 27.1, 44.5),
    "Bayesian Changepoint": (17.7, 3.2, 32.2),
    "EXPoSE": (16.4, 3.2, 26.9),
    "Random": (11.0, 1.2, 19.5),
}


def _score_one(detector: str, series: Series) -> tuple[str, str, np.ndarray]:
    scores = _PROCESS_DETECTORS[detector](series.values, series.labels.probation)
    return detector, series.name, scores


def process_detector_scores(corpus: list[Series], workers: int) -> dict[str, dict[str, np.ndarray]]:
    """dexwatch's and scikit-learn's detectors, one task per series, largest first."""
    tasks = [
        (detector, series)
        for series in sorted(corpus, key=lambda s: -s.labels.n_rows)
        for detector in _PROCESS_DETECTORS
    ]
    results: dict[str, dict[str, np.ndarray]] = {name: {} for name in _PROCESS_DETECTORS}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_score_one, detector, series) for detector, series in tasks]
        for done, future in enumerate(as_completed(futures), start=1):
            detector, name, scores = future.result()
            results[detector][name] = scores
            print(f"  [{done}/{len(tasks)}] {detector}: {name}", flush=True)
    return results


def evaluate(data: Path, workers: int) -> tuple[dict[str, dict[str, float]], float]:
    """Normalised NAB scores {detector: {profile: score}} and the run's seconds."""
    started = time.perf_counter()
    corpus = load_corpus(data)
    profiles = load_profiles(data)
    rows = sum(series.labels.n_rows for series in corpus)
    print(f"NAB: {len(corpus)} series, {rows} rows", flush=True)
    scores = process_detector_scores(corpus, workers)
    for name in ("beam_zscore", "beam_iqr"):
        print(f"  {name}: Beam pipeline over every series ...", flush=True)
        scores[name] = beam_detector_scores({s.name: s.values for s in corpus}, name)
    labels = [series.labels for series in corpus]
    results: dict[str, dict[str, float]] = {}
    for detector in DETECTORS:
        results[detector] = {}
        for profile in profiles.values():
            best = sweep(labels, [scores[detector][s.name] for s in corpus], profile)
            results[detector][profile.name] = best.normalised
            print(
                f"  {detector} {profile.name}: {best.normalised:.1f} "
                f"(threshold {best.threshold:.6g})",
                flush=True,
            )
    return results, time.perf_counter() - started


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        f"{'detector':<32} {'standard':>9} {'low FP':>8} {'low FN':>8}",
        *(
            f"{name + ' (this run)':<32} "
            + " ".join(
                f"{value:>{width}.1f}"
                for value, width in zip(by_profile.values(), (9, 8, 8), strict=True)
            )
            for name, by_profile in results.items()
        ),
        *(
            f"{name + ' (published)':<32} {s:>9.1f} {fp:>8.1f} {fn:>8.1f}"
            for name, (s, fp, fn) in PUBLISHED.items()
        ),
    ]
    return "\n".join(lines)


def figures(results: dict[str, dict[str, float]]) -> dict[str, dict]:
    return {
        DETECTORS[detector] + PROFILE_FIGURES[profile]: {
            "value": round(value, 2),
            "unit": "NAB score",
        }
        for detector, by_profile in results.items()
        for profile, value in by_profile.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the NAB corpus")
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes"
    )
    args = parser.parse_args(argv)
    if not (args.data / "labels" / "combined_windows.json").is_file():
        parser.error(f"no NAB corpus at {args.data} (expected labels/combined_windows.json)")
    results, seconds = evaluate(args.data, args.workers)
    print()
    print(table(results))
    path = write_results(
        "nab",
        figures(results),
        note=f"NAB full corpus, {args.workers} worker processes, run took {seconds:.0f} s",
    )
    print(f"\n{seconds:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
