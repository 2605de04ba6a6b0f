"""The chain publisher's section of the configuration: the chain, its RPC nodes, the
factories whose pools are followed and which of those pools (``PoolFilter``)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from dexwatch.core.market_settings import AssetConfig
from dexwatch.core.retry import RetryPolicy, over_field_default
from dexwatch.core.schemas.topics import POOL_EVENTS, chain_topic
from dexwatch.core.settings_base import Dex, Protocol, StrictModel, normalize_address, redact_url
from dexwatch.core.subgraph_settings import SubgraphSource


class FactoryConfig(StrictModel):
    """A factory whose pools the chain publisher follows."""

    dex: Dex
    protocol: Protocol
    address: str
    start_block: int = Field(0, ge=0)

    _address = field_validator("address")(normalize_address)


class _DexSubgraph(typing.Protocol):
    """What ``PoolFilter.missing_subgraphs`` reads of a subgraph source (subgraph.sources)."""

    dex: str
    protocol: str


class PoolFilter(StrictModel):
    """Which of the factories' pools the chain publisher follows: all of them by default,
    or those the lists allow (addresses are compared in lower case), or, with a threshold,
    those the subgraphs list above it (publishers/chain/pool_list.py)."""

    # Only these pools; empty: every pool the factories create. With a threshold below:
    # these pools as well as the listed ones, whatever their figures. (Sets: a factory's
    # hundreds of thousands of pools are each looked up at discovery.)
    allow: frozenset[str] = frozenset()
    # Never these pools (not even listed or allowed ones).
    deny: frozenset[str] = frozenset()
    # Only pools holding at least one of these tokens; empty: any token.
    tokens: frozenset[str] = frozenset()
    # Thresholds on the pool lists of the subgraphs (subgraph.sources) of the factories'
    # dexes: only pools with at least this much value locked (USD; V3 totalValueLockedUSD,
    # V2 reserveUSD) ...
    min_tvl_usd: float | None = Field(None, ge=0)
    # ... and at least this much swap volume (USD) in the hour rows of the 24 hours before
    # the subgraph's indexed block. Both set: a pool must pass both.
    min_volume_usd_24h: float | None = Field(None, ge=0)
    # How often the subgraphs' lists are read again (their figures move hourly).
    refresh_s: float = Field(3600.0, gt=0)

    @field_validator("allow", "deny", "tokens", mode="before")
    @classmethod
    def _addresses(cls, addresses: list[str]) -> frozenset[str]:
        return frozenset(normalize_address(address) for address in addresses)

    @property
    def thresholds(self) -> bool:
        """Whether a threshold is set: then the subgraphs' pool list decides."""
        return self.min_tvl_usd is not None or self.min_volume_usd_24h is not None

    def eligible(self, pool: str, token0: str, token1: str) -> bool:
        """Whether the pool passes the lists: not denied, of the tokens, and allowed (with a
        threshold, whether the subgraphs list it is ``follows``'s question)."""
        if pool in self.deny:
            return False
        if self.tokens and token0 not in self.tokens and token1 not in self.tokens:
            return False
        return not self.allow or self.thresholds or pool in self.allow

    def follows(
        self, pool: str, token0: str, token1: str, listed: Container[str] = frozenset()
    ) -> bool:
        """Whether the pool at ``pool`` (of ``token0`` and ``token1``) is followed; with a
        threshold, ``listed`` holds the pools the subgraphs list above it."""
        if not self.eligible(pool, token0, token1):
            return False
        return not self.thresholds or pool in self.allow or pool in listed

    def missing_subgraphs(
        self, factories: Iterable[FactoryConfig], sources: Iterable[_DexSubgraph]
    ) -> str | None:
        """With a threshold: what keeps ``sources`` (subgraph.sources) from listing the
        pools of every one of ``factories``; None when nothing does."""
        if not self.thresholds:
            return None
        indexed = {(source.dex, source.protocol) for source in sources}
        missing = sorted(
            {f"{f.dex} ({f.protocol})" for f in factories if (f.dex, f.protocol) not in indexed}
        )
        if not missing:
            return None
        setting = "min_tvl_usd" if self.min_tvl_usd is not None else "min_volume_usd_24h"
        return (
            f"chain.pool_filter.{setting} asks the subgraphs of the factories' dexes for their "
            f"pool lists, but subgraph.sources has no subgraph of {', '.join(missing)}: add "
            "one, or leave that dex's factories out of chain.factories"
        )


@dataclasses.dataclass(frozen=True)
class KnownChain:
    name: str
    explorer_url: str | None


# The chains dexwatch knows by id: a chain's name and block explorer default to these.
KNOWN_CHAINS = {
    1: KnownChain("ethereum", "https://etherscan.io"),
    10: KnownChain("optimism", "https://optimistic.etherscan.io"),
    137: KnownChain("polygon", "https://polygonscan.com"),
    8453: KnownChain("base", "https://basescan.org"),
    42161: KnownChain("arbitrum", "https://arbiscan.io"),
    31337: KnownChain("local", None),
}


class ChainSettings(StrictModel):
    """One chain: its node, the factories followed on it, and how it is read."""

    chain_id: int = Field(31337, ge=1)
    # How the chain is named in commands, alerts and the dashboard; empty: the known name of
    # chain_id (KNOWN_CHAINS), else chain-<chain_id>.
    name: str = Field("", pattern=r"^$|^[a-z][a-z0-9-]{0,39}$")
    # Its block explorer, for links in alerts; empty: the known one of chain_id, if any.
    explorer_url: str | None = None
    # The assets its market view prices together (their addresses on this chain: USDC on
    # Polygon is not USDC on Ethereum); empty: market.assets.
    assets: list[AssetConfig] | None = None
    rpc_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8545"], min_length=1)
    # Empty means: read the factories of the local stack's deployment manifest.
    factories: list[FactoryConfig] = Field(default_factory=list)
    # The Graph's subgraphs of this chain's dexes (a subgraph's id differs per chain), for
    # the subgraph publisher and the pool filter's lists; None: subgraph.sources.
    subgraph_sources: list[SubgraphSource] | None = Field(None, min_length=1)
    start_block: int = Field(0, ge=0)
    confirmations: int = Field(2, ge=0)
    batch_blocks: int = Field(500, ge=1)
    poll_interval_s: float = Field(0.5, gt=0)
    pool_filter: PoolFilter = PoolFilter()
    # Pool events are asked by address while at most this many pools are followed, and by
    # their topics alone beyond (nodes cap address lists and answer sizes; the logs of pools
    # not followed are dropped here).
    max_log_addresses: int = Field(1000, ge=1)
    # How many recent block hashes the checkpoint keeps to find a fork point.
    reorg_window: int = Field(128, ge=1)
    # The JSON-RPC requests: timeout, and retries of transient failures (429, 5xx, timeouts,
    # refused connections, rate limits) on each URL before the next URL is tried;
    # max_retries + 1 is also how often a batch is re-read while the chain keeps changing.
    # Every network client's section is a RetryPolicy (dexwatch.core.retry), so the keys,
    # their checks and the retry loop are declared once; a partial section changes only
    # the keys it names.
    retry: RetryPolicy = RetryPolicy(
        timeout_s=10.0, max_retries=6, backoff_base_s=0.2, backoff_max_s=10.0
    )
    # Empty means <state_dir>/checkpoints/chain-<chain_id>.json
    checkpoint_path: Path | None = None
    # Read each event's transaction sender (batched eth_getTransactionByHash): the trader
    # of a swap made through a router. A node that does not offer the method is read without.
    senders: bool = True
    # A block's senders come from its receipts (eth_getBlockReceipts, one call for the whole
    # block) when the transactions with pool events are at least this share of the block's,
    # else one eth_getTransactionByHash each: on anvil a block's receipts cost about a
    # quarter of its transactions' lookups (README). Above 1: never.
    receipts_min_share: float = Field(0.25, ge=0)
    # The chain's fixed block time, where it has one (Ethereum since the merge: 12). Then
    # pipeline.slice_s must be a whole number of blocks, so that every slice holds as many
    # blocks as the next (15 s slices of 12 s blocks hold one or two: a 2x jitter in every
    # per-slice count). Empty: blocks come at uneven times (Polygon), nothing to align to.
    block_time_s: int | None = Field(None, ge=1)
    # Publish to a topic of this chain's own (pool-events-<name>, with its own subscriptions)
    # instead of the shared pool-events: another chain's flood, backlog or quota does not
    # touch it. The pipeline reads both; dead letters stay on the shared pool-events-dlq.
    own_topic: bool = False

    _retry = field_validator("retry", mode="before")(over_field_default)

    @field_validator("rpc_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(f"RPC URL must be http(s): {redact_url(url)}")
        return urls

    @model_validator(mode="before")
    @classmethod
    def _known_name_and_explorer(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = KNOWN_CHAINS.get(data.get("chain_id", 31337))
        data = dict(data)
        if not data.get("name"):
            data["name"] = known.name if known else f"chain-{data.get('chain_id')}"
        if data.get("explorer_url") is None and known is not None:
            data["explorer_url"] = known.explorer_url
        return data

    @property
    def events_topic(self) -> str:
        """The topic its chain publisher publishes pool events to."""
        return chain_topic(self.name) if self.own_topic else POOL_EVENTS

    @model_validator(mode="after")
    def _window_covers_confirmations(self) -> ChainSettings:
        if self.reorg_window <= self.confirmations:
            raise ValueError("reorg_window must be larger than confirmations")
        return self


def describe_chain(chain_id: int, chains: Iterable[ChainSettings] = ()) -> KnownChain:
    """A chain's name and explorer: as configured, else as known, else ``chain-<id>``."""
    for chain in chains:
        if chain.chain_id == chain_id:
            return KnownChain(chain.name, chain.explorer_url)
    return KNOWN_CHAINS.get(chain_id) or KnownChain(f"chain-{chain_id}", None)
