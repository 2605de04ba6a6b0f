"""The detector before a change, scoring the same recordings beside it: runs
``bench/_before_detector.py`` in a checkout of that commit (its own code first on the path)
and reads back each replay's windows and alert threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson

from dexwatch.core.features.chain import FEATURE_NAMES
from model.evaluation import AlertThread

ROOT = Path(__file__).resolve().parent.parent

Replayed = tuple[dict[str, np.ndarray], list[AlertThread]]


def score_before(
    checkout: Path, work: Path, recordings: dict[str, Path], tuning: Path | None = None
) -> dict[str, dict[str, Replayed]]:
    """Per detector ('default': the checkout's own bootstrap; 'real', with ``tuning``: its
    model trained on that recording), per recording name: its windows as columns (pool,
    start, end, is_anomaly, the features it shares with this checkout) and its threads."""
    command = [sys.executable, str(ROOT / "bench" / "_before_detector.py"), "--work", str(work),
               "--node-modules", str(ROOT / "node_modules")]  # fmt: skip
    if tuning is not None:
        command += ["--tuning", str(tuning)]
    command += [f"{name}={path}" for name, path in recordings.items()]
    subprocess.run(
        command, cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)}, check=True
    )
    scored: dict[str, dict[str, Replayed]] = {}
    for name in recordings:
        for detector, result in orjson.loads((work / f"{name}.json").read_bytes()).items():
            rows = result["windows"]
            # New features are appended to FEATURE_NAMES: a checkout from before one has the
            # first of them only.
            width = len(rows[0]) if rows else 4 + len(FEATURE_NAMES)
            keys = ["pool", "start", "end", "is_anomaly", *FEATURE_NAMES][:width]
            windows = {
                key: np.array([row[i] for row in rows], dtype=object if key == "pool" else float)
                for i, key in enumerate(keys)
            }
            if "kinds" in result:
                windows["score"] = np.array([k[0] for k in result["kinds"]], dtype=float)
                windows["kind"] = np.array([k[1] for k in result["kinds"]], dtype=object)
            threads = [AlertThread(*thread) for thread in result["threads"]]
            scored.setdefault(detector, {})[name] = (windows, threads)
    return scored
