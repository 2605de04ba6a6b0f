"""`dexwatch train` on a warehouse filled here (real table schemas, DuckDB), then
`dexwatch model promote` through the real command line: what the pipeline then loads."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import yaml

from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import FEATURE_NAMES, FEATURES_VERSION
from dexwatch.core.warehouse.duckdb import DuckDBWarehouse
from infra.local.settings import load_local_settings
from model.registry import CHAIN_WINDOW, ModelRegistry
from model.train_run import TrainingRunParams, load_run_params, run_training
from tests._detectors import HOURLY_NAMES, chain_detector, hourly_rows
from tests._feature_rows import POOLS, aligned, fill, incident, normal_rows
from tests.conftest import dexwatch_cli, write_local_config

START = datetime(2026, 11, 20, tzinfo=UTC)
END = START + timedelta(days=2)


def _fill_warehouse(path: Path) -> None:
    rng = np.random.default_rng(5)
    scores = normal_rows(START, END)
    labels = []
    # One incident in the training part (excluded from training), three in the held-out
    # last fifth of the window (evaluated).
    for pool, kind, at in (
        (POOLS[0], "liquidity-drain", START + timedelta(hours=10)),
        (POOLS[1], "liquidity-drain", END - timedelta(hours=6)),
        (POOLS[2], "rug-pull", END - timedelta(hours=4)),
        (POOLS[0], "liquidity-drain", END - timedelta(hours=2)),
    ):
        label, rows = incident(pool, kind, aligned(at), 15, rng)
        labels.append(label)
        scores += rows
    fill(DuckDBWarehouse(path), scores, labels)


def test_train_registers_an_unpromoted_version_with_report_then_promote_serves_it(tmp_path):
    config = write_local_config(tmp_path)
    settings = load_local_settings(config)
    _fill_warehouse(settings.warehouse_path)
    registry = ModelRegistry(settings.registry_dir, CHAIN_WINDOW)
    previous = chain_detector(4)
    registry.register(previous)
    registry.promote(previous.version)

    params = tmp_path / "train.yaml"
    params.write_text(yaml.safe_dump({"path": "chain", "n_estimators": 40, "seed": 3}))
    trained = dexwatch_cli(
        config, "train", "--params", str(params), "--from", START.isoformat(),
        "--to", END.isoformat(), "--n-estimators", "60",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    version = re.search(r"chain-window (\S+): trained", trained.stdout).group(1)
    report_path = Path(re.search(r"report: (\S+)", trained.stdout).group(1))

    # Registered, not promoted: production is still the previous version.
    assert registry.aliases().production == previous.version
    meta = registry.get(version).metadata
    assert meta["features_version"] == FEATURES_VERSION
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["training_range"]["start"] == START.isoformat()
    assert meta["training_range"]["end"] == END.isoformat()
    # The training-slice incident: 3 windows, and 3 of normal traffic within its 5-min padding.
    assert meta["training_range"]["excluded_incident_rows"] == 6
    assert datetime.fromisoformat(meta["training_range"]["last_window_end"]) < END - timedelta(
        hours=9
    )
    assert meta["run_params"]["n_estimators"] == 60  # the flag beats the file's 40
    assert meta["run_params"]["seed"] == 3
    assert meta["params"]["n_estimators"] == 60
    assert meta["code_version"] and meta["code_version"] != "unknown"
    metrics = meta["metrics"]
    # All four are evaluated: the held-out ones, and the one whose rows training left out.
    assert metrics["incidents"] == 4
    assert metrics["recall"] == 1.0
    assert metrics["recall_by_kind"]["rug-pull"]["recall"] == 1.0
    assert metrics["recall_by_kind"]["liquidity-drain"]["median_delay_s"] == 300.0
    assert metrics["held_out_anomaly_rate"] < 0.05
    assert 0 < metrics["precision"] <= 1
    assert set(meta["feature_bins"]) == set(FEATURE_NAMES)

    assert report_path == registry.get(version).directory / "report.html"
    html = report_path.read_text()
    assert html.count("<svg") >= 5
    for heading in ("Score distribution", "Anomaly rate over time", "What drives the anomalies",
                    "Labelled incidents", "Against the production version"):  # fmt: skip
        assert heading in html
    for chart in re.findall(r"<svg.*?</svg>", html, re.S):
        ElementTree.fromstring(chart)  # each plot is well-formed SVG
    assert 'id="comparison"' in html and previous.version in html
    assert "liquidity_removed_share" in html  # what drives the flagged incident windows

    promoted = dexwatch_cli(config, "model", "promote", version)
    assert promoted.returncode == 0, promoted.stderr
    # settings.model_path is what `dexwatch pipeline run` (make run) loads by default.
    assert Detector.load(load_local_settings(config).model_path).version == version


def test_first_version_report_says_there_is_nothing_to_compare(tmp_path):
    settings = load_local_settings(state_dir=str(tmp_path))
    _fill_warehouse(settings.warehouse_path)
    run = run_training(
        DuckDBWarehouse(settings.warehouse_path),
        settings.registry_dir,
        TrainingRunParams(
            days=2, n_estimators=30, threshold_rule="contamination", contamination=0.02
        ),  # fmt: skip
        now=END,
    )
    html = (run.directory / "report.html").read_text()
    assert 'id="comparison"' not in html and "No production version" in html
    assert html.count("<svg") >= 4
    # contamination 2 %: about that share of the training rows is flagged.
    assert 0.015 <= run.evaluation.train_anomaly_rate <= 0.04
    columns = list(run.detector.forest_columns or range(run.train.x.shape[1]))
    forest_scores = run.detector.forest.score_samples(run.train.x[:, columns])
    assert run.metadata["threshold"] == pytest.approx(
        float(np.quantile(forest_scores, 0.02)), abs=1e-9
    )


def test_params_file_and_flags(tmp_path):
    file = tmp_path / "p.yaml"
    file.write_text(yaml.safe_dump({"days": 3, "n_estimators": 10, "path": "hourly"}))
    params = load_run_params(file, {"from": START, "to": END, "seed": 9})
    assert (params.start, params.days, params.seed, params.path) == (START, None, 9, "hourly")
    assert params.data_range() == (START, END)
    assert load_run_params(None, {"days": 1}).data_range(now=END) == (END - timedelta(days=1), END)
    file.write_text("n_trees: 3\n")
    with pytest.raises(ValueError, match="n_trees"):
        load_run_params(file)
    with pytest.raises(ValueError, match="from must be before to"):
        TrainingRunParams.model_validate({"from": END, "to": START})
    # The Vertex job runs the same parameters as flags.
    assert load_run_params(None, {"from": START, "to": END, "seed": 9}).cli_args()[:6] == [
        "--path", "chain", "--from", START.isoformat(), "--to", END.isoformat(),
    ]  # fmt: skip


def test_hourly_path_trains_on_subgraph_rows(tmp_path):
    settings = load_local_settings(state_dir=str(tmp_path))
    x = hourly_rows(240)
    rows = []
    for i, vector in enumerate(x):
        hour = START + timedelta(hours=i // 3)
        pool = POOLS[i % 3]
        rows.append({
            "window_id": f"31337:{pool}:{int(hour.timestamp())}:hour", "chain_id": 31337,
            "dex": "uniswap-v3", "pool": pool, "source": "subgraph", "window_start": hour,
            "window_end": hour + timedelta(hours=1), **dict(zip(HOURLY_NAMES, vector, strict=True)),
            "events": 100, "score": 0.1, "is_anomaly": False, "top_features": "[]",
            "model_version": "bootstrap", "scored_at": hour,
        })  # fmt: skip
    # Chain rows in the same window are not the hourly model's.
    fill(
        DuckDBWarehouse(settings.warehouse_path),
        rows + normal_rows(START, START + timedelta(hours=2)),
        [],
    )
    run = run_training(
        DuckDBWarehouse(settings.warehouse_path), settings.registry_dir,
        TrainingRunParams(path="hourly", days=30, n_estimators=30), now=START + timedelta(days=5),
    )  # fmt: skip
    meta = ModelRegistry(settings.registry_dir, "pool-hour").get(run.version).metadata
    assert meta["feature_names"] == list(HOURLY_NAMES)
    assert meta["training_range"]["rows"] + meta["training_range"]["held_out_rows"] == 240
    assert np.isinf(run.detector.limits[-2:]).all()  # hour of day, weekday: context only
