"""`dexwatch model list | promote | rollback` and `dexwatch serve` through the real command
line: what a user types, and what the pipeline then loads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dexwatch.core.detector import Detector
from infra.local.processes import free_port
from infra.local.settings import load_local_settings
from model.registry import CHAIN_WINDOW, POOL_HOUR, ModelRegistry
from tests._detectors import EARLIER_DESIGN_REQUEST, chain_detector, hourly_detector
from tests.conftest import dexwatch_cli, write_local_config


@pytest.fixture(scope="module")
def detectors() -> tuple[Detector, Detector, Detector]:
    return chain_detector(1), chain_detector(2), hourly_detector()


def _registered(tmp_path: Path, detectors, **sections) -> tuple[Path, Path]:
    config = write_local_config(tmp_path, **sections)
    registry_dir = load_local_settings(config).registry_dir
    v1, v2, hourly = detectors
    for detector in (v1, v2):
        ModelRegistry(registry_dir, CHAIN_WINDOW).register(detector)
    ModelRegistry(registry_dir, POOL_HOUR).register(hourly)
    return config, registry_dir


def test_promote_and_rollback_move_what_the_pipeline_loads(tmp_path, detectors):
    config, registry_dir = _registered(tmp_path, detectors)
    v1, v2, _ = (d.version for d in detectors)

    first = dexwatch_cli(config, "model", "promote", v1)
    assert first.returncode == 0, first.stderr
    second = dexwatch_cli(config, "model", "promote", v2)
    assert f"chain-window: production is now {v2} (previous {v1})" in second.stdout
    # What `dexwatch pipeline run` (and so `make run`) loads: settings.model_path.
    assert Detector.load(load_local_settings(config).model_path).version == v2

    listed = dexwatch_cli(config, "model", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(line.split()[:2] == ["production", v2] for line in lines)
    assert any(line.split()[:2] == ["previous", v1] for line in lines)
    assert "pool-hour  (1 versions" in listed.stdout

    back = dexwatch_cli(config, "model", "rollback")
    assert back.returncode == 0, back.stderr
    assert f"production is now {v1}" in back.stdout
    assert Detector.load(load_local_settings(config).model_path).version == v1

    again = dexwatch_cli(config, "model", "rollback")
    assert again.returncode == 1
    assert "chain-window has no previous production version" in again.stderr

    unknown = dexwatch_cli(config, "model", "promote", "20990101T000000-abcdef")
    assert unknown.returncode == 1
    assert "no registered version 20990101T000000-abcdef" in unknown.stderr
    assert ModelRegistry(registry_dir, CHAIN_WINDOW).aliases().production == v1


def test_promotion_with_gcp_half_configured_changes_nothing(tmp_path, detectors):
    config, registry_dir = _registered(tmp_path, detectors, model={"vertex_project": "my-proj"})
    result = dexwatch_cli(config, "model", "promote", detectors[0].version)
    assert result.returncode == 2
    assert "needs model.vertex_staging_uri, model.serving_image_uri" in result.stderr
    assert ModelRegistry(registry_dir, CHAIN_WINDOW).aliases().production is None


def test_serve_answers_the_earlier_designs_request_on_aip_http_port(tmp_path, detectors):
    config, registry_dir = _registered(tmp_path, detectors)
    hourly = detectors[2]
    ModelRegistry(registry_dir, POOL_HOUR).promote(hourly.version)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "AIP_"))}
    env |= {"AIP_HTTP_PORT": str(port), "AIP_PREDICT_ROUTE": "/v1/predict"}
    server = subprocess.Popen(
        [sys.executable, "-m", "dexwatch", "--config", str(config), "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "dexwatch serve did not start"
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "models": {"pool-hour": hourly.version}}
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json=EARLIER_DESIGN_REQUEST)
        (prediction,) = answer.json()["predictions"]
        assert prediction["label"] == 1
        assert prediction["model_version"] == hourly.version
        # chain-window has versions but none promoted: not served.
        window = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"instances": [[0] * 9]})
        assert window.status_code == 400 and "expected 13 for pool-hour" in window.json()["error"]
    finally:
        server.terminate()
        server.wait(timeout=10)
