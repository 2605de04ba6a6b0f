"""The consumer's HTTP side (dexwatch.app.slack.server) against the local Slack stand-in:
signed clicks, Pub/Sub push envelopes, OIDC refusal; and the Web API client's retries."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dexwatch.app.slack.consumer import SlackConsumer
from dexwatch.app.slack.delivery import PermanentSlackError, SlackApi, TransientSlackError
from dexwatch.app.slack.ledger import PostLedger
from dexwatch.app.slack.messages import Message
from dexwatch.app.slack.samples import sample_alert
from dexwatch.app.slack.server import HttpServer, make_app
from dexwatch.core.retry import RetryPolicy
from dexwatch.core.slack_settings import STANDIN_SIGNING_SECRET, STANDIN_TOKEN, SlackSettings
from infra.local.slack_standin import SlackStandin

FAST = RetryPolicy(timeout_s=1.0, max_retries=3, backoff_base_s=0.05, backoff_max_s=0.1)


class Letters:
    """Dead letters kept in memory (the Pub/Sub topic is tested in the integration suite)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict, str]] = []

    def send(self, data: bytes, attributes: dict, reason: str) -> None:
        self.sent.append((data, dict(attributes), reason))


class NoNames:
    def lookup(self, pools: list[str]) -> dict:
        return {}


@pytest.fixture
def standin() -> Iterator[SlackStandin]:
    with SlackStandin(channels=["#dexwatch-alerts"], interval_s=0) as server:
        yield server


def consumer_for(standin: SlackStandin, tmp_path: Path) -> tuple[SlackConsumer, Letters]:
    letters = Letters()
    api = SlackApi(STANDIN_TOKEN, standin.url, FAST, channel_interval_s=0)
    settings = SlackSettings(enabled=True, local_standin=True, channel_interval_s=0)
    ledger = PostLedger(tmp_path / "posts.sqlite")
    return SlackConsumer(settings, api, ledger, letters, NoNames()), letters


@pytest.fixture
def served(standin: SlackStandin, tmp_path: Path) -> Iterator[tuple[str, SlackConsumer, Letters]]:
    consumer, letters = consumer_for(standin, tmp_path)
    http = HttpServer(make_app(consumer, STANDIN_SIGNING_SECRET), "127.0.0.1", 0).start()
    standin.interactivity_url = f"http://127.0.0.1:{http.port}/slack/actions"
    yield f"http://127.0.0.1:{http.port}", consumer, letters
    consumer.close()
    http.stop()


def envelope(data: bytes, attributes: dict[str, str]) -> dict:
    return {
        "message": {
            "data": base64.b64encode(data).decode(), "attributes": attributes,
            "messageId": "1", "publishTime": datetime.now(UTC).isoformat(),
        },
        "subscription": "projects/p/subscriptions/alerts-slack",
    }  # fmt: skip


def test_a_pushed_alert_is_posted_before_the_push_is_acknowledged(served, standin) -> None:
    url, consumer, letters = served
    alert = sample_alert(31337)
    answer = httpx.post(f"{url}/pubsub/push", json=envelope(alert.to_json(), alert.attributes()))
    assert answer.status_code == 204
    (posted,) = standin.messages()
    assert posted["metadata"]["event_payload"]["alert_id"] == alert.alert_id
    # Pushed again (Pub/Sub redelivers): acknowledged, not posted again.
    again = httpx.post(f"{url}/pubsub/push", json=envelope(alert.to_json(), alert.attributes()))
    assert again.status_code == 204 and len(standin.messages()) == 1
    bad = httpx.post(f"{url}/pubsub/push", json=envelope(b"\xff not json", {"kind": "x"}))
    assert bad.status_code == 204
    assert letters.sent[0][2] == "unreadable alert: an alert is a JSON object"
    assert httpx.post(f"{url}/pubsub/push", content=b"{}").status_code == 400
    assert consumer.counts.posted == 1 and consumer.counts.duplicate == 1


def test_a_push_slack_keeps_refusing_is_answered_503_for_redelivery(served, standin) -> None:
    url, consumer, _ = served
    standin.inject("chat.postMessage", status=500, count=FAST.attempts)
    alert = sample_alert(31337)
    answer = httpx.post(
        f"{url}/pubsub/push", json=envelope(alert.to_json(), alert.attributes()), timeout=30
    )
    assert answer.status_code == 503 and consumer.counts.retry == 1
    assert not standin.messages()
    # Redelivered once Slack is back: posted once.
    retried = httpx.post(f"{url}/pubsub/push", json=envelope(alert.to_json(), alert.attributes()))
    assert retried.status_code == 204 and len(standin.messages()) == 1


def test_push_without_a_token_for_the_audience_is_refused(standin, tmp_path: Path) -> None:
    consumer, _ = consumer_for(standin, tmp_path)
    app = make_app(consumer, None, push_audience="https://slack-consumer.example.run.app")
    http = HttpServer(app, "127.0.0.1", 0).start()
    try:
        alert = sample_alert(31337)
        url = f"http://127.0.0.1:{http.port}"
        body = envelope(alert.to_json(), alert.attributes())
        assert httpx.post(f"{url}/pubsub/push", json=body).status_code == 401
        forged = {"Authorization": "Bearer not.a.jwt"}
        assert httpx.post(f"{url}/pubsub/push", json=body, headers=forged).status_code == 401
        # No signing secret: clicks are refused, not trusted.
        assert httpx.post(f"{url}/slack/actions", content=b"payload=x").status_code == 503
        assert not standin.messages()
    finally:
        http.stop()


def test_a_signed_click_is_recorded_once_and_shown_and_a_forged_one_is_refused(
    served, standin
) -> None:
    url, consumer, _ = served
    alert = sample_alert(31337)
    httpx.post(f"{url}/pubsub/push", json=envelope(alert.to_json(), alert.attributes()))
    (root,) = standin.messages()
    status = standin.click(
        root["channel"], root["ts"], "dexwatch_not_incident", f"{alert.alert_id}|0"
    )
    assert status == 200
    ((feedback_id, row),) = consumer.ledger.unwritten_feedback()
    assert row["verdict"] == "not-incident" and row["alert_id"] == alert.alert_id
    assert row["kind"] == "rug-pull" and row["window_start"] == alert.window_start.isoformat()

    def reply_and_refreshed_root() -> bool:
        # The reply is posted first, then the root is updated: wait for both.
        messages = standin.messages()
        return len(messages) >= 2 and "operator: marked" in str(messages[0]["blocks"])

    deadline = time.monotonic() + 10
    while not reply_and_refreshed_root() and time.monotonic() < deadline:
        time.sleep(0.1)
    reply = standin.messages()[1]
    assert reply["thread_ts"] == root["ts"] and "marked not an incident" in reply["text"]
    root = standin.messages()[0]
    assert "operator: marked not an incident" in str(root["blocks"])
    forged = httpx.post(
        f"{url}/slack/actions", content=b"payload=%7B%7D",
        headers={"X-Slack-Request-Timestamp": str(int(time.time())),
                 "X-Slack-Signature": "v0=" + "0" * 64,
                 "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert forged.status_code == 401
    assert len(consumer.ledger.unwritten_feedback()) == 1


def test_the_web_api_client_waits_out_429_retries_5xx_and_stops_on_permanent_errors(
    standin,
) -> None:
    slept: list[float] = []
    api = SlackApi(STANDIN_TOKEN, standin.url, FAST, channel_interval_s=0, sleep=slept.append)
    message = Message("hello", [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}])
    standin.inject("chat.postMessage", status=429, retry_after=3)
    standin.inject("chat.postMessage", status=502, count=2)
    api.post("#dexwatch-alerts", message, find_since=time.time())
    assert slept[0] == 3.0 and len(slept) == 3  # Retry-After, then two backoffs
    standin.inject("chat.postMessage", status=503, count=FAST.attempts)
    with pytest.raises(TransientSlackError, match="failed 4 times: HTTP 503"):
        api.post("#dexwatch-alerts", message, find_since=time.time())
    with pytest.raises(PermanentSlackError, match="channel_not_found \\(channel #elsewhere\\)"):
        api.post("#elsewhere", message, find_since=time.time())
    wrong = SlackApi("xoxb-wrong", standin.url, FAST, sleep=slept.append)
    with pytest.raises(PermanentSlackError, match="invalid_auth \\(check the bot token\\)"):
        wrong.auth_test()


def test_a_post_that_timed_out_but_was_made_is_found_not_made_again(standin, tmp_path) -> None:
    consumer, _ = consumer_for(standin, tmp_path)
    # Stored 3.5 s after it was sent, long after the 1 s timeout and the first look-up.
    standin.inject("chat.postMessage", delay_s=3.5)
    alert = sample_alert(31337, datetime.now(UTC) - timedelta(seconds=5))
    from dexwatch.app.slack.consumer import Job

    started = time.monotonic()
    outcome = consumer.deliver(Job(alert, "#dexwatch-alerts", lambda _: None))
    assert outcome == "posted"
    time.sleep(max(0.0, 4.0 - (time.monotonic() - started)))  # past the slow post's landing
    assert len(standin.messages()) == 1
    record = consumer.ledger.get(alert.alert_id, 0)
    assert record.state == "posted" and record.ts == standin.messages()[0]["ts"]


def test_copies_of_an_alert_in_a_burst_are_posted_once(standin, tmp_path: Path) -> None:
    from dexwatch.app.slack.consumer import SlackConsumer

    api = SlackApi(STANDIN_TOKEN, standin.url, FAST, channel_interval_s=0.5)
    settings = SlackSettings(enabled=True, local_standin=True, burst_threshold=5)
    consumer = SlackConsumer(settings, api, PostLedger(tmp_path / "p.sqlite"), Letters(), NoNames())
    outcomes: list[str] = []
    alerts = [sample_alert(31337).model_copy(update={"alert_id": f"a{n}"}) for n in range(6)]
    consumer.submit(alerts[0].to_json(), alerts[0].attributes(), outcomes.append)
    time.sleep(0.1)  # a0 is posted; the rest wait for the channel's turn, a1 twice
    for alert in [*alerts[1:], alerts[1]]:
        consumer.submit(alert.to_json(), alert.attributes(), outcomes.append)
    deadline = time.monotonic() + 30
    while len(outcomes) < 7 and time.monotonic() < deadline:
        time.sleep(0.1)
    consumer.close()
    assert sorted(outcomes) == ["duplicate"] + ["posted"] * 6
    posts = [m["metadata"]["event_payload"] for m in standin.messages() if m.get("metadata")]
    alert_posts = [p["alert_id"] for p in posts if "alert_id" in p]
    assert sorted(alert_posts) == [f"a{n}" for n in range(6)]
    (summary,) = [p for p in posts if "alert_ids" in p]
    assert summary["alert_ids"] == ["a1", "a2", "a3", "a4", "a5"]


def test_healthz_reports_the_outcomes(served) -> None:
    url, consumer, _ = served
    alert = sample_alert(31337)
    httpx.post(f"{url}/pubsub/push", json=envelope(alert.to_json(), alert.attributes()))
    health = httpx.get(f"{url}/healthz").json()
    assert health == {
        "posted": 1, "duplicate": 0, "skipped": 0, "dead_lettered": 0, "retry": 0, "bursts": 0
    }  # fmt: skip
