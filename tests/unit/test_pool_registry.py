"""The chain publisher's pool registry: the followed pools in JSON lines beside the
checkpoint, appended as pools are found, rewritten after a reorg, read once at start."""

from __future__ import annotations

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
