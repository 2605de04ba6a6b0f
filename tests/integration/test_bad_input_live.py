"""Every kind of bad message through the real streaming pipeline (`dexwatch pipeline run`
on the Pub/Sub emulator) and the batch replay: the job keeps running, every bad message is
one dead letter with its stage, and the rows are exactly those of the good events alone;
killed and restarted, it replays its journal without dying on what it had refused."""

from __future__ import annotations

import dataclasses
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
from dexwatch.core.schemas.pool_event import PoolEvent, rfc3339
from dexwatch.core.schemas.topics import POOL_EVENTS
from dexwatch.core.warehouse import open_warehouse
from infra.local.sample_events import (
    POISON,
    V2_POOL,
    V3_POOL,
    announcement,
    v2_burn,
    v2_sync_swap,
    v3_swap,
)
from model.chain_window import train_detector
from publishers.pubsub import Message, PubSubSink
from tests.conftest import make_settings

pytestmark = [pytest.mark.slow]

PIPELINE = {
    "slice_s": 5, "current_slices": 2, "baseline_slices": 6, "min_baseline_share": 0.5,
    "allowed_lateness_s": 20, "alert_cooldown_s": 60,
}  # fmt: skip
T0 = (int(time.time()) - 3600) // 60 * 60  # an hour ago: live reads refuse the future
SECONDS = 240


def _good_events() -> list[PoolEvent]:
    """Two announced pools, a V3 and a V2, trading every second of event time."""
    events = [
        announcement(V3_POOL, "uniswap_v3", T0 - 60),
        announcement(V2_POOL, "sushiswap", T0 - 60, 1),
    ]
    for second in [*range(SECONDS), SECONDS + 40]:  # the last tick closes the windows
        events.append(v3_swap(10 * second, T0 + second, price_step=second % 11))
        events += v2_sync_swap(10 * second + 1, T0 + second, 10**21 + (second * 37) % 5000)
    return events


def _bad_messages(good: list[PoolEvent]) -> list[tuple[bytes, dict[str, str], str, bool]]:
    """(data, attributes, stage it must be dead-lettered at, whether only a live read can
    tell): every poison case, events from ahead of the clock, a wrong event_time attribute,
    events of unknown pools, and conflicting copies of good events."""
    v3 = v3_swap(5_000_001, T0 + 100)
    v2 = v2_burn(5_000_002, T0 + 100, 10, 20)
    bad = [(make(v3, v2), v3.attributes(), "parse", False) for make in POISON.values()]
    bad += _live_only_bad()
    for k in range(5):
        stranger = dataclasses.replace(v3_swap(5_000_010 + k, T0 + 102), pool=f"0x{k + 9:040x}")
        bad.append((stranger.to_json(), stranger.attributes(), "admit", False))
    swaps = [e for e in good if e.event == "Swap" and e.pool == V3_POOL][50:55]
    for k, original in enumerate(swaps):
        shifted = dataclasses.replace(original, block_timestamp=original.block_timestamp + 7 + k)
        bad.append((shifted.to_json(), shifted.attributes(), "admit", False))
    return bad


def _live_only_bad() -> list[tuple[bytes, dict[str, str], str, bool]]:
    """Bad only as Pub/Sub messages read live: an event from a day ahead of the clock, and an
    event_time attribute other than the block time (a recording has no attributes, and a
    replay may legitimately read blocks ahead of the wall clock)."""
    future = v3_swap(5_000_003, int(time.time()) + 86_400)
    wrong_time = v3_swap(5_000_004, T0 + 101)
    return [
        (future.to_json(), future.attributes(), "parse", True),
        (
            wrong_time.to_json(),
            {**wrong_time.attributes(), "event_time": rfc3339(T0)},
            "parse",
            True,
        ),
    ]


def _key(data: bytes) -> str:
    try:
        return PoolEvent.from_json(data).ordering_key
    except ValueError:
        return ""


def _config(tmp_path: Path, project: str, emulator: str, model: dict) -> Path:
    path = tmp_path / "dexwatch.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "pubsub": {"project": project, "emulator_host": emulator},
                "pipeline": PIPELINE,
                "model": model,
            }
        )
    )
    return path


def _pipeline(config: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEXWATCH_", "PUBSUB_"))}
    log = (config.parent / "pipeline.log").open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "dexwatch", "--config", str(config), "pipeline", "run"],
        cwd=config.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _has(settings, table: str) -> bool:
    if not settings.warehouse_path.exists():
        return False
    sql = f"select count(*) from information_schema.tables where table_name = '{table}'"
    return bool(open_warehouse(settings).query(sql).rows[0][0])


def _scores(settings) -> list[tuple]:
    if not _has(settings, "pool_scores"):
        return []
    return (
        open_warehouse(settings)
        .query(
            "select window_id, events, volume_ratio, price_change, score from pool_scores "
            f"where epoch(window_end) <= {T0 + SECONDS} order by window_id"
        )
        .rows
    )


def _dead(settings) -> list[tuple]:
    if not _has(settings, "dead_letters"):
        return []
    return open_warehouse(settings).query("select stage, reason from dead_letters").rows


def test_bad_messages_neither_stop_nor_skew_the_streaming_and_batch_pipelines(
    tmp_path: Path, pubsub_emulator: str, pubsub_project: str
):
    good = _good_events()
    bad = _bad_messages(good)
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"".join(e.to_json() + b"\n" for e in good))
    model = {"path": str(tmp_path / "model.joblib")}
    expected_settings = make_settings(tmp_path / "expected", pipeline=PIPELINE, model=model)
    train_detector(compute_features(expected_settings, clean, tmp_path)).save(Path(model["path"]))
    build_replay_pipeline(expected_settings, batch_options(), clean).run().wait_until_finish()
    expected = _scores(expected_settings)
    assert len(expected) > 60

    # Batch: the same recording with every bad message inside gives the same rows.
    poisoned = tmp_path / "poisoned.jsonl"
    half = len(good) // 2
    in_recording = [data for data, _, _, live_only in bad if not live_only]
    lines = [e.to_json() for e in good[:half]] + in_recording + [e.to_json() for e in good[half:]]
    poisoned.write_bytes(b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines))
    batch_settings = make_settings(tmp_path / "batch", pipeline=PIPELINE, model=model)
    build_replay_pipeline(batch_settings, batch_options(), poisoned).run().wait_until_finish()
    assert _scores(batch_settings) == expected
    assert len(_dead(batch_settings)) == len(in_recording)

    # Streaming, live: the bad messages arrive in the middle of the stream.
    config = _config(tmp_path, pubsub_project, pubsub_emulator, model)
    settings = make_settings(
        tmp_path / "state", pubsub={"project": pubsub_project}, pipeline=PIPELINE, model=model
    )
    sink = PubSubSink(pubsub_project)

    def publish(messages: list[Message]) -> None:
        sink.publish(POOL_EVENTS, messages)

    def good_messages(events: list[PoolEvent]) -> list[Message]:
        return [Message(e.to_json(), e.attributes(), e.ordering_key) for e in events]

    pipeline = _pipeline(config)
    try:
        publish(good_messages(good[:half]))
        # Conflicting copies come under their pool's ordering key, as from a publisher that
        # read another node: after their originals. (Without a key a copy can overtake its
        # original in delivery, and the first version to arrive wins.)
        publish([Message(data, attributes, _key(data)) for data, attributes, _, _ in bad])
        publish(good_messages(good[half : half + 200]))
        time.sleep(20)
        pipeline.send_signal(signal.SIGKILL)  # the restart replays the bad messages too
        pipeline.wait(timeout=30)
        publish(good_messages(good[half + 200 :]))
        pipeline = _pipeline(config)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and (
            _scores(settings) != expected or len(_dead(settings)) < len(bad)
        ):
            assert pipeline.poll() is None, "the pipeline stopped; see pipeline.log"
            time.sleep(2)
        time.sleep(5)
        assert pipeline.poll() is None, "the pipeline stopped; see pipeline.log"
    finally:
        pipeline.send_signal(signal.SIGKILL)
        pipeline.wait(timeout=30)

    assert _scores(settings) == expected, "bad messages changed the rows"
    dead = _dead(settings)
    assert sorted(stage for stage, _ in dead) == sorted(stage for _, _, stage, _ in bad)
    assert any("ahead of the clock" in reason for _, reason in dead)
    assert any("unknown pool" in reason for _, reason in dead)
    assert sum("conflicting duplicate" in reason for _, reason in dead) == 5
    log = (tmp_path / "pipeline.log").read_text()
    assert "Traceback" not in log, log[-3000:]
