"""The pool events dexwatch follows, the factory events that create pools, and the conversion
of raw ``eth_getLogs`` entries into PoolEvents."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from dexwatch.core.schemas.pool_event import PoolEvent, event_id
from dexwatch.core.settings import FactoryConfig
from publishers.chain.abi import EventDecoder, LogDecodeError, event_abi

_V3_POOL = (
    "Swap(address indexed sender, address indexed recipient, int256 amount0, int256 amount1,"
    " uint160 sqrtPriceX96, uint128 liquidity, int24 tick)",
    "Mint(address sender, address indexed owner, int24 indexed tickLower, int24 indexed tickUpper,"
    " uint128 amount, uint256 amount0, uint256 amount1)",
    "Burn(address indexed owner, int24 indexed tickLower, int24 indexed tickUpper,"
    " uint128 amount, uint256 amount0, uint256 amount1)",
    "Collect(address indexed owner, address recipient, int24 indexed tickLower,"
    " int24 indexed tickUpper, uint128 amount0, uint128 amount1)",
)
_V2_PAIR = (
    "Swap(address indexed sender, uint256 amount0In, uint256 amount1In, uint256 amount0Out,"
    " uint256 amount1Out, address indexed to)",
    "Mint(address indexed sender, uint256 amount0, uint256 amount1)",
    "Burn(address indexed sender, uint256 amount0, uint256 amount1, address indexed to)",
    "Sync(uint112 reserve0, uint112 reserve1)",
)

# Pool events by protocol ("v3" pools, "v2" pairs), keyed by topic0.
POOL_EVENTS: dict[str, dict[str, EventDecoder]] = {
    protocol: {decoder.topic0: decoder for decoder in map(EventDecoder, map(event_abi, sigs))}
    for protocol, sigs in (("v3", _V3_POOL), ("v2", _V2_PAIR))
}
# The factory event announcing a new pool, and the argument that holds the pool's address.
POOL_CREATED: dict[str, tuple[EventDecoder, str]] = {
    "v3": (
        EventDecoder(
            event_abi(
                "PoolCreated(address indexed token0, address indexed token1, uint24 indexed fee,"
                " int24 tickSpacing, address pool)"
            )
        ),
        "pool",
    ),
    "v2": (
        EventDecoder(
            event_abi(
                "PairCreated(address indexed token0, address indexed token1, address pair,"
                " uint256 allPairsLength)"
            )
        ),
        "pair",
    ),
}
# The swap fee of every V2 / SushiSwap pair, in a V3 fee tier's unit (hundredths of a bip).
V2_FEE_TIER = 3000
POOL_EVENT_TOPICS = sorted({topic for events in POOL_EVENTS.values() for topic in events})
POOL_CREATED_TOPICS = sorted(decoder.topic0 for decoder, _ in POOL_CREATED.values())


@dataclasses.dataclass(frozen=True, slots=True)
class Pool:
    """A pool (or pair) discovered from its factory's creation event, with that event as the
    pool's announcement once its block's timestamp is known (``announced``)."""

    address: str
    dex: str
    protocol: str
    factory: str
    created_block: int
    # Its tokens (empty in checkpoints written before they were kept).
    token0: str = ""
    token1: str = ""
    # The swap fee in hundredths of a bip (500 = 0.05 %): a V3 pool's from its PoolCreated
    # log, V2_FEE_TIER for a pair; 0 where unknown (an old line of a pool without its
    # announcement, which is read again).
    fee_tier: int = 0
    # Its tokens' ERC-20 decimals(), None for a token that did not answer one (not a standard
    # token, no code); read once per token (publishers.chain.tokens) when ``decimals_read``.
    token0_decimals: int | None = None
    token1_decimals: int | None = None
    decimals_read: bool = False
    announcement: PoolEvent | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(slots=True)
class DecodedLogs:
    events: list[PoolEvent] = dataclasses.field(default_factory=list)
    # (raw log, reason) of logs that could not be decoded.
    rejected: list[tuple[dict[str, Any], str]] = dataclasses.field(default_factory=list)


def raw_event_id(chain_id: int, log: Mapping[str, Any]) -> str:
    """The event id of a raw log, as far as its fields allow (for logs that fail to decode)."""
    try:
        return event_id(
            chain_id, log["blockHash"], log["transactionHash"], int(log["logIndex"], 16)
        )
    except (KeyError, TypeError, ValueError):
        return f"{chain_id}:unknown"


def decode_pool_logs(
    logs: Iterable[dict[str, Any]],
    chain_id: int,
    pools: Mapping[str, Pool],
    timestamps: Mapping[int, int],
) -> DecodedLogs:
    """Raw ``eth_getLogs`` entries of known pools → PoolEvents; undecodable logs are rejected
    with the reason, never raised. ``timestamps`` maps block numbers to block timestamps."""
    decoded = DecodedLogs()
    for log in logs:
        try:
            pool = pools[log["address"].lower()]
            topics = log["topics"]
            decoder = POOL_EVENTS[pool.protocol].get(topics[0]) if topics else None
            if decoder is None:
                raise LogDecodeError(f"not a {pool.protocol} pool event topic: {topics[:1]}")
            block_number = int(log["blockNumber"], 16)
            decoded.events.append(
                PoolEvent(
                    chain_id=chain_id,
                    dex=pool.dex,
                    pool=pool.address,
                    event=decoder.name,
                    block_number=block_number,
                    block_hash=log["blockHash"].lower(),
                    block_timestamp=timestamps[block_number],
                    tx_hash=log["transactionHash"].lower(),
                    log_index=int(log["logIndex"], 16),
                    args=decoder.decode(topics, log["data"]),
                )
            )
        except (LogDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            reason = str(err) if isinstance(err, LogDecodeError) else f"malformed log: {err!r}"
            decoded.rejected.append((log, reason))
    return decoded


def announced(pool: Pool, log: Mapping[str, Any], chain_id: int, timestamp: int) -> Pool:
    """``pool`` with its announcement: the factory's creation ``log`` as a pool event of the
    created pool (``pool`` field and ordering key), which the pipeline needs before the
    pool's events; raises LogDecodeError."""
    decoder, _ = POOL_CREATED[pool.protocol]
    try:
        event = PoolEvent(
            chain_id=chain_id,
            dex=pool.dex,
            pool=pool.address,
            event=decoder.name,
            block_number=pool.created_block,
            block_hash=log["blockHash"].lower(),
            block_timestamp=timestamp,
            tx_hash=log["transactionHash"].lower(),
            log_index=int(log["logIndex"], 16),
            args=decoder.decode(log["topics"], log["data"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise LogDecodeError(f"pool creation log: {err!r}") from None
    return dataclasses.replace(pool, announcement=event)


def decode_pool_created(log: Mapping[str, Any], factory: FactoryConfig) -> Pool:
    """The pool announced by a factory's creation log; raises LogDecodeError."""
    decoder, address_arg = POOL_CREATED[factory.protocol]
    topics = log["topics"]
    if not topics or topics[0] != decoder.topic0:
        raise LogDecodeError(f"not a {decoder.name} log: {topics[:1]}")
    args = decoder.decode(topics, log["data"])
    return Pool(
        address=args[address_arg],
        dex=factory.dex,
        protocol=factory.protocol,
        factory=factory.address,
        created_block=int(log["blockNumber"], 16),
        token0=args["token0"],
        token1=args["token1"],
        fee_tier=fee_tier(factory.protocol, args),
    )


def fee_tier(protocol: str, created: Mapping[str, str]) -> int:
    """A pool's fee tier from its creation log's arguments: a V3 pool's ``fee``, every V2
    pair's V2_FEE_TIER."""
    return int(created["fee"]) if protocol == "v3" else V2_FEE_TIER
