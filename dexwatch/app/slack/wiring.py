"""What the consumer is built from: credentials, the dead-letter topic, pool names.

Secrets come from the environment (``DEXWATCH_SLACK__BOT_TOKEN``,
``DEXWATCH_SLACK__SIGNING_SECRET``) or Secret Manager (``slack.*_secret``); with
``slack.local_standin`` the stand-in's own. They are held by the clients only, never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from google.cloud import pubsub_v1

from dexwatch.app.slack.consumer import SlackConsumer
from dexwatch.app.slack.delivery import SlackApi
from dexwatch.app.slack.ledger import PostLedger
from dexwatch.app.slack.messages import PoolInfo
from dexwatch.core.errors import UsageError
from dexwatch.core.schemas.topics import ALERTS_DLQ, topic_path
from dexwatch.core.secrets import resolve_secret
from dexwatch.core.settings import Settings
from dexwatch.core.slack_settings import STANDIN_SIGNING_SECRET, STANDIN_TOKEN
from dexwatch.core.warehouse import open_reader

log = logging.getLogger("dexwatch.slack")
_POOL_REFRESH_S = 60.0


@dataclass(frozen=True)
class Credentials:
    api_url: str
    bot_token: str
    signing_secret: str | None


def credentials(settings: Settings) -> Credentials:
    slack = settings.slack
    if slack.local_standin:
        return Credentials(slack.standin_url(), STANDIN_TOKEN, STANDIN_SIGNING_SECRET)
    token = resolve_secret(slack.bot_token, slack.bot_token_secret, "the Slack bot token")
    if token is None:
        raise UsageError(
            "Slack needs a bot token: set DEXWATCH_SLACK__BOT_TOKEN or slack.bot_token_secret"
        )
    signing = resolve_secret(
        slack.signing_secret, slack.signing_secret_secret, "the Slack signing secret"
    )
    return Credentials(slack.api_url, token, signing)


def build_consumer(settings: Settings, api: SlackApi | None = None) -> SlackConsumer:
    """The consumer of ``settings`` (its API client made from the credentials unless given)."""
    if api is None:
        creds = credentials(settings)
        api = SlackApi(
            creds.bot_token, creds.api_url, settings.slack.retry, settings.slack.channel_interval_s
        )
    return SlackConsumer(
        settings.slack,
        api,
        PostLedger(settings.slack_ledger_path),
        PubSubDeadLetters(settings),
        WarehousePoolNames(settings),
        settings.chains,
    )


def check_auth(api: SlackApi) -> str:
    """Who the token is (one line), or a one-line SlackError."""
    answer = api.auth_test()
    return f"{answer.get('user', '?')} in {answer.get('team', '?')}"


class PubSubDeadLetters:
    """The ``alerts-dlq`` topic: the message as received, its attributes and the reason."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._publisher: pubsub_v1.PublisherClient | None = None
        self._lock = threading.Lock()

    def send(self, data: bytes, attributes: Mapping[str, str], reason: str) -> None:
        """Returns once the topic holds it; raises when it does not."""
        with self._lock:
            if self._publisher is None:
                self._publisher = pubsub_v1.PublisherClient()
            publisher = self._publisher
        letter = {**attributes, "reason": reason[:1024], "stage": "slack"}
        path = topic_path(self.settings.pubsub.project, ALERTS_DLQ)
        publisher.publish(path, data, **letter).result(self.settings.pubsub.publish_timeout_s)


class WarehousePoolNames:
    """Pairs and fee tiers from the warehouse's ``pools`` table, with the symbols of the
    market section; read again at most once a minute when a pool is missing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.symbols = {a.address: a.symbol for a in settings.markets.assets}
        self._known: dict[str, PoolInfo] = {}
        self._read_at = 0.0

    def lookup(self, pools: list[str]) -> dict[str, PoolInfo]:
        missing = [p for p in pools if p not in self._known]
        if missing and time.monotonic() - self._read_at > _POOL_REFRESH_S:
            self._read_at = time.monotonic()
            self._read()
        return {p: self._known[p] for p in pools if p in self._known}

    def _read(self) -> None:
        chains = ", ".join(str(int(chain.chain_id)) for chain in self.settings.chains)
        result = open_reader(self.settings).query(
            f"select pool, token0, token1, fee from pools where chain_id in ({chains})"
        )
        for pool, token0, token1, fee in result.rows:
            pair = f"{self._symbol(token0)}/{self._symbol(token1)}"
            self._known[pool] = PoolInfo(pair, fee)

    def _symbol(self, token: str) -> str:
        return self.symbols.get(token, f"{token[:6]}…")
