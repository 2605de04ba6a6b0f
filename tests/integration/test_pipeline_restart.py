"""The streaming pipeline killed (kill -9) mid-stream and restarted, through the real
command line and the Pub/Sub emulator: the warehouse ends up with the rows a batch replay
of the same events gives, each once; no event or window is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from beam_pipelines.options import batch_options
from beam_pipelines.pipeline import build_replay_pipeline
from dexwatch.app.workflows.bootstrap import compute_features
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.schemas.topics import POOL_EVENTS
from dexwatch.core.warehouse import open_warehouse
from model.chain_window import train_detector
from publishers.pubsub import Message, PubSubSink
from tests.conftest import make_settings

pytestmark = [pytest.mark.slow]

PIPELINE = {
    "slice_s": 5, "current_slices": 2, "baseline_slices": 6, "min_baseline_share": 0.5,
    "allowed_lateness_s": 20, "alert_cooldown_s": 60,
}  # fmt: skip
POOLS = [f"0x{n:040x}" for n in (1, 2, 3)]
# Two hours ago: live reads turn away events from ahead of the clock.
T0 = (int(time.time()) - 2 * 3600) // 60 * 60
SECONDS = 300  # event time
SENDER = f"0x{0x5E:040x}"


def _events() -> list[PoolEvent]:
    """Three V2 pools (announced first) trading every second of event time, with a drain in
    the last one."""
    events = [
        PoolEvent(
            chain_id=31337,
            dex="sushiswap",
            pool=pool,
            event="PairCreated",
            block_number=0,
            block_hash=f"0x{0:064x}",
            block_timestamp=T0 - 60,
            tx_hash=f"0x{index:064x}",
            log_index=index,
            args={
                "token0": f"0x{0xA0:040x}",
                "token1": f"0x{0xB0:040x}",
                "pair": pool,
                "allPairsLength": str(index + 1),
            },
        )  # fmt: skip
        for index, pool in enumerate(POOLS)
    ]
    # The last seconds only tick, so the watermark passes the end of every window of the
    # seconds before (the windows after a pool's newest slice wait for it).
    for second in [*range(SECONDS), SECONDS + 60]:
        for index, pool in enumerate(POOLS):
            n = second * 10 + index
            reserve0 = 1_000_000 + (second * 37 + index * 11) % 5_000
            common = {
                "chain_id": 31337, "dex": "sushiswap", "pool": pool, "block_number": n,
                "block_hash": f"0x{n:064x}", "block_timestamp": T0 + second,
                "tx_hash": f"0x{n:064x}",
            }  # fmt: skip
            events.append(
                PoolEvent(
                    **common,
                    event="Sync",
                    log_index=0,
                    args={"reserve0": str(reserve0), "reserve1": str(2 * reserve0)},
                )  # fmt: skip
            )
            events.append(
                PoolEvent(
                    **common,
                    event="Swap",
                    log_index=1,
                    args={
                        "amount0In": "0",
                        "amount1In": str(500 + second % 7 * 100),
                        "amount0Out": "240",
                        "amount1Out": "0",
                        "sender": SENDER,
                        "to": f"0x{second % 9:040x}",
                    },
                )  # fmt: skip
            )
            if index == 2 and second == SECONDS - 40:
                events.append(
                    PoolEvent(
                        **common,
                        event="Burn",
                        log_index=2,
                        args={
                            "amount0": "700000",
                            "amount1": "1400000",
                            "sender": SENDER,
                            "to": f"0x{0x02:040x}",
                        },
                    )  # fmt: skip
                )
    return events


def _config(tmp_path: Path, project: str, emulator: str, model: dict) -> Path:
    config = {
        "state_dir": str(tmp_path / "state"),
        "pubsub": {"project": project, "emulator_host": emulator},
        "pipeline": PIPELINE,
        "model": model,
    }
    path = tmp_path / "dexwatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _pipeline(config: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    log = (config.parent / "pipeline.log").open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "dexwatch", "--config", str(config), "pipeline", "run"],
        cwd=config.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _has_scores(settings) -> bool:
    if not settings.warehouse_path.exists():
        return False
    sql = "select count(*) from information_schema.tables where table_name = 'pool_scores'"
    return bool(open_warehouse(settings).query(sql).rows[0][0])


def _scores(settings) -> list[tuple]:
    if not _has_scores(settings):
        return []
    return (
        open_warehouse(settings)
        .query(
            "select window_id, events, volume_ratio, liquidity_removed_share, score "
            f"from pool_scores where epoch(window_end) <= {T0 + SECONDS + 20} order by window_id"
        )
        .rows
    )


def _wait_for_rows(settings, pipeline: subprocess.Popen, at_least: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        assert pipeline.poll() is None, "the pipeline stopped; see pipeline.log"
        if _has_scores(settings):
            count = open_warehouse(settings).query("select count(*) from pool_scores").rows[0][0]
            if count >= at_least:
                return count
        time.sleep(1)
    return count


def test_a_pipeline_killed_mid_stream_resumes_without_duplicates_or_losses(
    tmp_path: Path, pubsub_emulator: str, pubsub_project: str
):
    events = _events()
    recording = tmp_path / "events.jsonl"
    recording.write_bytes(b"".join(event.to_json() + b"\n" for event in events))

    # A model trained on these events' windows, and the rows a batch replay gives.
    model = {"path": str(tmp_path / "model.joblib")}
    expected_settings = make_settings(tmp_path / "expected", pipeline=PIPELINE, model=model)
    rows = compute_features(expected_settings, recording, tmp_path)
    train_detector(rows).save(Path(model["path"]))
    build_replay_pipeline(expected_settings, batch_options(), recording).run().wait_until_finish()
    config = _config(tmp_path, pubsub_project, pubsub_emulator, model)
    settings = make_settings(
        tmp_path / "state", pubsub={"project": pubsub_project}, pipeline=PIPELINE, model=model
    )
    expected = _scores(expected_settings)
    assert len(expected) > 100

    sink = PubSubSink(pubsub_project)

    def publish(batch: list[PoolEvent]) -> None:
        messages = [Message(e.to_json(), e.attributes(), e.ordering_key) for e in batch]
        sink.publish(POOL_EVENTS, messages)

    half = len(events) // 2
    pipeline = _pipeline(config)
    try:
        publish(events[:half])
        written = _wait_for_rows(settings, pipeline, at_least=len(expected) // 4, timeout_s=180)
        assert written >= len(expected) // 4, "the pipeline wrote too little before the kill"
        # Mid-stream: more arrives while it dies; some of it pulled, journaled, not yet
        # processed, some not yet acknowledged.
        publish(events[half : half + 300])
        pipeline.send_signal(signal.SIGKILL)
        pipeline.wait(timeout=30)
        publish(events[half + 300 :] + events[half - 200 : half])  # and some duplicates
        pipeline = _pipeline(config)
        # Messages the killed run had pulled but not journaled come back after the
        # subscription's ack deadline (60 s).
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and _scores(settings) != expected:
            assert pipeline.poll() is None, "the pipeline stopped; see pipeline.log"
            time.sleep(2)
        time.sleep(5)  # anything still in flight lands, or shows up as a duplicate
    finally:
        pipeline.send_signal(signal.SIGKILL)
        pipeline.wait(timeout=30)

    got = _scores(settings)
    ids = [row[0] for row in got]
    assert len(ids) == len(set(ids)), "a window was written twice"
    assert {row[0] for row in got} == {row[0] for row in expected}, "windows lost or extra"
    changed = [(g, e) for g, e in zip(got, expected, strict=True) if g != e]
    assert not changed, changed[:5]
