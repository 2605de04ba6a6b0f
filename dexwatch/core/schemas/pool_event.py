"""The ``pool-events`` message: one decoded Uniswap/SushiSwap pool event.

The wire format is JSON matching ``pool_event.avsc`` (the production topic's schema).
Attributes repeat the fields subscribers filter on, and ``event_time`` carries the block
timestamp that the pipeline uses as event time.

Besides the pools' own events, the topic carries each pool's *announcement*: the factory's
``PoolCreated`` (V3) or ``PairCreated`` (V2) log that created it, with ``pool`` the created
pool and the pool's ordering key, published before any event of the pool. The pipeline
scores only announced pools.

``from_json`` checks exactly what the pipeline later relies on: every field in its format
(addresses and hashes lower-case hex, integers in their Avro ranges) and every argument an
integer (a base-10 string, no sign but a leading minus, no leading zeros) within its ABI
type's range, or an address: a message that passes cannot fail a later step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson

from dexwatch.core.errors import DexwatchError

SCHEMA_VERSION = 1
KINDS = ("event", "retraction")
DEXES = ("uniswap_v3", "uniswap_v2", "sushiswap")
PROTOCOL_OF_DEX = {"uniswap_v3": "v3", "uniswap_v2": "v2", "sushiswap": "v2"}
# The factory logs that announce a pool, by protocol.
ANNOUNCEMENTS = {"v3": "PoolCreated", "v2": "PairCreated"}
EVENT_NAMES = ("Swap", "Mint", "Burn", "Collect", "Sync", *ANNOUNCEMENTS.values())
EVENT_TIME_ATTRIBUTE = "event_time"
EVENT_ID_ATTRIBUTE = "event_id"

# Each event's arguments by their ABI names and types (publishers/chain/events.py decodes
# the same signatures). An announcement's created pool is also the message's ``pool``.
ARGUMENT_TYPES: dict[str, dict[str, dict[str, str]]] = {
    "v3": {
        "Swap": {"sender": "address", "recipient": "address", "amount0": "int256",
                 "amount1": "int256", "sqrtPriceX96": "uint160", "liquidity": "uint128",
                 "tick": "int24"},
        "Mint": {"sender": "address", "owner": "address", "tickLower": "int24",
                 "tickUpper": "int24", "amount": "uint128", "amount0": "uint256",
                 "amount1": "uint256"},
        "Burn": {"owner": "address", "tickLower": "int24", "tickUpper": "int24",
                 "amount": "uint128", "amount0": "uint256", "amount1": "uint256"},
        "Collect": {"owner": "address", "recipient": "address", "tickLower": "int24",
                    "tickUpper": "int24", "amount0": "uint128", "amount1": "uint128"},
        "PoolCreated": {"token0": "address", "token1": "address", "fee": "uint24",
                        "tickSpacing": "int24", "pool": "address"},
    },
    "v2": {
        "Swap": {"sender": "address", "amount0In": "uint256", "amount1In": "uint256",
                 "amount0Out": "uint256", "amount1Out": "uint256", "to": "address"},
        "Mint": {"sender": "address", "amount0": "uint256", "amount1": "uint256"},
        "Burn": {"sender": "address", "amount0": "uint256", "amount1": "uint256",
                 "to": "address"},
        "Sync": {"reserve0": "uint112", "reserve1": "uint112"},
        "PairCreated": {"token0": "address", "token1": "address", "pair": "address",
                        "allPairsLength": "uint256"},
    },
}  # fmt: skip
_CREATED_POOL_ARGUMENT = {"PoolCreated": "pool", "PairCreated": "pair"}

_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_HASH = re.compile(r"0x[0-9a-f]{64}")
# Base-10, canonical: no plus sign, spaces, underscores, leading zeros or "-0"; at most 78
# digits (a uint256 has 78), so int() never meets a huge string.
_INTEGER = re.compile(r"0|-?[1-9][0-9]{0,77}")
_ABI_INTEGER = re.compile(r"(u?)int(\d+)")
# Avro long / int, and the latest block time a Beam timestamp can hold with room to spare.
_LONG_MAX = 2**63 - 1
_INT_MAX = 2**31 - 1
MAX_BLOCK_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z


class MessageError(DexwatchError, ValueError):
    """A message that does not follow the pool-event contract."""


def avro_schema() -> dict[str, Any]:
    return orjson.loads(resources.files(__package__).joinpath("pool_event.avsc").read_bytes())


def event_id(chain_id: int, block_hash: str, tx_hash: str, log_index: int) -> str:
    return f"{chain_id}:{block_hash}:{tx_hash}:{log_index}"


def rfc3339(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def protocol_of(dex: str) -> str:
    return PROTOCOL_OF_DEX[dex]


@dataclasses.dataclass(frozen=True, slots=True)
class PoolEvent:
    chain_id: int
    dex: str
    pool: str
    event: str
    block_number: int
    block_hash: str
    block_timestamp: int
    tx_hash: str
    log_index: int
    args: dict[str, str]
    kind: str = "event"
    # The transaction's sender (its `from`), lower-case hex, or "" where the node did not
    # say: a swap's recipient is often a router, its sender the trader.
    tx_from: str = ""

    @property
    def event_id(self) -> str:
        return event_id(self.chain_id, self.block_hash, self.tx_hash, self.log_index)

    @property
    def ordering_key(self) -> str:
        """Pub/Sub ordering key: one per pool, so a pool's announcement, events and
        retractions stay in order."""
        return f"{self.chain_id}:{self.pool}"

    @property
    def is_announcement(self) -> bool:
        """The factory log that created the pool (PoolCreated / PairCreated)."""
        return self.event in _CREATED_POOL_ARGUMENT

    def retraction(self) -> PoolEvent:
        return dataclasses.replace(self, kind="retraction")

    def fingerprint(self) -> int:
        """A stable 64-bit digest of the event's content (not its kind): two messages with
        the same event_id and different fingerprints are conflicting versions."""
        content = orjson.dumps(
            (self.dex, self.pool, self.event, self.block_number, self.block_timestamp,
             self.args),
            option=orjson.OPT_SORT_KEYS,
        )  # fmt: skip
        return int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "big")

    def attributes(self) -> dict[str, str]:
        return {
            "schema_version": str(SCHEMA_VERSION),
            "kind": self.kind,
            "chain_id": str(self.chain_id),
            "dex": self.dex,
            "pool": self.pool,
            "event": self.event,
            EVENT_ID_ATTRIBUTE: self.event_id,
            EVENT_TIME_ATTRIBUTE: rfc3339(self.block_timestamp),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "event_id": self.event_id,
            "chain_id": self.chain_id,
            "dex": self.dex,
            "pool": self.pool,
            "event": self.event,
            "block_number": self.block_number,
            "block_hash": self.block_hash,
            "block_timestamp": self.block_timestamp,
            "tx_hash": self.tx_hash,
            "log_index": self.log_index,
            "args": self.args,
            "tx_from": self.tx_from,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes) -> PoolEvent:
        """Parse and check a message; raises MessageError saying what is wrong."""
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as err:
            raise MessageError(f"not JSON: {err}") from None
        if type(raw) is not dict:
            raise MessageError("not a JSON object")
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise MessageError(f"unsupported schema_version {raw.get('schema_version')!r}")
        if raw.keys() != _FIELDS:
            # Messages of publishers before tx_from carry no sender: unknown, as "".
            raw.setdefault("tx_from", "")
            missing = sorted(_FIELDS - raw.keys())
            if missing:
                raise MessageError(f"missing field {missing[0]!r}")
            if raw.keys() != _FIELDS:
                raise MessageError(f"unknown fields {', '.join(sorted(raw.keys() - _FIELDS))}")
        # One loop over a table of checks: every message goes through here.
        for name, kind, check, what in _FIELD_CHECKS:
            value = raw[name]
            if type(value) is not kind:
                raise MessageError(
                    f"field {name!r} must be {kind.__name__}, got {type(value).__name__}"
                )
            if check is None:
                continue
            if kind is int:
                if not check[0] <= value <= check[1]:
                    raise MessageError(
                        f"field {name!r} must be between {check[0]} and {check[1]}, got {value}"
                    )
            elif type(check) is frozenset:
                if value not in check:
                    raise MessageError(f"field {name!r} must be one of {what}, got {value!r}")
            elif not check.fullmatch(value):
                raise MessageError(f"field {name!r} must be {what}, got {value[:80]!r}")
        parsed = cls(
            raw["chain_id"], raw["dex"], raw["pool"], raw["event"], raw["block_number"],
            raw["block_hash"], raw["block_timestamp"], raw["tx_hash"], raw["log_index"],
            raw["args"], raw["kind"], raw["tx_from"],
        )  # fmt: skip
        if raw["event_id"] != parsed.event_id:
            raise MessageError("event_id does not match chain_id:block_hash:tx_hash:log_index")
        check_args(parsed)
        return parsed


_FIELDS = frozenset(
    {"schema_version", *(f.name for f in dataclasses.fields(PoolEvent)), "event_id"}
)
_HASH_TEXT = "a lower-case 32-byte hex hash"
# (field, JSON type, bounds / allowed values / pattern, what it must be), in field order.
_FIELD_CHECKS: tuple[tuple[str, type, Any, str], ...] = (
    ("chain_id", int, (1, _LONG_MAX), ""),
    ("dex", str, frozenset(DEXES), ", ".join(DEXES)),
    ("pool", str, _ADDRESS, "a lower-case hex address"),
    ("event", str, frozenset(EVENT_NAMES), ", ".join(EVENT_NAMES)),
    ("block_number", int, (0, _LONG_MAX), ""),
    ("block_hash", str, _HASH, _HASH_TEXT),
    ("block_timestamp", int, (0, MAX_BLOCK_TIMESTAMP), ""),
    ("tx_hash", str, _HASH, _HASH_TEXT),
    ("log_index", int, (0, _INT_MAX), ""),
    ("args", dict, None, ""),
    ("kind", str, frozenset(KINDS), ", ".join(KINDS)),
    ("tx_from", str, re.compile(r"|0x[0-9a-f]{40}"), "a lower-case hex address or empty"),
    ("event_id", str, None, ""),
)


def check_args(event: PoolEvent) -> None:
    """Raise MessageError unless the event's arguments are exactly its ABI arguments, each
    within its type: what the features and the pipeline read from them."""
    spec = _ARGUMENT_SPECS.get((PROTOCOL_OF_DEX[event.dex], event.event))
    if spec is None:
        raise MessageError(f"{event.dex} pools have no {event.event} event")
    names, checks = spec
    args = event.args
    if not all(isinstance(value, str) for value in args.values()):
        raise MessageError("args values must be strings")
    if args.keys() != names:
        missing = sorted(names - args.keys())
        extra = sorted(args.keys() - names)
        raise MessageError(
            f"{event.event} arguments: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unknown {', '.join(extra)}" if extra else "",
                )
                if part
            )
        )
    for name, abi_type, bounds in checks:
        value = args[name]
        if bounds is None:
            if not _ADDRESS.fullmatch(value):
                raise MessageError(f"{event.event} argument {name} is not a lower-case address")
            continue
        if not _INTEGER.fullmatch(value):
            raise MessageError(
                f"{event.event} argument {name} is not a base-10 integer: {value[:40]!r}"
            )
        if not bounds[0] <= int(value) <= bounds[1]:
            raise MessageError(f"{event.event} argument {name} is outside {abi_type}")
    created = _CREATED_POOL_ARGUMENT.get(event.event)
    if created is not None and args[created] != event.pool:
        raise MessageError(f"{event.event}: the message's pool is not the created {created}")


def abi_range(abi_type: str) -> tuple[int, int]:
    """The smallest and largest value of an ABI integer type (uint160, int24, ...)."""
    match = _ABI_INTEGER.fullmatch(abi_type)
    if match is None:
        raise ValueError(f"not an ABI integer type: {abi_type}")
    bits = int(match.group(2))
    if match.group(1):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


# Per (protocol, event): its argument names, and (name, type, (low, high) or None for an
# address) to check each by; worked out once, as every message goes through them.
_ARGUMENT_SPECS: dict[tuple[str, str], tuple[frozenset[str], tuple]] = {
    (protocol, event): (
        frozenset(types),
        tuple(
            (name, abi_type, None if abi_type == "address" else abi_range(abi_type))
            for name, abi_type in types.items()
        ),
    )
    for protocol, events in ARGUMENT_TYPES.items()
    for event, types in events.items()
}
