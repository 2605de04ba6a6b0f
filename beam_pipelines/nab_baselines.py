"""Beam's own online detectors (``apache_beam.ml.anomaly``: ZScore, IQR) on NAB's series,
run by a batch Beam pipeline, one element per series.

Beam's ``AnomalyDetection`` transform scores each row with ``score_one`` and then learns it
with ``learn_one`` (``_ScoreAndLearnDoFn``), keeping the detector in per-key state. The
transform does not promise to see a key's rows in time order (it reshuffles them), and it
pickles the detector's state at every row (about 1 ms a row here: 6 minutes a detector over
NAB's 365k rows). So each series is one element here and its rows go through the same
score-then-learn steps in time order, with Beam's detectors at their defaults (a sliding
window of 1,000 rows). ``tests/unit/test_nab.py`` checks that this gives the transform's scores.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.ml.anomaly.base import AnomalyDetector
from apache_beam.ml.anomaly.detectors import IQR, ZScore

from beam_pipelines.options import batch_options

BEAM_DETECTORS = {"beam_zscore": ZScore, "beam_iqr": IQR}


def online_scores(detector: AnomalyDetector, values: np.ndarray) -> np.ndarray:
    """Score each row with what the detector learned from the rows before, then learn it.

    Beam's scores are unbounded deviations (NaN until the detector is ready); NAB wants
    [0, 1]: s / (1 + s) keeps their order, and a missing score is 0."""
    scores = np.zeros(len(values))
    for row, value in enumerate(values):
        point = beam.Row(value=float(value))
        score = detector.score_one(point)
        detector.learn_one(point)
        if score is not None and not math.isnan(score):
            scores[row] = score / (1.0 + score)
    return scores


class _ScoreSeries(beam.DoFn):
    def __init__(self, detector_name: str):
        self._detector_name = detector_name

    def process(self, element: tuple[str, list[float]]) -> Iterator[bytes]:
        name, values = element
        detector = BEAM_DETECTORS[self._detector_name]()
        scores = online_scores(detector, np.asarray(values, dtype=np.float64))
        yield orjson.dumps({"name": name, "scores": scores.tolist()})


def beam_detector_scores(
    series: dict[str, np.ndarray], detector_name: str
) -> dict[str, np.ndarray]:
    """Scores in [0, 1] per row of each series, from a batch pipeline on the local runner."""
    with tempfile.TemporaryDirectory(prefix="nab-beam-") as scratch:
        prefix = str(Path(scratch) / "scores")
        with beam.Pipeline(options=batch_options()) as pipeline:
            _ = (
                pipeline
                | "Series" >> beam.Create([(name, v.tolist()) for name, v in series.items()])
                | f"Score with {detector_name}" >> beam.ParDo(_ScoreSeries(detector_name))
                | "Write" >> beam.io.WriteToText(prefix, coder=beam.coders.BytesCoder())
            )
        results = {}
        for path in Path(scratch).glob("scores*"):
            for line in path.read_bytes().splitlines():
                record = orjson.loads(line)
                results[record["name"]] = np.asarray(record["scores"], dtype=np.float64)
    missing = set(series) - set(results)
    if missing:
        raise RuntimeError(f"the pipeline returned no scores for {sorted(missing)}")
    return results
