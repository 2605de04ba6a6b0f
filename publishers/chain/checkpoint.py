"""The chain publisher's durable progress.

A checkpoint is written only after every message of a batch is acknowledged, so after a
crash the publisher resumes at the first block whose messages may be missing (duplicates
keep their event_id). It keeps the recent block hashes, to find a fork point after a reorg,
and the events published in those blocks, to retract them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson

from dexwatch.core.files import write_atomically
from dexwatch.core.schemas.pool_event import MessageError, PoolEvent
from publishers.chain.errors import CheckpointError
from publishers.chain.events import Pool
from publishers.chain.registry import PoolRegistry, pool_from_dict

# 2: the pools are in the PoolRegistry beside the file, not in it (1 is still read).
_FORMAT_VERSION = 2


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    chain_id: int
    # Last block whose events are all published; start block - 1 before the first batch.
    block_number: int
    # None until a first batch: there is no parent hash to check yet.
    block_hash: str | None
    recent_hashes: Mapping[int, str] = dataclasses.field(default_factory=dict)
    published: Mapping[int, tuple[PoolEvent, ...]] = dataclasses.field(default_factory=dict)
    pools: Mapping[str, Pool] = dataclasses.field(default_factory=dict)

    def advanced(
        self,
        block_number: int,
        block_hash: str,
        hashes: Mapping[int, str],
        events: Iterable[PoolEvent],
        new_pools: Iterable[Pool],
        window: int,
    ) -> Checkpoint:
        """The checkpoint after a batch up to ``block_number`` was published; keeps hashes and
        events of the last ``window`` blocks only."""
        oldest = block_number - window + 1
        recent = {n: h for n, h in {**self.recent_hashes, **hashes}.items() if n >= oldest}
        published = {n: evs for n, evs in self.published.items() if n >= oldest}
        for event in events:
            if event.block_number >= oldest:
                published[event.block_number] = (*published.get(event.block_number, ()), event)
        return Checkpoint(
            chain_id=self.chain_id,
            block_number=block_number,
            block_hash=block_hash,
            recent_hashes=recent,
            published=published,
            pools={**self.pools, **{pool.address: pool for pool in new_pools}},
        )

    def orphaned_events(self, fork_block: int) -> list[PoolEvent]:
        """Published events of the blocks after ``fork_block``, newest first."""
        blocks = sorted((n for n in self.published if n > fork_block), reverse=True)
        return [event for n in blocks for event in reversed(self.published[n])]

    def rewound(self, fork_block: int) -> Checkpoint:
        """The checkpoint at ``fork_block``, forgetting everything after it."""
        return Checkpoint(
            chain_id=self.chain_id,
            block_number=fork_block,
            block_hash=self.recent_hashes[fork_block],
            recent_hashes={n: h for n, h in self.recent_hashes.items() if n <= fork_block},
            published={n: evs for n, evs in self.published.items() if n <= fork_block},
            pools={a: p for a, p in self.pools.items() if p.created_block <= fork_block},
        )

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "version": _FORMAT_VERSION,
                "chain_id": self.chain_id,
                "block_number": self.block_number,
                "block_hash": self.block_hash,
                "recent_hashes": {str(n): h for n, h in self.recent_hashes.items()},
                "published": {
                    str(n): [event.to_dict() for event in events]
                    for n, events in self.published.items()
                },
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        """Raises CheckpointError naming what is wrong."""
        try:
            raw: dict[str, Any] = orjson.loads(data)
            if raw.get("version") not in (1, _FORMAT_VERSION):
                raise ValueError(f"unsupported version {raw.get('version')!r}")
            return cls(
                chain_id=int(raw["chain_id"]),
                block_number=int(raw["block_number"]),
                block_hash=raw["block_hash"],
                recent_hashes={int(n): h for n, h in raw["recent_hashes"].items()},
                published={
                    int(n): tuple(PoolEvent.from_json(orjson.dumps(e)) for e in events)
                    for n, events in raw["published"].items()
                },
                # Format 1 kept the pools here.
                pools={p["address"]: pool_from_dict(p) for p in raw.get("pools", ())},
            )
        except (orjson.JSONDecodeError, MessageError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"unreadable checkpoint: {err}") from None


class CheckpointStore(Protocol):
    def load(self) -> Checkpoint | None:
        """The saved checkpoint, or None if there is none yet."""
        ...

    def save(self, checkpoint: Checkpoint) -> None:
        """Persist durably: when this returns, a crash cannot lose the checkpoint."""
        ...


class FileCheckpointStore:
    """A JSON file replaced atomically (temp file, fsync, rename, fsync of the directory),
    and the followed pools in a PoolRegistry beside it (``<name>.pools.jsonl``), saved first:
    a crash between the two leaves pools of blocks the checkpoint has not reached, which
    the load leaves out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pools = PoolRegistry(path.with_name(f"{path.stem}.pools.jsonl"))

    def load(self) -> Checkpoint | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            # Pools saved beside a checkpoint that is gone belong to that one's start.
            self.pools.clear()
            return None
        try:
            checkpoint = Checkpoint.from_json(data)
            pools = self.pools.load(checkpoint.block_number)
        except CheckpointError as err:
            raise CheckpointError(f"{self.path}: {err}") from None
        return dataclasses.replace(checkpoint, pools={**checkpoint.pools, **pools})

    def save(self, checkpoint: Checkpoint) -> None:
        self.pools.save(checkpoint.pools)
        write_atomically(self.path, checkpoint.to_json(), durable=True)
