"""`dexwatch publish subgraph`'s section: the subgraphs read, where and how often."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from dexwatch.core.retry import RetryPolicy, over_field_default
from dexwatch.core.settings_base import (
    Dex,
    Protocol,
    StrictModel,
    cron_expression,
    normalize_address,
    redact_url,
    secret_version,
)


class SubgraphSource(StrictModel):
    """One subgraph the subgraph publisher reads: which dex it indexes, its entity schema,
    and its id on The Graph's network (a subgraph id, or a deployment id)."""

    dex: Dex
    # v3: Uniswap V3's PoolHourData; v2: PairHourData of Uniswap V2 and SushiSwap subgraphs.
    protocol: Protocol
    subgraph_id: str | None = None
    deployment_id: str | None = None
    # Pool (pair) addresses; empty means the subgraph's top subgraph.top_n pools by TVL.
    pools: list[str] = Field(default_factory=list)
    # V2 only: the pair's swap fee, for fees_usd (PairHourData has no fee figure).
    swap_fee: float = Field(0.003, ge=0, lt=1)

    @field_validator("pools")
    @classmethod
    def _addresses(cls, pools: list[str]) -> list[str]:
        return [normalize_address(pool) for pool in pools]

    @model_validator(mode="after")
    def _one_id(self) -> SubgraphSource:
        if (self.subgraph_id is None) == (self.deployment_id is None):
            raise ValueError("give exactly one of subgraph_id and deployment_id")
        for value in (self.subgraph_id, self.deployment_id):
            if value is not None and not re.fullmatch(r"[A-Za-z0-9]{10,100}", value):
                raise ValueError(f"not a subgraph or deployment id: {value!r}")
        return self

    @property
    def path(self) -> str:
        """The subgraph's path below the gateway (or a graph-node style endpoint)."""
        if self.subgraph_id is not None:
            return f"subgraphs/id/{self.subgraph_id}"
        return f"deployments/id/{self.deployment_id}"


def _default_subgraph_sources() -> list[SubgraphSource]:
    return [
        # Uniswap's documented Ethereum mainnet subgraph.
        SubgraphSource(
            dex="uniswap_v3",
            protocol="v3",
            subgraph_id="5zvR82QoaXYFyDEKLZ9t6v9adgnptxYpKpSbxtgVENFV",
        ),
        # SushiSwap V2 on mainnet, known only by its deployment id.
        SubgraphSource(
            dex="sushiswap",
            protocol="v2",
            deployment_id="QmQ2h69a3vnE6N3TN7Ys9K1vpjYiJSi8fexnj1pWpRc6uY",
        ),
    ]


class SubgraphSettings(StrictModel):
    """`dexwatch publish subgraph`: hourly pool statistics from The Graph to pool-hourly."""

    # Queries go to {gateway_url}/{api_key}/{subgraphs|deployments}/id/{id}.
    gateway_url: str = "https://gateway.thegraph.com/api"
    # From DEXWATCH_SUBGRAPH__API_KEY; never logged.
    api_key: SecretStr | None = None
    # Or a Secret Manager version holding it: projects/P/secrets/S/versions/V.
    api_key_secret: str | None = None
    # A graph-node style endpoint without API key, {endpoint_url}/subgraphs/id/{id}, used
    # instead of the gateway when set: the local stand-in by default; null in production.
    endpoint_url: str | None = "http://127.0.0.1:8000"
    sources: list[SubgraphSource] = Field(default_factory=_default_subgraph_sources, min_length=1)
    top_n: int = Field(20, ge=1, le=1000)
    # Cron expression (UTC) of the passes when running on its own.
    schedule: str = "0 * * * *"
    # Rows per query; The Graph refuses more than 1000.
    page_size: int = Field(1000, ge=1, le=1000)
    # Hours fetched, published and checkpointed together when catching up.
    hours_per_batch: int = Field(24, ge=1)
    # A first run (no checkpoint) starts this many complete hours back.
    first_run_hours: int = Field(24, ge=1)
    # After a scheduled time, while the subgraphs have not indexed past the hour that ended,
    # look again this often; `--once` gives up after catch_up_wait_s.
    lag_poll_s: float = Field(30.0, gt=0)
    catch_up_wait_s: float = Field(300.0, ge=0)
    # The GraphQL queries: timeout, and retries of transient failures (429, 5xx, timeouts,
    # GraphQL errors that do not say the query is wrong).
    retry: RetryPolicy = RetryPolicy(
        timeout_s=30.0, max_retries=5, backoff_base_s=0.5, backoff_max_s=30.0
    )
    # Empty means <state_dir>/checkpoints/subgraph-<chain_id>.json
    checkpoint_path: Path | None = None

    _retry = field_validator("retry", mode="before")(over_field_default)

    @field_validator("gateway_url", "endpoint_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"must be an http(s) URL: {redact_url(url)}")
        return url.rstrip("/") if url else url

    _secret_version = field_validator("api_key_secret")(secret_version)

    _cron = field_validator("schedule")(cron_expression)

    @model_validator(mode="after")
    def _key_for_the_gateway(self) -> SubgraphSettings:
        if self.endpoint_url is None and self.api_key is None and self.api_key_secret is None:
            raise ValueError(
                "the gateway needs an API key: set DEXWATCH_SUBGRAPH__API_KEY or "
                "subgraph.api_key_secret (or subgraph.endpoint_url for a keyless endpoint)"
            )
        return self
