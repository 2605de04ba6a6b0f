"""The slack section of the configuration: where alerts are posted, with which credentials,
and how fast (``dexwatch slack serve``, dexwatch.app.slack)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from dexwatch.core.chain_settings import ChainSettings, describe_chain
from dexwatch.core.retry import RetryPolicy, over_field_default
from dexwatch.core.settings_base import StrictModel, redact_url, secret_version

SLACK_API_URL = "https://slack.com/api/"
# The bot token and signing secret of the local stand-in (infra.local.slack_standin): not
# secrets, they open nothing but a server on 127.0.0.1.
STANDIN_TOKEN = "xoxb-dexwatch-local-standin"
STANDIN_SIGNING_SECRET = "dexwatch-local-signing-secret"


class SlackRoute(StrictModel):
    """Alerts whose attributes match go to ``channel``; an empty list matches any value.
    The same rule is the Pub/Sub subscription filter of a push subscription per route
    (``pubsub_filter``), so production can route before the consumer sees a message."""

    channel: str = Field(min_length=1)
    severities: list[str] = Field(default_factory=list)
    chain_ids: list[int] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)

    @field_validator("severities")
    @classmethod
    def _severities(cls, values: list[str]) -> list[str]:
        unknown = set(values) - {"low", "medium", "high"}
        if unknown:
            raise ValueError(f"unknown severities {sorted(unknown)}: low, medium or high")
        return values

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return all(
            not wanted or attributes.get(key) in {str(v) for v in wanted}
            for key, wanted in self._conditions()
        )

    def pubsub_filter(self) -> str:
        """The Pub/Sub filter expression of this route (empty: every message)."""
        clauses = []
        for key, wanted in self._conditions():
            if wanted:
                options = " OR ".join(f'attributes.{key} = "{v}"' for v in wanted)
                clauses.append(f"({options})" if len(wanted) > 1 else options)
        return " AND ".join(clauses)

    def _conditions(self) -> list[tuple[str, list]]:
        return [("severity", self.severities), ("chain_id", self.chain_ids), ("kind", self.kinds)]


class SlackSettings(StrictModel):
    # Off: `dexwatch run` starts no consumer and `dexwatch slack serve` refuses to start.
    enabled: bool = False
    # The local stand-in of the Web API (infra.local.slack_standin) instead of Slack: started
    # by `dexwatch local up`, with its own token and signing secret.
    local_standin: bool = False
    standin_port: int = Field(8093, ge=1, le=65535)
    # The Web API's base URL (slack_sdk's base_url, with its trailing slash).
    api_url: str = SLACK_API_URL
    # From DEXWATCH_SLACK__BOT_TOKEN, or a Secret Manager version (projects/P/secrets/S/versions/V).
    bot_token: SecretStr | None = None
    bot_token_secret: str | None = None
    # Verifies the button clicks Slack sends (DEXWATCH_SLACK__SIGNING_SECRET or Secret Manager).
    signing_secret: SecretStr | None = None
    signing_secret_secret: str | None = None
    # First matching route wins; alerts no route takes go to default_channel (none: acked
    # unposted, and counted).
    routes: list[SlackRoute] = Field(default_factory=list)
    default_channel: str | None = "#dexwatch-alerts"
    # Links: the dashboard (its pool page gets ?pool=), and block explorers by chain id
    # beside the known ones (a chain with neither gets no explorer links).
    dashboard_url: str | None = None
    explorers: dict[int, str] = Field(default_factory=dict)
    # The consumer's HTTP server: button clicks (/slack/actions) and, in production, the
    # Pub/Sub push endpoint (/pubsub/push). Cloud Run's $PORT overrides the port.
    host: str = "127.0.0.1"
    port: int = Field(8092, ge=0, le=65535)
    # Push requests carry an OIDC token from this service account, for this audience (the
    # service's URL); empty: not verified (only for the loopback emulator push).
    push_audience: str = ""
    push_service_account: str = ""
    # Slack allows about one message a second per channel; posts are spaced this much.
    channel_interval_s: float = Field(1.05, ge=0)
    # This many new alerts waiting for one channel at once are one summary message, each
    # alert a reply in its thread.
    burst_threshold: int = Field(5, ge=2)
    # The Web API calls: timeout, retries of 429 (after Retry-After), 5xx and timeouts.
    retry: RetryPolicy = RetryPolicy(
        timeout_s=10.0, max_retries=8, backoff_base_s=0.5, backoff_max_s=30.0
    )
    # The durable record of what was posted; empty means <state_dir>/slack/posts.sqlite.
    ledger_path: Path | None = None
    # After a crash, a post not in the record is looked up in its channel this far back.
    lookup_horizon_s: float = Field(86400.0, gt=0)

    _retry = field_validator("retry", mode="before")(over_field_default)

    @field_validator("api_url", "dashboard_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"must be an http(s) URL: {redact_url(url)}")
        return url

    @field_validator("api_url")
    @classmethod
    def _trailing_slash(cls, url: str) -> str:
        return url if url.endswith("/") else url + "/"

    _secret_version = field_validator("bot_token_secret", "signing_secret_secret")(secret_version)

    @model_validator(mode="after")
    def _credentials(self) -> SlackSettings:
        if not self.enabled or self.local_standin:
            return self
        if self.bot_token is None and self.bot_token_secret is None:
            raise ValueError(
                "slack.enabled needs a bot token: set DEXWATCH_SLACK__BOT_TOKEN or "
                "slack.bot_token_secret (or slack.local_standin for the local stand-in)"
            )
        if not self.routes and self.default_channel is None:
            raise ValueError("slack.enabled with no routes and no default_channel posts nothing")
        return self

    def explorer(self, chain_id: int, chains: Iterable[ChainSettings] = ()) -> str | None:
        """A chain's block explorer: this section's for it, else the chain's own (as
        configured in ``chains``, else as known)."""
        return self.explorers.get(chain_id) or describe_chain(chain_id, chains).explorer_url

    def channel_for(self, attributes: Mapping[str, str]) -> str | None:
        """The channel of an alert with these message attributes (None: not posted)."""
        for route in self.routes:
            if route.matches(attributes):
                return route.channel
        return self.default_channel

    def channels(self) -> list[str]:
        """Every channel an alert can go to."""
        found = [r.channel for r in self.routes]
        if self.default_channel:
            found.append(self.default_channel)
        return list(dict.fromkeys(found))

    def standin_url(self) -> str:
        return f"http://127.0.0.1:{self.standin_port}/api/"
