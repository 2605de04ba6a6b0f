"""The Slack consumer end to end: alerts published on the Pub/Sub emulator → `dexwatch slack
serve` → the local stand-in of the Slack Web API, with its faults; dead letters read back
from the emulator; clicks signed by the stand-in land in the warehouse."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import pubsub_v1

from dexwatch.app.slack.messages import ALERT_EVENT
from dexwatch.app.slack.service import SlackService
from dexwatch.core.schemas.alert import Alert, PoolRef, TopFeature
from dexwatch.core.schemas.topics import ALERTS, ALERTS_DLQ_SUBSCRIPTION, topic_path
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import open_warehouse
from infra.local import processes
from infra.local.slack_standin import SlackStandin
from tests._pubsub import drain
from tests.conftest import dexwatch_cli, make_settings

pytestmark = pytest.mark.stack

CHANNELS = ["#dexwatch-alerts", "#pager"]
NOW = datetime.now(UTC).replace(microsecond=0)


def alert(
    n: int, revision: int = 0, severity: str = "medium", kind: str = "liquidity-drain"
) -> Alert:
    pool = f"0x{n:040x}"
    return Alert(
        alert_id=f"31337:{pool}:{int(NOW.timestamp())}", revision=revision,
        window_id=f"31337:{pool}:{int(NOW.timestamp()) + 15 * revision}", chain_id=31337,
        pools=[PoolRef(dex="uniswap_v3", pool=pool)], source="chain", kind=kind,
        confidence=0.8, severity=severity, score=-0.07 - 0.01 * revision,
        window_start=NOW - timedelta(minutes=1), window_end=NOW + timedelta(seconds=15 * revision),
        top_features=[TopFeature(name="liquidity_removed_share", value=0.6, deviation=12.0)],
        model_version="test", detected_at=datetime.now(UTC),
    )  # fmt: skip


@pytest.fixture
def standin() -> Iterator[SlackStandin]:
    with SlackStandin(channels=CHANNELS, interval_s=1.0) as server:
        yield server


def settings_for(tmp_path: Path, project: str, standin: SlackStandin, **slack: object) -> Settings:
    section = {
        "enabled": True, "local_standin": True, "standin_port": standin.port, "port": 0,
        "routes": [{"channel": "#pager", "severities": ["high"]}],
        "retry": {"timeout_s": 2.0, "backoff_base_s": 0.1, "backoff_max_s": 0.5},
        **slack,
    }  # fmt: skip
    return make_settings(
        tmp_path / "state",
        pubsub={"project": project, "emulator_host": os.environ["PUBSUB_EMULATOR_HOST"]},
        slack=section,
    )


def publish(project: str, alerts: list[Alert], raw: list[tuple[bytes, dict]] = ()) -> None:
    publisher = pubsub_v1.PublisherClient()
    path = topic_path(project, ALERTS)
    futures = [publisher.publish(path, a.to_json(), **a.attributes()) for a in alerts]
    futures += [publisher.publish(path, data, **attrs) for data, attrs in raw]
    for future in futures:
        future.result(timeout=30)


class Running:
    """The consumer served in this process until the block ends."""

    def __init__(self, settings: Settings) -> None:
        self.stop = threading.Event()
        self.service = SlackService(settings)
        self.consumer = self.service.consumer
        self.thread = threading.Thread(target=self.service.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)
        self.service.close()


def wait_for(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def alert_posts(standin: SlackStandin) -> Counter:
    """(alert id, revision) → how many messages carry it."""
    found: Counter = Counter()
    for message in standin.messages():
        meta = message.get("metadata") or {}
        if meta.get("event_type") == ALERT_EVENT:
            payload = meta["event_payload"]
            found[(payload["alert_id"], payload["revision"])] += 1
    return found


def test_each_revision_is_one_message_in_its_thread_routed_by_severity(
    tmp_path: Path, pubsub_project: str, standin: SlackStandin
) -> None:
    settings = settings_for(tmp_path, pubsub_project, standin)
    first, update, other = alert(1), alert(1, 1, "high", "rug-pull"), alert(2, 0, "high")
    v1_copy = (first.to_v1().to_json(), {**first.to_v1().attributes(), "v1_copy": "1"})
    with Running(settings) as running:
        publish(pubsub_project, [first], [v1_copy])
        wait_for(lambda: len(alert_posts(standin)) == 1)
        publish(pubsub_project, [update, other])
        wait_for(lambda: len(alert_posts(standin)) == 3)
        # At least once upstream: the same revisions again change nothing.
        publish(pubsub_project, [first, update, other])
        wait_for(lambda: running.consumer.counts.duplicate == 3)
    assert alert_posts(standin) == {
        (first.alert_id, 0): 1,
        (first.alert_id, 1): 1,
        (other.alert_id, 0): 1,
    }
    messages = {_key(m): m for m in standin.messages() if m.get("metadata")}
    root, reply = messages[(first.alert_id, 0)], messages[(first.alert_id, 1)]
    assert (
        root["channel_name"] == "#dexwatch-alerts"
        and "thread_ts" not in root
        or not root.get("thread_ts")
    )
    assert reply["thread_ts"] == root["ts"]
    # The root shows the thread's latest state: revision 1's kind and severity.
    assert root["updates"], "the root was not updated"
    assert root["text"].startswith("HIGH Rug pull")
    assert messages[(other.alert_id, 0)]["channel_name"] == "#pager"
    assert running.consumer.counts.skipped == 1  # the v1 copy


def test_rate_limits_server_errors_and_slow_answers_never_lose_or_double_a_post(
    tmp_path: Path, pubsub_project: str, standin: SlackStandin
) -> None:
    settings = settings_for(tmp_path, pubsub_project, standin)
    standin.inject("chat.postMessage", status=429, retry_after=2, count=2)
    standin.inject("chat.postMessage", status=503, count=2)
    standin.inject("chat.postMessage", delay_s=3.0, count=1)  # the client times out at 2 s
    alerts = [alert(n) for n in range(10, 14)]
    with Running(settings):
        publish(pubsub_project, alerts)
        wait_for(lambda: len(alert_posts(standin)) == 4, timeout_s=90)
        time.sleep(2)
    assert set(alert_posts(standin).values()) == {1}
    statuses = Counter(r["status"] for r in standin.requests() if r["method"] == "chat.postMessage")
    assert statuses[429] >= 2 and statuses[503] == 2


def test_permanent_errors_and_bad_payloads_go_to_the_dead_letter_topic_with_the_reason(
    tmp_path: Path, pubsub_project: str, standin: SlackStandin
) -> None:
    settings = settings_for(
        tmp_path, pubsub_project, standin,
        routes=[{"channel": "#nowhere", "kinds": ["depeg"]}],
    )  # fmt: skip
    lost = alert(20, kind="depeg")
    unknown_version = alert(21).to_json().replace(b'"schema_version":2', b'"schema_version":9')
    with Running(settings) as running:
        publish(pubsub_project, [lost, alert(22)], [(b"{not json", {"kind": "x"}),
                                                   (unknown_version, {"kind": "x"})])  # fmt: skip
        wait_for(lambda: running.consumer.counts.dead_lettered == 3)
        wait_for(lambda: len(alert_posts(standin)) == 1)
    letters = drain(pubsub_project, ALERTS_DLQ_SUBSCRIPTION)
    reasons = sorted(m.attributes["reason"] for m in letters)
    assert reasons == [
        "slack: Slack refused chat.postMessage: channel_not_found (channel #nowhere)",
        "unreadable alert: an alert is a JSON object",
        "unreadable alert: unknown alert schema_version 9",
    ]
    assert {m.attributes["stage"] for m in letters} == {"slack"}
    assert any(m.data == b"{not json" for m in letters)


def test_a_burst_is_one_summary_with_every_alert_in_its_thread_even_across_a_kill_9(
    tmp_path: Path, pubsub_project: str, standin: SlackStandin
) -> None:
    settings = settings_for(tmp_path, pubsub_project, standin)
    config = tmp_path / "dexwatch.yaml"
    import yaml

    config.write_text(
        yaml.safe_dump(settings.model_dump(mode="json", exclude={"local", "simulator"}))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEXWATCH_")}
    log = tmp_path / "consumer.log"

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "dexwatch", "--config", str(config), "slack", "serve"],
            env=env, stdout=log.open("a"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    burst = [alert(100 + n) for n in range(30)]
    consumer = start()
    try:
        wait_for(lambda: "slack: posting as" in log.read_text(), timeout_s=60)
        publish(pubsub_project, burst)
        wait_for(lambda: len(alert_posts(standin)) >= 8, timeout_s=60)
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(10)
        consumer = start()
        # After a kill -9 the emulator may hand messages to the dead consumer's stream for a
        # while, each back only after an ack deadline (up to 300 s late in bench/slack.py).
        wait_for(lambda: len(alert_posts(standin)) == 30, timeout_s=420)
        time.sleep(3)
    finally:
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(30)
    posts = alert_posts(standin)
    assert set(posts) == {(a.alert_id, 0) for a in burst}, log.read_text()[-2000:]
    assert set(posts.values()) == {1}
    summaries = [
        m
        for m in standin.messages()
        if (m.get("metadata") or {}).get("event_type") == "dexwatch_burst"
    ]
    assert summaries, "the burst was not grouped"
    replies = [m for m in standin.messages() if m.get("thread_ts") in {s["ts"] for s in summaries}]
    assert len(replies) >= 25
    assert processes  # the stack helpers are importable (free ports for the config)


def test_a_click_is_written_to_the_warehouse_and_shown_on_the_thread(
    tmp_path: Path, pubsub_project: str, standin: SlackStandin
) -> None:
    settings = settings_for(tmp_path, pubsub_project, standin)
    with Running(settings) as running:
        standin.interactivity_url = running.service.actions_url
        first = alert(30)
        publish(pubsub_project, [first])
        wait_for(lambda: len(alert_posts(standin)) == 1)
        (root,) = [m for m in standin.messages() if m.get("metadata")]
        status = standin.click(
            root["channel"], root["ts"], "dexwatch_confirmed", f"{first.alert_id}|0"
        )
        assert status == 200
        wait_for(
            lambda: any(
                not m.get("metadata") and m.get("thread_ts") == root["ts"]
                for m in standin.messages()
            )
        )
        wait_for(lambda: _feedback_rows(settings), timeout_s=30)
    (row,) = _feedback_rows(settings)
    assert row[:3] == (first.alert_id, "confirmed", "U0OPERATOR")
    root = next(m for m in standin.messages() if m["ts"] == root["ts"])
    assert any("confirmed an incident" in str(b) for b in root["blocks"])


def _key(message: dict) -> tuple[str, int]:
    payload = message["metadata"]["event_payload"]
    return payload["alert_id"], payload["revision"]


def _feedback_rows(settings: Settings) -> list[tuple]:
    try:
        return (
            open_warehouse(settings)
            .query("select alert_id, verdict, user_id, kind, window_start from alert_feedback")
            .rows
        )
    except Exception:  # noqa: BLE001 - not written yet
        return []


def test_slack_test_posts_a_sample_and_a_wrong_token_is_one_clear_line(
    tmp_path: Path, standin: SlackStandin
) -> None:
    good = write_config(tmp_path / "good", slack={
        "enabled": True, "local_standin": True, "standin_port": standin.port,
    })  # fmt: skip
    posted = dexwatch_cli(good, "slack", "test")
    assert posted.returncode == 0, posted.stderr
    assert "posted a sample alert to #dexwatch-alerts" in posted.stdout
    (message,) = standin.messages()
    assert message["text"].startswith("HIGH Rug pull")
    wrong = write_config(tmp_path / "wrong", slack={
        "enabled": True, "api_url": standin.url, "bot_token": "xoxb-revoked",
    })  # fmt: skip
    for command in (("slack", "test"), ("slack", "serve")):
        refused = dexwatch_cli(wrong, *command)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            "error: Slack refused auth.test: invalid_auth (check the bot token)"
        ]
        assert "xoxb-revoked" not in refused.stdout + refused.stderr


def write_config(directory: Path, **sections: dict) -> Path:
    import yaml

    directory.mkdir(parents=True)
    config = directory / "dexwatch.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(directory / ".dexwatch"), **sections}))
    return config


def test_slack_routes_prints_each_routes_pubsub_filter(tmp_path: Path) -> None:
    config = write_config(tmp_path / "routes", slack={
        "routes": [{"channel": "#pager", "severities": ["high"], "chain_ids": [1, 137]},
                   {"channel": "#depegs", "kinds": ["depeg"]}],
        "default_channel": None,
    })  # fmt: skip
    shown = dexwatch_cli(config, "slack", "routes")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        '1. #pager: attributes.severity = "high" AND '
        '(attributes.chain_id = "1" OR attributes.chain_id = "137")',
        '2. #depegs: attributes.kind = "depeg"',
        "otherwise: not posted (no default_channel)",
    ]


def test_the_emulators_push_subscription_delivers_to_the_push_endpoint(
    tmp_path: Path, pubsub_project: str, standin: SlackStandin
) -> None:
    """Production's shape: Pub/Sub pushes each alert to /pubsub/push; a 503 (Slack failing
    past the retries) brings the same message again, and it is posted once."""
    settings = settings_for(tmp_path, pubsub_project, standin)
    service = SlackService(settings, push=True)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    subscriber = pubsub_v1.SubscriberClient()
    subscriber.create_subscription(
        request={
            "name": f"projects/{pubsub_project}/subscriptions/alerts-slack-push",
            "topic": topic_path(pubsub_project, ALERTS),
            "ack_deadline_seconds": 60,
            "push_config": {"push_endpoint": f"http://127.0.0.1:{service.http.port}/pubsub/push"},
        }
    )
    try:
        # Past the 8 retries of settings_for once: the push is answered 503.
        standin.inject("chat.postMessage", status=500, count=9)
        first, second = alert(40), alert(41)
        publish(pubsub_project, [first, second])
        wait_for(lambda: len(alert_posts(standin)) == 2, timeout_s=90)
        time.sleep(3)
    finally:
        subscriber.delete_subscription(
            request={"subscription": f"projects/{pubsub_project}/subscriptions/alerts-slack-push"}
        )
        subscriber.close()
        stop.set()
        runner.join(10)
        service.close()
    assert alert_posts(standin) == {(first.alert_id, 0): 1, (second.alert_id, 0): 1}
    assert service.consumer.counts.retry >= 1  # answered 503, delivered again
