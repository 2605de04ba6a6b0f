"""The pools a chain publisher follows, kept durably beside its checkpoint.

A real factory made thousands of pools (hundreds of thousands of V2 pairs). The checkpoint
is written after every batch, so the pools are not in it: they are JSON lines appended
when pools are found and read once at start. Plain lines rather than a database: the
production checkpoint lives on a Cloud Storage FUSE volume, where appends work and a
database's random writes do not.

Lines written before fee tiers and token decimals were kept load too: the fee tier comes
from the announcement (or the protocol), and the decimals are read at start
(``decimals_read`` false) and the file rewritten with them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from dexwatch.core.files import write_atomically
from dexwatch.core.schemas.pool_event import MessageError, PoolEvent
from publishers.chain.errors import CheckpointError
from publishers.chain.events import Pool, fee_tier


class PoolRegistry:
    """The followed pools of one chain publisher, in a JSON lines file.

    Args:
        path: the file (created on the first save).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # The pools the file holds, as written.
        self._stored: dict[str, Pool] = {}

    def load(self, up_to_block: int) -> dict[str, Pool]:
        """The pools created up to ``up_to_block`` (the checkpoint's block: pools of later
        blocks were saved before a checkpoint that did not follow, and are found again when
        their blocks are read). Raises CheckpointError on a damaged line; a last line cut
        short by a crash is dropped."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        lines = data.splitlines()
        if data and not data.endswith(b"\n"):
            lines.pop()  # a write the crash cut short: its pools were not checkpointed
        pools: dict[str, Pool] = {}
        for number, line in enumerate(lines, 1):
            try:
                pool = pool_from_dict(orjson.loads(line))
            except (orjson.JSONDecodeError, MessageError, KeyError, TypeError, ValueError) as err:
                raise CheckpointError(f"{self.path}, line {number}: {err}") from None
            pools[pool.address] = pool
        self._stored = dict(pools)
        return {a: p for a, p in pools.items() if p.created_block <= up_to_block}

    def clear(self) -> None:
        """Forget every pool (a publisher starting without a checkpoint)."""
        self.path.unlink(missing_ok=True)
        self._stored = {}

    def save(self, pools: Mapping[str, Pool]) -> None:
        """Make the file hold ``pools``: the new ones appended (the usual case), the whole
        file rewritten when pools were forgotten (a reorg) or changed (their decimals read
        at start). Durable when it returns."""
        if any(
            (now := pools.get(address)) is not pool and now != pool
            for address, pool in self._stored.items()
        ):
            write_atomically(self.path, _lines(pools.values()), durable=True)
            self._stored = dict(pools)
            return
        new = [pool for address, pool in pools.items() if address not in self._stored]
        if not new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as file:
            file.write(_lines(new))
            file.flush()
            os.fsync(file.fileno())
        self._stored.update((pool.address, pool) for pool in new)


_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(PoolEvent))


def pool_to_dict(pool: Pool) -> dict[str, Any]:
    """A pool as JSON values, its announcement as its fields."""
    fields = {f.name: getattr(pool, f.name) for f in dataclasses.fields(pool)}
    if pool.announcement is not None:
        fields["announcement"] = {name: getattr(pool.announcement, name) for name in _EVENT_FIELDS}
    return fields


def pool_from_dict(raw: dict[str, Any]) -> Pool:
    """A pool saved by ``pool_to_dict``, or by a checkpoint of format 1 (its announcement a
    message, checked as one; or none), or before fee tiers and decimals were kept."""
    raw = dict(raw)
    announcement = raw.pop("announcement", None)
    if announcement is None:
        event = None
    elif "schema_version" in announcement:
        event = PoolEvent.from_json(orjson.dumps(announcement))
    else:
        # Fields this publisher wrote: rebuilt without a message's checks (10,000 pools
        # load in a tenth of the time).
        event = PoolEvent(**{name: announcement[name] for name in _EVENT_FIELDS})
    if "fee_tier" not in raw:
        created = {} if event is None else event.args
        known = raw["protocol"] != "v3" or "fee" in created
        raw["fee_tier"] = fee_tier(raw["protocol"], created) if known else 0
    return Pool(**raw, announcement=event)


def _lines(pools: Iterable[Pool]) -> bytes:
    return b"".join(orjson.dumps(pool_to_dict(pool)) + b"\n" for pool in pools)
