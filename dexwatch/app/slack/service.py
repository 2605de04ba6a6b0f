"""``dexwatch slack serve``: the consumer with its HTTP server, fed by a pull subscriber
(locally) or by Pub/Sub push (Cloud Run), until stopped.

Acked only when settled: a message is acknowledged after its post is recorded or after it
is on the dead-letter topic; a transient failure nacks it, and a killed consumer's messages
come back after their ack deadline. The ledger makes the second delivery a no-op.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from google.cloud import pubsub_v1

from dexwatch.app.slack.consumer import Outcome, SlackConsumer
from dexwatch.app.slack.feedback import FeedbackWriter
from dexwatch.app.slack.server import HttpServer, make_app
from dexwatch.app.slack.wiring import build_consumer, check_auth, credentials
from dexwatch.core.errors import UsageError
from dexwatch.core.schemas.topics import ALERTS_SLACK_SUBSCRIPTION, subscription_path
from dexwatch.core.settings import Settings
from dexwatch.core.warehouse import open_warehouse

log = logging.getLogger("dexwatch.slack")


class SlackService:
    """The consumer, its HTTP server and its feedback writer, started; ``run`` feeds it
    until stopped, ``close`` stops it all.

    Args:
        settings: the whole configuration (slack, pubsub, warehouse, state_dir).
        push: alerts come by Pub/Sub push to /pubsub/push (Cloud Run) instead of pull.
    """

    def __init__(self, settings: Settings, push: bool = False) -> None:
        if not settings.slack.enabled:
            raise UsageError("slack.enabled is false: set it (and a token) to post alerts to Slack")
        self.settings = settings
        self.push = push
        creds = credentials(settings)
        self.consumer = build_consumer(settings)
        self.who = check_auth(self.consumer.api)
        slack = settings.slack
        port = int(os.environ.get("PORT", slack.port)) if push else slack.port
        app = make_app(
            self.consumer, creds.signing_secret, slack.push_audience, slack.push_service_account
        )
        self.http = HttpServer(app, slack.host, port).start()
        self.writer = FeedbackWriter(self.consumer, lambda: open_warehouse(settings))
        self.writer.start()

    @property
    def actions_url(self) -> str:
        return f"http://{self.settings.slack.host}:{self.http.port}/slack/actions"

    def describe(self) -> str:
        mode = "push on /pubsub/push" if self.push else f"pulling {ALERTS_SLACK_SUBSCRIPTION}"
        return f"slack: posting as {self.who}; {mode}; clicks on {self.actions_url}"

    def run(self, stop: threading.Event) -> None:
        if self.push:
            stop.wait()
        else:
            pull(self.consumer, self.settings.pubsub.project, stop)

    def close(self) -> None:
        self.consumer.close()
        self.writer.stop.set()
        self.writer.join(timeout=10)
        self.http.stop()
        self.consumer.ledger.close()


def serve(
    settings: Settings,
    stop: threading.Event,
    push: bool = False,
    on_ready: Callable[[str], None] = print,
) -> SlackConsumer:
    """Run the consumer until ``stop`` is set; returns it (with its counts)."""
    service = SlackService(settings, push)
    on_ready(service.describe())
    try:
        service.run(stop)
    finally:
        service.close()
    return service.consumer


def pull(consumer: SlackConsumer, project: str, stop: threading.Event) -> None:
    """Feed ``consumer`` from the alerts-slack subscription until ``stop`` is set."""
    subscriber = pubsub_v1.SubscriberClient()
    path = subscription_path(project, ALERTS_SLACK_SUBSCRIPTION)

    def on_message(message: pubsub_v1.subscriber.message.Message) -> None:
        def done(outcome: Outcome) -> None:
            if outcome == "retry":
                message.nack()
            else:
                message.ack()

        consumer.submit(message.data, dict(message.attributes), done)

    flow = pubsub_v1.types.FlowControl(max_messages=1000)
    future = subscriber.subscribe(path, on_message, flow_control=flow)
    try:
        while not stop.wait(0.5):
            if future.done():  # the stream ended on an error: say which
                future.result()
    finally:
        future.cancel()
        try:
            future.result(timeout=10)
        except Exception:  # noqa: BLE001, S110 - cancelled on purpose
            pass
        subscriber.close()
