"""The chain publisher's pool registry: the followed pools in JSON lines beside the
checkpoint, appended as pools are found, rewritten after a reorg, read once at start."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from dexwatch.core.schemas.pool_event import PoolEvent
from publishers.chain.checkpoint import Checkpoint, FileCheckpointStore
from publishers.chain.errors import CheckpointError
from publishers.chain.events import Pool
from publishers.chain.registry import PoolRegistry, pool_to_dict


def _pool(n: int, block: int) -> Pool:
    address = f"0x{n:040x}"
    announcement = PoolEvent(
        chain_id=1, dex="uniswap_v3", pool=address, event="PoolCreated", block_number=block,
        block_hash="0x" + "ab" * 32, block_timestamp=1_700_000_000 + block,
        tx_hash="0x" + "cd" * 32, log_index=n,
        args={"token0": "0x" + "01" * 20, "token1": "0x" + "02" * 20, "fee": "500",
              "tickSpacing": "10", "pool": address},
    )  # fmt: skip
    return Pool(
        address, "uniswap_v3", "v3", "0x" + "11" * 20, block,
        token0="0x" + "01" * 20, token1="0x" + "02" * 20, announcement=announcement,
    )  # fmt: skip


def test_new_pools_are_appended_and_read_back_with_their_announcements(tmp_path: Path) -> None:
    registry = PoolRegistry(tmp_path / "pools.jsonl")
    first = {p.address: p for p in (_pool(1, 10), _pool(2, 11))}
    registry.save(first)
    written = registry.path.read_bytes()
    registry.save({**first, **{p.address: p for p in [_pool(3, 12)]}})
    after = registry.path.read_bytes()
    # Appended: what was there is untouched, one line more.
    assert after.startswith(written) and after.count(b"\n") == 3
    registry.save({**first, _pool(3, 12).address: _pool(3, 12)})
    assert registry.path.read_bytes() == after  # nothing new, nothing written
    loaded = PoolRegistry(registry.path).load(up_to_block=12)
    assert loaded == {p.address: p for p in (_pool(1, 10), _pool(2, 11), _pool(3, 12))}
    assert loaded[_pool(3, 12).address].announcement == _pool(3, 12).announcement
    # Pools of blocks the checkpoint has not reached are left out.
    assert set(PoolRegistry(registry.path).load(up_to_block=11)) == {
        _pool(1, 10).address,
        _pool(2, 11).address,
    }


def test_a_reorg_that_forgets_pools_rewrites_the_file(tmp_path: Path) -> None:
    registry = PoolRegistry(tmp_path / "pools.jsonl")
    pools = {p.address: p for p in (_pool(1, 10), _pool(2, 11), _pool(3, 12))}
    registry.save(pools)
    kept = {a: p for a, p in pools.items() if p.created_block <= 10}
    registry.save(kept)
    assert registry.path.read_bytes().count(b"\n") == 1
    assert PoolRegistry(registry.path).load(up_to_block=100) == kept


def test_a_torn_last_line_is_dropped_and_a_damaged_one_is_an_error(tmp_path: Path) -> None:
    registry = PoolRegistry(tmp_path / "pools.jsonl")
    registry.save({p.address: p for p in (_pool(1, 10), _pool(2, 11))})
    whole = registry.path.read_bytes()
    registry.path.write_bytes(whole + orjson.dumps(pool_to_dict(_pool(3, 12)))[:40])
    assert len(PoolRegistry(registry.path).load(up_to_block=100)) == 2
    registry.path.write_bytes(b"{not json\n" + whole)
    with pytest.raises(CheckpointError, match="line 1"):
        PoolRegistry(registry.path).load(up_to_block=100)


def test_the_checkpoint_keeps_no_pools_and_a_format_1_checkpoint_moves_them_out(
    tmp_path: Path,
) -> None:
    store = FileCheckpointStore(tmp_path / "chain-1.json")
    pools = {p.address: p for p in (_pool(1, 10), _pool(2, 11))}
    old = {
        "version": 1, "chain_id": 1, "block_number": 20, "block_hash": "0x" + "ef" * 32,
        "recent_hashes": {}, "published": {},
        "pools": [{**pool_to_dict(p), "announcement": p.announcement.to_dict()}
                  for p in pools.values()],
    }  # fmt: skip
    store.path.write_bytes(orjson.dumps(old))
    loaded = store.load()
    assert loaded is not None and loaded.pools == pools
    store.save(loaded)
    saved = orjson.loads(store.path.read_bytes())
    assert saved["version"] == 2 and "pools" not in saved
    assert store.pools.path == tmp_path / "chain-1.pools.jsonl"
    again = FileCheckpointStore(store.path).load()
    assert again is not None and again.pools == pools


def test_pools_beside_a_checkpoint_that_is_gone_are_forgotten(tmp_path: Path) -> None:
    store = FileCheckpointStore(tmp_path / "chain-1.json")
    store.save(Checkpoint(1, 20, None, pools={_pool(1, 10).address: _pool(1, 10)}))
    store.path.unlink()
    assert store.load() is None and not store.pools.path.exists()
    store.save(Checkpoint(1, 5, None, pools={_pool(2, 4).address: _pool(2, 4)}))
    reloaded = FileCheckpointStore(store.path).load()
    assert reloaded is not None and list(reloaded.pools) == [_pool(2, 4).address]


def _with_decimals(pool: Pool, decimals0: int | None, decimals1: int | None) -> Pool:
    return dataclasses.replace(
        pool, token0_decimals=decimals0, token1_decimals=decimals1, decimals_read=True
    )


def test_fee_tiers_and_decimals_are_kept_in_the_lines(tmp_path: Path) -> None:
    registry = PoolRegistry(tmp_path / "pools.jsonl")
    read = _with_decimals(dataclasses.replace(_pool(1, 10), fee_tier=500), 6, 18)
    # A token that gave no decimals: None, but read (not asked again at the next start).
    unreadable = _with_decimals(dataclasses.replace(_pool(2, 11), fee_tier=10000), None, 18)
    registry.save({p.address: p for p in (read, unreadable)})
    lines = [orjson.loads(line) for line in registry.path.read_bytes().splitlines()]
    assert [(line["fee_tier"], line["token0_decimals"], line["token1_decimals"],
             line["decimals_read"]) for line in lines] == [(500, 6, 18, True),
                                                           (10000, None, 18, True)]  # fmt: skip
    loaded = PoolRegistry(registry.path).load(up_to_block=100)
    assert loaded == {read.address: read, unreadable.address: unreadable}
    assert loaded[read.address].token0_decimals == 6 and loaded[read.address].fee_tier == 500


def _old_line(pool: Pool, announced: bool = True) -> bytes:
    """A line as the registry wrote it before fee tiers and decimals were kept."""
    old = {k: v for k, v in pool_to_dict(pool).items() if k not in _NEW_FIELDS}
    if not announced:
        old["announcement"] = None
    return orjson.dumps(old) + b"\n"


_NEW_FIELDS = ("fee_tier", "token0_decimals", "token1_decimals", "decimals_read")


def test_lines_written_before_fee_tiers_and_decimals_load_and_are_rewritten_once_read(
    tmp_path: Path,
) -> None:
    v3 = dataclasses.replace(_pool(1, 10), fee_tier=500)  # its announcement's fee is "500"
    v2 = Pool(
        f"0x{2:040x}", "sushiswap", "v2", "0x" + "22" * 20, 11,
        token0="0x" + "01" * 20, token1="0x" + "03" * 20,
    )  # fmt: skip
    bare = dataclasses.replace(_pool(3, 12), fee_tier=3000)  # V3 without its announcement
    path = tmp_path / "pools.jsonl"
    path.write_bytes(_old_line(v3) + _old_line(v2) + _old_line(bare, announced=False))
    registry = PoolRegistry(path)
    loaded = registry.load(up_to_block=100)
    # The fee tier from the announcement or the protocol; decimals not read yet.
    assert [(p.fee_tier, p.decimals_read, p.token0_decimals) for p in loaded.values()] == [
        (500, False, None), (3000, False, None), (0, False, None),
    ]  # fmt: skip
    assert loaded[v3.address] == v3 and loaded[v2.address] == dataclasses.replace(v2, fee_tier=3000)

    # Nothing changed: nothing written.
    old_bytes = path.read_bytes()
    registry.save(loaded)
    assert path.read_bytes() == old_bytes
    # Their decimals read (the follower does it at start): the lines are rewritten, not
    # appended, and a registry opened afterwards has nothing left to read.
    filled = {a: _with_decimals(p, 18, 6) for a, p in loaded.items()}
    registry.save(filled)
    assert path.read_bytes().count(b"\n") == 3
    assert all(orjson.loads(line)["decimals_read"] for line in path.read_bytes().splitlines())
    again = PoolRegistry(path)
    assert again.load(up_to_block=100) == filled
    rewritten = path.read_bytes()
    again.save(filled)
    assert path.read_bytes() == rewritten
