"""The ``pool-events`` message: one decoded Uniswap/SushiSwap pool event.

The wire format is JSON matching ``pool_event.avsc`` (the production topic's schema).
Attributes repeat the fields subscribers filter on, and ``event_time`` carries the block
timestamp that the pipeline uses as event time.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson

SCHEMA_VERSION = 1
KINDS = ("event", "retraction")
DEXES = ("uniswap_v3", "uniswap_v2", "sushiswap")
EVENT_NAMES = ("Swap", "Mint", "Burn", "Collect", "Sync")
EVENT_TIME_ATTRIBUTE = "event_time"
EVENT_ID_ATTRIBUTE = "event_id"


class MessageError(ValueError):
    """A message that does not follow the pool-event contract."""


def avro_schema() -> dict[str, Any]:
    return orjson.loads(resources.files(__package__).joinpath("pool_event.avsc").read_bytes())


def event_id(chain_id: int, block_hash: str, tx_hash: str, log_index: int) -> str:
    return f"{chain_id}:{block_hash}:{tx_hash}:{log_index}"


def rfc3339(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    @property
    def event_id(self) -> str:
        return event_id(self.chain_id, self.block_hash, self.tx_hash, self.log_index)

    @property
    def ordering_key(self) -> str:
        """Pub/Sub ordering key: one per pool, so a pool's events and retractions stay in order."""
        return f"{self.chain_id}:{self.pool}"

    def retraction(self) -> PoolEvent:
        return dataclasses.replace(self, kind="retraction")

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
        if not isinstance(raw, dict):
            raise MessageError("not a JSON object")
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise MessageError(f"unsupported schema_version {raw.get('schema_version')!r}")
        try:
            parsed = cls(
                chain_id=_typed(raw, "chain_id", int),
                dex=_choice(raw, "dex", DEXES),
                pool=_typed(raw, "pool", str),
                event=_choice(raw, "event", EVENT_NAMES),
                block_number=_typed(raw, "block_number", int),
                block_hash=_typed(raw, "block_hash", str),
                block_timestamp=_typed(raw, "block_timestamp", int),
                tx_hash=_typed(raw, "tx_hash", str),
                log_index=_typed(raw, "log_index", int),
                args=_typed(raw, "args", dict),
                kind=_choice(raw, "kind", KINDS),
            )
        except KeyError as err:
            raise MessageError(f"missing field {err.args[0]!r}") from None
        if not all(isinstance(v, str) for v in parsed.args.values()):
            raise MessageError("args values must be strings")
        if raw.get("event_id") != parsed.event_id:
            raise MessageError("event_id does not match chain_id:block_hash:tx_hash:log_index")
        return parsed


def _typed(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MessageError(f"field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _choice(raw: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = raw[key]
    if value not in allowed:
        raise MessageError(f"field {key!r} must be one of {', '.join(allowed)}, got {value!r}")
    return value
