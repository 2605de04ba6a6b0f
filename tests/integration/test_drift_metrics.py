"""Feature drift (PSI), the Prometheus metrics endpoint, `dexwatch drift check` publishing a
feature-drift alert on the Pub/Sub emulator, and the Vertex AI training job's spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.schemas.alert import Alert
from dexwatch.core.schemas.topics import ALERTS_SUBSCRIPTION
from dexwatch.core.settings import ModelSettings
from dexwatch.core.warehouse.duckdb import DuckDBWarehouse
from infra.local.settings import load_local_settings
from model.drift import feature_bins, psi, psi_per_feature
from model.monitoring import metrics_server, prometheus_text, serve_in_background, take_snapshot
from model.registry import CHAIN_WINDOW, ModelRegistry
from model.train_run import TrainingRunParams, run_training
from model.train_schedule import VertexJobError, custom_job_spec, next_run
from tests._feature_rows import fill, normal_rows
from tests._pubsub import drain
from tests.conftest import dexwatch_cli, write_local_config


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (20_000, 2))
    bins = feature_bins(train, ["a", "b"])
    assert len(bins["a"]["edges"]) == 9 and sum(bins["a"]["shares"]) == pytest.approx(1)
    same = psi_per_feature(bins, {"a": rng.normal(0, 1, 5000), "b": rng.normal(0, 1, 5000)})
    assert same["a"] < 0.01 and same["b"] < 0.01
    shifted = psi_per_feature(bins, {"a": rng.normal(1.0, 1, 5000)})
    assert shifted["a"] > 0.25 and "b" not in shifted  # no recent values: no PSI
    # A feature that is mostly one value (a removed share of 0) keeps finite bins.
    zeros = np.zeros((1000, 1))
    zeros[::10] = 0.3
    spiky = feature_bins(zeros, ["removed"])
    assert psi_per_feature(spiky, {"removed": zeros[:, 0]})["removed"] < 1e-9
    assert psi([0.5, 0.5], [1.0, 0.0]) > 1


def _trained_and_promoted(tmp_path, now: datetime, recent_shift: float):  # type: ignore[no-untyped-def]
    """A config whose production chain-window model was trained on last week's rows, and
    a recent day of rows (shifted or not) in the warehouse."""
    config = write_local_config(tmp_path)
    settings = load_local_settings(config)
    warehouse = DuckDBWarehouse(settings.warehouse_path)
    week_ago = now - timedelta(days=7)
    fill(warehouse, normal_rows(week_ago, week_ago + timedelta(days=1), seed=1), [])
    run = run_training(
        warehouse, settings.registry_dir,
        TrainingRunParams(days=1, n_estimators=30), now=week_ago + timedelta(days=1),
    )  # fmt: skip
    ModelRegistry(settings.registry_dir, CHAIN_WINDOW).promote(run.version)
    recent = normal_rows(now - timedelta(hours=20), now, seed=2, shift=recent_shift)
    for row in recent[-30:]:  # the last hour or so: some anomalies
        row["is_anomaly"] = row["pool"].endswith("a1")
    fill(warehouse, recent, [])
    return config, settings, run.version


def test_metrics_endpoint_serves_psi_anomaly_rate_and_model_version(tmp_path):
    now = datetime.now(UTC)
    _, settings, version = _trained_and_promoted(tmp_path, now, recent_shift=1.0)
    snapshot = take_snapshot(
        DuckDBWarehouse(settings.warehouse_path), settings.registry_dir, 24, 1, now=now
    )
    text = prometheus_text(snapshot)
    # prometheus_client writes label names in alphabetical order: the same series.
    assert f'dexwatch_model_info{{model="chain-window",source="chain",version="{version}"}} 1' in (
        text
    )
    psi_lines = {
        line.split('feature="')[1].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("dexwatch_feature_psi{")
    }
    assert len(psi_lines) == len(FEATURE_NAMES)
    assert psi_lines["volume_ratio"] > 0.25 and psi_lines["top_trader_share"] < 0.1
    # The last hour: 12 windows of each of 3 pools, those of pool a1 flagged (10 of 30 set).
    chain_rate = 'dexwatch_anomaly_rate{source="chain"}'
    rate = float(next(ln for ln in text.splitlines() if ln.startswith(chain_rate)).split()[-1])
    assert 0.2 < rate < 0.4
    assert 'dexwatch_anomaly_rate{source="subgraph"} 0' in text
    assert "# TYPE dexwatch_feature_psi gauge" in text

    server = metrics_server(lambda: snapshot, "127.0.0.1", 0)
    serve_in_background(server)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        answer = httpx.get(f"{base}/metrics", timeout=5)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert answer.text == text
        assert httpx.get(f"{base}/other", timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("shift, drifts", [(1.0, True), (0.0, False)])
def test_drift_check_publishes_a_feature_drift_alert_only_past_the_threshold(
    tmp_path, pubsub_emulator, pubsub_project, shift, drifts
):
    now = datetime.now(UTC)
    config, _, version = _trained_and_promoted(tmp_path, now, recent_shift=shift)
    config = write_local_config(
        tmp_path, pubsub={"emulator_host": pubsub_emulator, "project": pubsub_project}
    )
    checked = dexwatch_cli(config, "drift", "check")
    alerts = [Alert.from_json(m.data) for m in drain(pubsub_project, ALERTS_SUBSCRIPTION)]
    if not drifts:
        assert checked.returncode == 0, checked.stderr
        assert "no feature above PSI 0.25" in checked.stdout
        assert alerts == []
        return
    assert checked.returncode == 3, checked.stderr
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.kind, alert.model_version, alert.pool) == ("feature-drift", version, "*")
    assert {f.name for f in alert.top_features} >= {"volume_ratio", "swap_count_ratio"}
    assert all(f.value > 0.25 for f in alert.top_features)


def test_vertex_training_job_spec(tmp_path):
    settings = ModelSettings(
        vertex_project="my-proj",
        serving_image_uri="us-central1-docker.pkg.dev/my-proj/dexwatch/serve:1",
        vertex_staging_uri="gs://my-bucket/dexwatch",
    )
    args = TrainingRunParams(days=7, seed=5).cli_args()
    spec = custom_job_spec(settings, args, "dexwatch-train-chain")
    pool = spec["job_spec"]["worker_pool_specs"][0]
    assert spec["display_name"] == "dexwatch-train-chain"
    assert pool["container_spec"]["image_uri"] == settings.serving_image_uri
    assert pool["container_spec"]["command"] == ["dexwatch"]
    assert pool["container_spec"]["args"][:5] == ["train", "--path", "chain", "--days", "7"]
    assert "--seed" in args and args[args.index("--seed") + 1] == "5"
    assert pool["machine_spec"]["machine_type"] == "n1-standard-2"
    assert pool["replica_count"] == 1
    assert {"name": "DEXWATCH_WAREHOUSE__BACKEND", "value": "bigquery"} in pool["container_spec"][
        "env"
    ]
    assert spec["job_spec"]["base_output_directory"]["output_uri_prefix"] == (
        "gs://my-bucket/dexwatch"
    )
    with pytest.raises(VertexJobError, match="model.serving_image_uri"):
        custom_job_spec(ModelSettings(vertex_project="p"), args, "x")
    # Weekly by default: Monday 03:00 UTC.
    assert next_run("0 3 * * 1", datetime(2026, 11, 28, tzinfo=UTC)) == datetime(
        2026, 11, 30, 3, tzinfo=UTC
    )

    # Through the command line, without GCP settings: refused before anything is submitted.
    config = write_local_config(tmp_path)
    refused = dexwatch_cli(config, "train", "--days", "7", "--submit", "vertex")
    assert refused.returncode == 2
    assert "--submit vertex needs model.vertex_project, model.serving_image_uri" in refused.stderr
    bad_cron = dexwatch_cli(config, "train", "--schedule", "every monday")
    assert bad_cron.returncode == 2 and "not a cron expression" in bad_cron.stderr
