"""The subgraph publisher's durable progress: the first hour not yet published, and each
pool's last published hour (the state a quiet hour carries forward).

Saved only after Pub/Sub acknowledged every record of the hours it covers, so a restart
neither skips an hour nor publishes one twice (a repeat would keep its hour_id anyway).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from dexwatch.core.files import write_atomically
from dexwatch.core.schemas.pool_event import MessageError
from dexwatch.core.schemas.pool_hour import HOUR_S, PoolHour
from publishers.subgraph.errors import CheckpointError

_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class HourCheckpoint:
    chain_id: int
    # Every hour before this one is published, for every pool followed then.
    next_hour: int
    latest: Mapping[str, PoolHour] = dataclasses.field(default_factory=dict)

    def advanced(self, next_hour: int, published: list[PoolHour]) -> HourCheckpoint:
        latest = dict(self.latest)
        for record in published:
            if record.pool not in latest or latest[record.pool].hour_start < record.hour_start:
                latest[record.pool] = record
        return HourCheckpoint(self.chain_id, next_hour, latest)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "version": _FORMAT_VERSION,
                "chain_id": self.chain_id,
                "next_hour": self.next_hour,
                "latest": {pool: orjson.loads(r.to_json()) for pool, r in self.latest.items()},
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes) -> HourCheckpoint:
        """Raises CheckpointError naming what is wrong."""
        try:
            raw: dict[str, Any] = orjson.loads(data)
            if raw.get("version") != _FORMAT_VERSION:
                raise ValueError(f"unsupported version {raw.get('version')!r}")
            next_hour = int(raw["next_hour"])
            if next_hour % HOUR_S:
                raise ValueError(f"next_hour {next_hour} is not a whole hour")
            return cls(
                chain_id=int(raw["chain_id"]),
                next_hour=next_hour,
                latest={
                    pool: PoolHour.from_json(orjson.dumps(record))
                    for pool, record in raw["latest"].items()
                },
            )
        except (orjson.JSONDecodeError, MessageError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"unreadable checkpoint: {err}") from None


class FileHourCheckpointStore:
    """A JSON file replaced atomically (temp file, fsync, rename, fsync of the directory)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> HourCheckpoint | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return HourCheckpoint.from_json(data)
        except CheckpointError as err:
            raise CheckpointError(f"{self.path}: {err}") from None

    def save(self, checkpoint: HourCheckpoint) -> None:
        write_atomically(self.path, checkpoint.to_json(), durable=True)
