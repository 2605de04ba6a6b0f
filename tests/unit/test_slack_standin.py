"""The local stand-in for the Slack Web API (infra.local.slack_standin), driven by the client
dexwatch uses, slack_sdk's WebClient: messages, threads and edits read back, Slack's rate
limit and errors as slack_sdk's retry handlers see them, paging, signed button clicks, the
admin surface and the command line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qs
from urllib.request import Request, urlopen

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier

from dexwatch.core.slack_settings import STANDIN_SIGNING_SECRET, STANDIN_TOKEN
from infra.local.slack_standin import SlackStandin, SlackStandinClient

ROOT = Path(__file__).resolve().parents[2]
ALERTS = "#dexwatch-alerts"


@pytest.fixture
def standin() -> Iterator[SlackStandin]:
    with SlackStandin(channels=[ALERTS, "#dexwatch-ops"], interval_s=0) as running:
        yield running


def client(standin: SlackStandin, **kwargs: Any) -> WebClient:
    kwargs.setdefault("retry_handlers", [])
    return WebClient(token=STANDIN_TOKEN, base_url=standin.url, **kwargs)


def slack_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as raised:
        call()
    return raised.value


def error_of(call: Any) -> str:
    return slack_error(call).response["error"]


def test_posts_replies_and_edits_read_back_with_their_metadata(standin: SlackStandin) -> None:
    slack = client(standin)
    metadata = {"event_type": "dexwatch_alert", "event_payload": {"alert_id": "a-1"}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*pool drained*"}}]
    root = slack.chat_postMessage(
        channel=ALERTS, text="pool drained", blocks=blocks, metadata=metadata
    )
    alerts_id = standin.channels[ALERTS]
    assert root["channel"] == alerts_id and re.fullmatch(r"C0[0-9A-F]+", alerts_id)
    assert re.fullmatch(r"\d{10}\.\d{6}", root["ts"])
    reply = slack.chat_postMessage(channel=alerts_id, text="details", thread_ts=root["ts"])
    assert float(reply["ts"]) > float(root["ts"])
    slack.chat_update(channel=ALERTS, ts=root["ts"], text="pool drained (acknowledged)")

    history = slack.conversations_history(channel=ALERTS, include_all_metadata=True)
    assert [m["ts"] for m in history["messages"]] == [root["ts"]]  # replies stay in the thread
    top = history["messages"][0]
    assert top["text"] == "pool drained (acknowledged)" and top["blocks"] == blocks
    assert top["metadata"] == metadata and top["reply_count"] == 1 and "edited" in top
    bare = slack.conversations_history(channel=ALERTS)["messages"][0]
    assert "metadata" not in bare

    thread = slack.conversations_replies(channel=ALERTS, ts=root["ts"], include_all_metadata=True)
    assert [m["ts"] for m in thread["messages"]] == [root["ts"], reply["ts"]]
    assert thread["messages"][1]["thread_ts"] == root["ts"]
    assert thread["messages"][0]["metadata"] == metadata

    stored = standin.messages(ALERTS)
    assert [m["ts"] for m in stored] == [root["ts"], reply["ts"]]
    assert stored[0]["channel"] == alerts_id and stored[0]["channel_name"] == ALERTS
    assert stored[0]["updates"][0]["text"] == "pool drained" and stored[0]["reply_count"] == 1
    assert stored[1]["thread_ts"] == root["ts"] and standin.messages("#dexwatch-ops") == []
    link = slack.chat_getPermalink(channel=ALERTS, message_ts=root["ts"])["permalink"]
    assert link == f"{standin.admin_url}/archives/{alerts_id}/p{root['ts'].replace('.', '')}"


def test_the_channel_rate_limit_answers_429_that_slack_sdk_waits_out() -> None:
    with SlackStandin(channels=[ALERTS], interval_s=1.0) as standin:
        plain = client(standin)
        first = plain.chat_postMessage(channel=ALERTS, text="first")
        limited = slack_error(lambda: plain.chat_postMessage(channel=ALERTS, text="too soon"))
        assert limited.response.status_code == 429
        assert limited.response["error"] == "ratelimited"
        assert int(limited.response.headers["Retry-After"]) >= 1
        assert [m["text"] for m in standin.messages()] == ["first"]

        already = len(standin.requests())
        patient = client(standin, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)])
        patient.chat_postMessage(channel=ALERTS, text="second")
        patient.chat_postMessage(channel=ALERTS, text="third")
        posted = standin.messages(ALERTS)
        assert [m["text"] for m in posted] == ["first", "second", "third"]
        retried = [r["status"] for r in standin.requests()[already:]]
        assert 429 in retried and retried.count(200) == 2  # limited, waited, then accepted
        accepted = [r["at"] for r in standin.requests() if r["status"] == 200]
        assert all(b - a >= 0.9 for a, b in zip(accepted, accepted[1:], strict=False))
        # Other methods are not limited.
        plain.chat_update(channel=ALERTS, ts=first["ts"], text="first, edited")


def test_a_wrong_token_and_an_unknown_channel_are_slack_errors(standin: SlackStandin) -> None:
    wrong = WebClient(token="xoxb-not-the-token", base_url=standin.url, retry_handlers=[])
    assert slack_error(lambda: wrong.auth_test()).response["error"] == "invalid_auth"
    nobody = WebClient(base_url=standin.url, retry_handlers=[])
    assert slack_error(lambda: nobody.auth_test()).response["error"] == "not_authed"
    slack = client(standin)
    error = slack_error(lambda: slack.chat_postMessage(channel="#elsewhere", text="hello"))
    assert error.response.status_code == 200 and error.response["error"] == "channel_not_found"
    assert slack.auth_test()["user_id"]
    errors = [r.get("error") for r in standin.requests()]
    assert errors == ["invalid_auth", "not_authed", "channel_not_found", None]


def test_arguments_are_checked_as_slack_does(standin: SlackStandin) -> None:
    slack = client(standin)
    root = slack.chat_postMessage(channel=ALERTS, text="root")["ts"]
    post = slack.chat_postMessage
    empty = {"channel": ALERTS, "text": ""}
    assert error_of(lambda: slack.api_call("chat.postMessage", json=empty)) == "no_text"
    many = [{"type": "divider"}] * 51
    assert error_of(lambda: post(channel=ALERTS, text="x", blocks=many)) == "invalid_blocks"
    untyped = [{"text": "no type"}]
    assert error_of(lambda: post(channel=ALERTS, text="x", blocks=untyped)) == "invalid_blocks"
    elsewhere = "#dexwatch-ops"  # root is not a message of this channel
    assert error_of(lambda: post(channel=elsewhere, text="x", thread_ts=root)) == (
        "thread_not_found"
    )
    unknown_ts = "1.000001"
    assert error_of(lambda: slack.chat_update(channel=ALERTS, ts=unknown_ts, text="x")) == (
        "message_not_found"
    )
    assert error_of(lambda: slack.conversations_replies(channel=ALERTS, ts=unknown_ts)) == (
        "thread_not_found"
    )
    unknown = slack_error(lambda: slack.api_call("chat.nonsense"))
    assert unknown.response.status_code == 404 and unknown.response["error"] == "unknown_method"
    # Form-encoded arguments, blocks as JSON text, are accepted as Slack does.
    form = {"channel": "dexwatch-alerts", "text": "x", "blocks": '[{"type": "divider"}]'}
    answer = slack.api_call("chat.postMessage", data=form)
    assert answer["message"]["blocks"] == [{"type": "divider"}]
    assert [m["ts"] for m in standin.messages()] == [root, answer["ts"]]


def test_an_injected_server_error_is_retried_by_slack_sdk(standin: SlackStandin) -> None:
    standin.inject("chat.postMessage", status=500)
    plain = client(standin)
    failed = slack_error(lambda: plain.chat_postMessage(channel=ALERTS, text="x"))
    assert failed.response.status_code == 500
    standin.inject("chat.postMessage", status=500, count=2)
    retrying = client(standin, retry_handlers=[ServerErrorRetryHandler(max_retry_count=2)])
    assert retrying.chat_postMessage(channel=ALERTS, text="through")["ok"]
    statuses = [r["status"] for r in standin.requests()]
    assert statuses == [500, 500, 500, 200]
    assert [m["text"] for m in standin.messages()] == ["through"]


def test_faults_take_their_turn_by_method_and_channel(standin: SlackStandin) -> None:
    slack = client(standin)
    ops = standin.channels["#dexwatch-ops"]
    standin.inject("chat.postMessage", error="channel_not_found", channel="#dexwatch-ops")
    standin.inject("chat.postMessage", status=429, retry_after=7, count=2)
    # A post to the alerts channel passes over the ops fault and meets the 429.
    limited = slack_error(lambda: slack.chat_postMessage(channel=ALERTS, text="a"))
    assert limited.response.status_code == 429
    assert limited.response.headers["Retry-After"] == "7"
    assert slack.auth_test()["ok"]  # other methods are untouched
    assert error_of(lambda: slack.chat_postMessage(channel=ops, text="b")) == "channel_not_found"
    assert error_of(lambda: slack.chat_postMessage(channel=ops, text="c")) == "ratelimited"
    assert slack.chat_postMessage(channel=ops, text="d")["ok"]
    assert [m["text"] for m in standin.messages()] == ["d"]
    faulty = [r.get("fault", False) for r in standin.requests()]
    assert faulty == [True, False, True, True, False]


def test_a_slow_answer_times_the_client_out(standin: SlackStandin) -> None:
    standin.inject("auth.test", delay_s=3.0)
    impatient = client(standin, timeout=1)
    with pytest.raises((TimeoutError, URLError)):
        impatient.auth_test()
    assert impatient.auth_test()["ok"]  # the fault is spent


def test_history_pages_with_limit_and_cursor(standin: SlackStandin) -> None:
    slack = client(standin)
    posted = [slack.chat_postMessage(channel=ALERTS, text=f"m{i}")["ts"] for i in range(5)]
    slack.chat_postMessage(channel=ALERTS, text="in a thread", thread_ts=posted[0])
    pages, cursor = [], None
    while True:
        page = slack.conversations_history(channel=ALERTS, limit=2, cursor=cursor)
        pages.append([m["ts"] for m in page["messages"]])
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] == bool(cursor)
        if not cursor:
            break
    assert pages == [posted[4:2:-1], posted[2:0:-1], posted[:1]]
    window = slack.conversations_history(channel=ALERTS, oldest=posted[1], latest=posted[4])
    assert [m["ts"] for m in window["messages"]] == [posted[3], posted[2]]
    inclusive = slack.conversations_history(
        channel=ALERTS, oldest=posted[1], latest=posted[4], inclusive=True
    )
    assert [m["ts"] for m in inclusive["messages"]] == posted[4:0:-1]
    bad = slack_error(lambda: slack.conversations_history(channel=ALERTS, cursor="nonsense"))
    assert bad.response["error"] == "invalid_cursor"


class _Receiver(BaseHTTPRequestHandler):
    """Keeps what it receives and answers 200, as an app's interactivity endpoint."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"body": body, "headers": dict(self.headers.items())})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/slack/actions", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_click_is_a_signed_block_actions_payload(
    standin: SlackStandin, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    standin.interactivity_url = url
    slack = client(standin)
    button = {"type": "button", "action_id": "ack", "value": "a-1",
              "text": {"type": "plain_text", "text": "Ack"}}  # fmt: skip
    buttons = {"type": "actions", "block_id": "alert-buttons", "elements": [button]}
    metadata = {"event_type": "dexwatch_alert", "event_payload": {"alert_id": "a-1"}}
    root = slack.chat_postMessage(channel=ALERTS, text="alert", blocks=[buttons], metadata=metadata)

    assert standin.click(ALERTS, root["ts"], "ack", "a-1", user_id="U0ALICE") == 200
    (click,) = received
    headers = {k.lower(): v for k, v in click["headers"].items()}
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    verifier = SignatureVerifier(STANDIN_SIGNING_SECRET)
    assert verifier.is_valid(
        click["body"], headers["x-slack-request-timestamp"], headers["x-slack-signature"]
    )
    assert not SignatureVerifier("another-secret").is_valid(
        click["body"], headers["x-slack-request-timestamp"], headers["x-slack-signature"]
    )
    payload = json.loads(parse_qs(click["body"].decode())["payload"][0])
    assert payload["type"] == "block_actions" and payload["user"]["id"] == "U0ALICE"
    (action,) = payload["actions"]
    fields = (action["action_id"], action["block_id"], action["value"], action["type"])
    assert fields == ("ack", "alert-buttons", "a-1", "button")
    assert payload["container"]["message_ts"] == root["ts"]
    assert payload["channel"] == {"id": root["channel"], "name": "dexwatch-alerts"}
    message = payload["message"]
    assert (message["ts"], message["text"], message["blocks"]) == (root["ts"], "alert", [buttons])
    assert message["metadata"] == metadata

    # The app answers on response_url: replace_original edits the message, recorded.
    replace = json.dumps({"replace_original": True, "text": "acked"}).encode()
    request = Request(
        payload["response_url"],
        method="POST",
        data=replace,
        headers={"Content-Type": "application/json"},
    )
    with urlopen(request, timeout=5) as answer:
        assert json.loads(answer.read()) == {"ok": True}
    assert standin.messages()[0]["text"] == "acked"
    assert standin.requests()[-1]["method"] == "response_url"
    assert standin.requests()[-1]["body"]["text"] == "acked"


def test_other_processes_drive_it_through_the_admin_surface(
    standin: SlackStandin, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    admin = SlackStandinClient(standin.url)
    slack = client(standin)
    admin.inject("chat.postMessage", error="invalid_auth")
    assert error_of(lambda: slack.chat_postMessage(channel=ALERTS, text="x")) == "invalid_auth"
    ts = slack.chat_postMessage(channel=ALERTS, text="y")["ts"]
    assert [m["ts"] for m in admin.messages(ALERTS)] == [ts]
    assert admin.messages("#unknown") == []
    assert [r.get("error") for r in admin.requests()] == ["invalid_auth", None]
    standin.interactivity_url = receiver[0]
    assert admin.click(ALERTS, ts, "ack", "1") == 200 and len(receiver[1]) == 1
    admin.reset()
    assert admin.messages() == [] and admin.requests() == []


def test_the_command_line_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "infra.local.slack_standin", "--port", "0",
               "--channel", "#a", "--channel", "#b", "--interval-s", "1.0"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"(http://\S+/api/)", line)
        assert found, line or process.communicate(timeout=10)[1]
        slack = WebClient(token=STANDIN_TOKEN, base_url=found.group(1), retry_handlers=[])
        assert slack.auth_test()["ok"]
        assert slack.chat_postMessage(channel="#b", text="hello")["ok"]
        assert SlackStandinClient(found.group(1)).messages("#b")[0]["text"] == "hello"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert process.stdout.read() == ""  # one line, and only one
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
