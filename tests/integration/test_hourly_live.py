"""The hourly branch live, through the real command line and the Pub/Sub emulator: PoolHours
published to pool-hourly come out as subgraph rows in the shared tables, a spike hour as an
alert on the alerts topic, a malformed message as a dead letter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dexwatch.core.features.chain import FEATURE_NAMES
from dexwatch.core.features.hourly import MIN_PREVIOUS_HOURS
from dexwatch.core.schemas.alert import Alert
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour
from dexwatch.core.schemas.topics import ALERTS_SUBSCRIPTION, POOL_HOURLY
from dexwatch.core.warehouse import open_warehouse
from model.chain_window import train_detector
from model.hourly import train_hourly_detector
from publishers.pubsub import Message, PubSubSink
from tests._pubsub import drain
from tests.conftest import make_settings

pytestmark = [pytest.mark.slow]

POOL = "0x" + "ab" * 20
HOURS = 30
# Hours that ended in the past: live reads refuse records from ahead of the clock.
T0 = (int(time.time()) // HOUR_S - HOURS - 3) * HOUR_S


def _hour(i: int, **fields) -> PoolHour:
    wobble = ((i * 7919) % 13 - 6) / 100
    values = dict(
        chain_id=31337, dex="sushiswap", pool=POOL, hour_start=T0 + i * HOUR_S,
        volume_usd=1e5 * (1 + wobble), tvl_usd=2e6 * (1 + wobble / 10), liquidity=1e22,
        fees_usd=300.0, tx_count=1000 + 10 * (i % 5), token0_price=3000.0,
        token1_price=1 / 3000, indexed_block=100 + i,
    )  # fmt: skip
    values.update(fields)
    return PoolHour(**values)


def _has_table(settings, name: str) -> bool:
    if not settings.warehouse_path.exists():
        return False
    sql = f"select count(*) from information_schema.tables where table_name = '{name}'"
    return bool(open_warehouse(settings).query(sql).rows[0][0])


def test_published_hours_become_rows_and_a_spike_one_alert(
    tmp_path: Path, pubsub_emulator: str, pubsub_project: str
):
    model = {"path": str(tmp_path / "chain.joblib"), "hourly_path": str(tmp_path / "h.joblib")}
    pipeline_settings = {"hourly": True}
    train_detector([dict.fromkeys(FEATURE_NAMES, float(i % 9)) for i in range(60)]).save(
        Path(model["path"])
    )
    history = [_hour(i, hour_start=T0 - (200 - i) * HOUR_S) for i in range(100)]
    train_hourly_detector(history).save(Path(model["hourly_path"]))
    config = tmp_path / "dexwatch.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "pubsub": {"project": pubsub_project, "emulator_host": pubsub_emulator},
                "pipeline": pipeline_settings,
                "model": model,
            }
        )
    )
    settings = make_settings(
        tmp_path / "state",
        pubsub={"project": pubsub_project},
        pipeline=pipeline_settings,
        model=model,
    )

    spike = _hour(HOURS, volume_usd=2.5e6, tx_count=9000)
    hours = [_hour(i) for i in range(HOURS)] + [spike]
    messages = [Message(h.to_json(), h.attributes()) for h in hours + hours[:5]]
    messages.append(Message(b"not an hour", {}))
    sink = PubSubSink(pubsub_project)
    sink.publish(POOL_HOURLY, messages)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    with (tmp_path / "pipeline.log").open("a") as log:
        pipeline = subprocess.Popen(
            [sys.executable, "-m", "dexwatch", "--config", str(config), "pipeline", "run"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    expected = HOURS + 1 - MIN_PREVIOUS_HOURS  # every hour with enough history
    rows: list[tuple] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(rows) < expected:
            assert pipeline.poll() is None, "the pipeline stopped; see pipeline.log"
            if _has_table(settings, "pool_scores"):
                rows = (
                    open_warehouse(settings)
                    .query(
                        "select window_id, source, is_anomaly from pool_scores "
                        "where source = 'subgraph' order by window_end"
                    )
                    .rows
                )
            time.sleep(1)
        time.sleep(3)  # the anomaly and the alert follow the scores
        alerts = [Alert.from_json(m.data) for m in drain(pubsub_project, ALERTS_SUBSCRIPTION)]
        warehouse = open_warehouse(settings)
        anomalies = warehouse.query("select window_id, source, alert_id from anomalies").rows
        dead = warehouse.query("select stage from dead_letters").rows
    finally:
        pipeline.send_signal(signal.SIGKILL)
        pipeline.wait(timeout=30)

    assert len(rows) == expected, rows
    assert [r[0] for r in rows if r[2]] == [f"{spike.hour_id}:hour"]
    spike_end = T0 + (HOURS + 1) * HOUR_S
    assert anomalies == [(f"{spike.hour_id}:hour", "subgraph", f"31337:{POOL}:{spike_end}")]
    assert [(a.alert_id, a.source, a.pool) for a in alerts] == [
        (f"31337:{POOL}:{spike_end}", "subgraph", POOL)
    ]
    assert dead == [("parse-hourly",)]
