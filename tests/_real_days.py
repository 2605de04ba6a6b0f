"""The three real Polygon days of ``../shared/data/real-logs``, decoded block by block, for
tests of same-block patterns."""

from __future__ import annotations

from pathlib import Path

from dexwatch.core.schemas.pool_event import PoolEvent
from infra.local.recorded_chain import open_recording
from publishers.chain.events import Pool, decode_pool_logs

REAL_LOGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-logs"
DAYS = ("2021-12-22", "2022-01-05", "2023-11-25")


def real_blocks(day: str) -> tuple[str, dict[int, list[PoolEvent]]]:
    """The pool's address and its decoded events per block on ``day`` (every log decodes)."""
    recording = open_recording(REAL_LOGS / f"polygon-uniswap-v3-usdc-weth-500-{day}.csv")
    address = recording.pool.address
    pool = Pool(address, "uniswap_v3", "v3", recording.pool.factory, 0)
    numbers = {int(log["blockNumber"], 16) for log in recording.logs}
    timestamps = {n: recording.timestamp(n) for n in numbers}
    decoded = decode_pool_logs(recording.logs, 137, {address: pool}, timestamps)
    assert decoded.events and not decoded.rejected
    by_block: dict[int, list[PoolEvent]] = {}
    for event in decoded.events:
        by_block.setdefault(event.block_number, []).append(event)
    return address, by_block
