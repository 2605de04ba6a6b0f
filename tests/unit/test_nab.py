"""NAB: the scorer on hand-made series with known answers, Beam's detectors as the
AnomalyDetection transform runs them, and dexwatch's detector streaming without look-ahead."""

from __future__ import annotations

import math
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.anomaly.detectors import ZScore
from apache_beam.ml.anomaly.transforms import AnomalyDetection

from beam_pipelines.nab_baselines import online_scores
from beam_pipelines.options import batch_options
from model.nab.corpus import load_corpus, load_profiles
from model.nab.detectors import StreamingConfig, dexwatch_scores, sliding_window_forest_scores
from model.nab.scoring import (
    Profile,
    SeriesLabels,
    probation_length,
    raw_score,
    scaled_sigmoid,
    sweep,
)

NAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"
STANDARD = Profile("standard", tp_weight=1.0, fn_weight=1.0, fp_weight=0.11)
LOW_FN = Profile("reward_low_FN_rate", tp_weight=1.0, fn_weight=2.0, fp_weight=0.11)

# 1,000 rows (probation 150), one window over rows 200..299.
ONE_WINDOW = SeriesLabels(n_rows=1000, windows=((200, 299),))


def detections_at(labels: SeriesLabels, *rows: int) -> np.ndarray:
    detected = np.zeros(labels.n_rows, dtype=bool)
    detected[list(rows)] = True
    return detected


def test_probation_is_15_percent_at_most_750_rows() -> None:
    assert probation_length(1000) == 150
    assert probation_length(4032) == 604
    assert probation_length(22695) == 750


def test_scaled_sigmoid() -> None:
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert float(scaled_sigmoid(3.5)) == -1.0


def test_detection_at_window_start_earns_full_tp_weight() -> None:
    assert raw_score(ONE_WINDOW, detections_at(ONE_WINDOW, 200), STANDARD) == pytest.approx(1.0)


def test_detection_at_window_end_earns_almost_nothing() -> None:
    earned = raw_score(ONE_WINDOW, detections_at(ONE_WINDOW, 299), STANDARD)
    assert 0.0 < earned < 0.03


def test_only_the_first_detection_in_a_window_counts() -> None:
    later = raw_score(ONE_WINDOW, detections_at(ONE_WINDOW, 250, 260, 299), STANDARD)
    first = raw_score(ONE_WINDOW, detections_at(ONE_WINDOW, 250), STANDARD)
    assert later == pytest.approx(first)
    assert 0.5 < first < 1.0


def test_missed_window_costs_fn_weight() -> None:
    nothing = np.zeros(ONE_WINDOW.n_rows, dtype=bool)
    assert raw_score(ONE_WINDOW, nothing, STANDARD) == -1.0
    assert raw_score(ONE_WINDOW, nothing, LOW_FN) == -2.0


def test_false_positive_right_after_a_window_costs_little_and_far_away_the_full_weight() -> None:
    base = -1.0  # the window is missed in both
    just_after = raw_score(ONE_WINDOW, detections_at(ONE_WINDOW, 300), STANDARD) - base
    far_after = raw_score(ONE_WINDOW, detections_at(ONE_WINDOW, 900), STANDARD) - base
    assert -0.11 * 0.05 < just_after < 0.0
    assert far_after == pytest.approx(-0.11)


def test_false_positive_before_any_window_costs_full_weight() -> None:
    cost = raw_score(ONE_WINDOW, detections_at(ONE_WINDOW, 180), STANDARD) + 1.0
    assert cost == pytest.approx(-0.11)


def test_detections_in_probation_are_ignored() -> None:
    assert raw_score(ONE_WINDOW, detections_at(ONE_WINDOW, 10, 149), STANDARD) == -1.0


def test_null_scores_0_and_perfect_scores_100() -> None:
    labels = [ONE_WINDOW, SeriesLabels(n_rows=500, windows=((100, 119), (300, 339)))]
    perfect = []
    for series in labels:
        scores = np.zeros(series.n_rows)
        for first, _ in series.windows:
            scores[first] = 1.0
        perfect.append(scores)
    null = [np.zeros(series.n_rows) for series in labels]
    for profile in (STANDARD, LOW_FN):
        assert sweep(labels, perfect, profile).normalised == pytest.approx(100.0)
        assert sweep(labels, null, profile).normalised == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(5))
def test_sweep_finds_the_best_threshold_of_a_brute_force_search(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = [
        SeriesLabels(n_rows=300, windows=((120, 149), (220, 239))),
        SeriesLabels(n_rows=200, windows=((60, 79),)),
        SeriesLabels(n_rows=150, windows=()),
    ]
    # Coarse scores, so that many rows share a value (ties decide together).
    scores = [np.round(rng.random(series.n_rows) ** 4, 2) for series in labels]
    for profile in (STANDARD, LOW_FN):
        result = sweep(labels, scores, profile)
        brute = max(
            sum(
                raw_score(series, series_scores >= threshold, profile)
                for series, series_scores in zip(labels, scores, strict=True)
            )
            for threshold in np.unique(np.concatenate(scores))
        )
        assert result.raw == pytest.approx(max(brute, result.null))


def test_beam_online_scores_match_the_anomaly_detection_transform(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(10, 1, 400), [40.0], rng.normal(10, 1, 50)])
    ours = online_scores(ZScore(), values)
    prefix = str(tmp_path / "scores")
    with beam.Pipeline(options=batch_options()) as pipeline:
        _ = (
            pipeline
            | beam.Create([(0, beam.Row(row=i, value=float(v))) for i, v in enumerate(values)])
            | AnomalyDetection(ZScore(features=["value"]))
            | beam.MapTuple(lambda _, r: f"{r.example.row} {r.predictions[0].score}")
            | beam.io.WriteToText(prefix)
        )
    theirs = np.zeros(len(values))
    for path in tmp_path.glob("scores*"):
        for line in path.read_text().splitlines():
            row, score = line.split()
            z = float(score)
            theirs[int(row)] = 0.0 if math.isnan(z) else z / (1 + z)
    np.testing.assert_allclose(ours, theirs)
    assert int(np.argmax(ours)) == 400


needs_nab = pytest.mark.skipif(not NAB.is_dir(), reason=f"no NAB corpus at {NAB}")
SMALL_SERIES = "realKnownCause/ambient_temperature_system_failure.csv"


@needs_nab
def test_corpus_and_profiles_load() -> None:
    (series,) = load_corpus(NAB, [SMALL_SERIES])
    assert series.labels.n_rows == len(series.values) == 7267
    assert len(series.labels.windows) == 2
    assert set(load_profiles(NAB)) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}


@needs_nab
@pytest.mark.parametrize("detector", [dexwatch_scores, sliding_window_forest_scores])
def test_detectors_stream_without_look_ahead(detector) -> None:  # type: ignore[no-untyped-def]
    (series,) = load_corpus(NAB, [SMALL_SERIES])
    values = series.values[:1600]
    config = StreamingConfig(n_estimators=25, refit_every=400)
    probation = 300
    scores = detector(values, probation, config)
    assert scores.shape == values.shape
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (scores[:probation] == 0).all() and scores[probation:].max() > 0
    # Rows after `cut` altered (a huge spike, then noise): no score up to `cut` may change.
    cut = 1000
    altered = values.copy()
    altered[cut + 1] = values.max() * 50
    altered[cut + 2 :] = np.random.default_rng(0).normal(size=len(values) - cut - 2)
    np.testing.assert_array_equal(
        detector(altered, probation, config)[: cut + 1], scores[: cut + 1]
    )
    np.testing.assert_array_equal(detector(values[: cut + 1], probation, config), scores[: cut + 1])


def test_report_new_highs_reports_one_row_per_incident() -> None:
    from model.nab.detectors import report_new_highs

    score = np.array([0.1, 0.9, 0.8, 0.95, 0.2, 0.1, 0.1, 0.7])
    # 0.8 is below the 0.9 before it; 0.7 comes after the quiet stretch of 3 rows.
    np.testing.assert_array_equal(
        report_new_highs(score, quiet_rows=3), [0.1, 0.9, 0.0, 0.95, 0.0, 0.0, 0.0, 0.7]
    )
