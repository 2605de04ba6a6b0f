"""Batch scoring speed, side by side: scikit-learn (stock and tree by tree), ONNX Runtime and
isotree.

The forest is the chain-window detector's Isolation Forest (the replay benchmark's model,
trained on simulated normal traffic), the rows its real feature rows (the replay's
windows). Each backend scores batches of 1, 64 and 4096 rows, repeated for about
``--seconds`` per cell; rows/s is rows scored over wall time. Agreement with scikit-learn:
the largest absolute difference of score_samples over all rows.

- scikit-learn: ``IsolationForest.score_samples``, stock: it dispatches every tree through
  joblib, even one after another.
- scikit-learn trees (``sklearn_trees``): the same trees applied one after another without
  joblib, what the Detector runs (dexwatch/core/detector.py).
- ONNX Runtime: the same forest converted with skl2onnx (its scores are the decision
  function, score_samples minus ``offset_``, in float32).
- isotree: its own Isolation Forest, fitted on the same training rows with the same size
  (trees, sample size): a different forest, so its scores cannot agree; it shows what
  another implementation costs, and its rank correlation with scikit-learn is reported.

Writes bench/results/scoring.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _results import write_results

from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import FEATURE_NAMES

ROOT = Path(__file__).resolve().parent.parent
REPLAY = ROOT / "bench" / "work" / "pipeline"
BATCHES = (1, 64, 4096)
# Scores agree when no row differs by more than this (float32 in ONNX Runtime).
AGREEMENT = 1e-4


def _rows() -> np.ndarray:
    from dexwatch.core.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(REPLAY / "batched" / "warehouse.duckdb")
    columns = ", ".join(FEATURE_NAMES)
    rows = warehouse.query(f"select {columns} from pool_scores where source = 'chain'").rows
    return np.asarray(rows, dtype=np.float64)


def _rate(score, rows: np.ndarray, batch: int, seconds: float) -> float:
    """Rows per second scoring consecutive batches of ``batch`` rows for about ``seconds``."""
    score(rows[:batch])  # warm-up: first-call costs are not throughput
    done, started, offset = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        if offset + batch > len(rows):
            offset = 0
        score(rows[offset : offset + batch])
        done += batch
        offset += batch
    return done / (time.perf_counter() - started)


def _onnx(forest, n_features: int):
    import onnxruntime
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = to_onnx(
        forest,
        initial_types=[("x", FloatTensorType([None, n_features]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one core each, like the other two
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    output = next(o.name for o in session.get_outputs() if o.name.lower().startswith("score"))

    def score(x: np.ndarray) -> np.ndarray:
        decision = session.run([output], {"x": x.astype(np.float32)})[0].ravel()
        return decision + forest.offset_

    return score


def _isotree(forest, training: np.ndarray):
    from isotree import IsolationForest

    model = IsolationForest(
        ntrees=forest.n_estimators, sample_size=int(forest.max_samples_), nthreads=1,
        random_seed=1, ndim=1,
    )  # fmt: skip
    model.fit(training)

    def score(x: np.ndarray) -> np.ndarray:
        # isotree's standardized outlier score is higher for outliers; negate to compare.
        return -model.predict(x)

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    detector = Detector.load(REPLAY / "state" / "models" / "chain-window" / "current.joblib")
    forest = detector.forest
    forest.set_params(n_jobs=1)
    rows = _rows()
    print(f"{len(rows)} feature rows, forest of {forest.n_estimators} trees", flush=True)
    reference = forest.score_samples(rows)
    backends = {
        "sklearn": forest.score_samples,
        "sklearn_trees": detector._depths.score_samples,
        "onnx": _onnx(forest, rows.shape[1]),
        "isotree": _isotree(forest, rows[: len(rows) // 2]),
    }
    figures: dict[str, dict] = {}
    agrees: dict[str, bool] = {}
    for name, score in backends.items():
        scores = score(rows)
        difference = float(np.max(np.abs(scores - reference)))
        agrees[name] = difference <= AGREEMENT
        ranks = np.corrcoef(np.argsort(np.argsort(scores)), np.argsort(np.argsort(reference)))
        figures[f"{name}_max_abs_difference"] = {"value": round(difference, 7), "unit": "score"}
        figures[f"{name}_rank_correlation"] = {"value": round(float(ranks[0, 1]), 4), "unit": ""}
        for batch in BATCHES:
            rate = _rate(score, rows, batch, args.seconds)
            figures[f"{name}_rows_per_s_{batch}"] = {"value": round(rate), "unit": "rows/s"}
            print(f"{name:13} batch {batch:5}: {rate:12,.0f} rows/s", flush=True)
        print(f"{name:13} max |score - sklearn| = {difference:.2e}", flush=True)
    in_use = max(
        (name for name in backends if agrees[name]),
        key=lambda name: figures[f"{name}_rows_per_s_4096"]["value"],
    )
    figures["rows_per_s_4096"] = dict(figures[f"{in_use}_rows_per_s_4096"])
    print(f"fastest that agrees: {in_use}", flush=True)
    path = write_results(
        "scoring",
        figures,
        note=f"one core per backend; backend in use: {in_use} (fastest whose scores agree "
        f"within {AGREEMENT:g}); isotree is a different forest",
    )
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
