"""A synthetic stream of V2-style Sync and Swap events for many pools, for the benchmarks
that need more pools or more events per second than the local chain can mine."""

from __future__ import annotations

import random
from collections.abc import Iterator

from dexwatch.core.schemas.pool_event import PoolEvent


class SyntheticMarket:
    """Pools that each trade once per ``step`` call: a Sync and a Swap, with lognormal
    amounts against constant-product reserves, so prices wander as they do on a pool."""

    def __init__(self, pools: int, seed: int = 1, chain_id: int = 1) -> None:
        self._rng = random.Random(seed)
        self.chain_id = chain_id
        self._reserves = {p: [10**24, 3 * 10**27] for p in range(pools)}
        self._block = 0

    def announcements(self, timestamp: int) -> list[PoolEvent]:
        """Each pool's announcement (its PairCreated log), to send before its events: the
        pipeline scores announced pools only."""
        return [
            PoolEvent(
                chain_id=self.chain_id,
                dex="sushiswap",
                pool=_pool(p),
                event="PairCreated",
                block_number=0,
                block_hash=f"0x{0:064x}",
                block_timestamp=timestamp,
                tx_hash=f"0x{p:064x}",
                log_index=p,
                args={
                    "token0": f"0x{1:040x}",
                    "token1": f"0x{2:040x}",
                    "pair": _pool(p),
                    "allPairsLength": str(p + 1),
                },
            )  # fmt: skip
            for p in range(len(self._reserves))
        ]

    def step(self, timestamp: int, pools: range | None = None) -> list[PoolEvent]:
        """One block at ``timestamp`` with one swap in each of ``pools`` (default: all)."""
        rng = self._rng
        self._block += 1
        block = self._block
        batch = []
        for p in pools if pools is not None else range(len(self._reserves)):
            r0, r1 = self._reserves[p]
            amount_in = int(r1 * rng.lognormvariate(-8, 1.3))
            amount_out = amount_in * r0 // (r1 + amount_in)
            self._reserves[p] = [r0 - amount_out, r1 + amount_in]
            common = dict(chain_id=self.chain_id, dex="sushiswap", pool=_pool(p),
                          block_number=block, block_hash=f"0x{block:064x}",
                          block_timestamp=timestamp,
                          tx_hash=f"0x{block * 10_000 + p:064x}")  # fmt: skip
            sync = {"reserve0": str(r0 - amount_out), "reserve1": str(r1 + amount_in)}
            swap = {
                "sender": f"0x{1:040x}",
                "to": f"0x{rng.randrange(13):040x}",
                "amount0In": "0",
                "amount1In": str(amount_in),
                "amount0Out": str(amount_out),
                "amount1Out": "0",
            }
            batch.append(PoolEvent(event="Sync", log_index=2 * p, args=sync, **common))
            batch.append(PoolEvent(event="Swap", log_index=2 * p + 1, args=swap, **common))
        return batch


def _pool(p: int) -> str:
    return f"0x{p + 0x1000:040x}"


def history(
    pools: int, start: int, seconds: int, every_s: int, seed: int = 1
) -> Iterator[tuple[int, list[PoolEvent]]]:
    """(timestamp, events) every ``every_s`` seconds of event time, one swap per pool; the
    pools' announcements come first, with the first batch."""
    market = SyntheticMarket(pools, seed)
    for t in range(start, start + seconds, every_s):
        batch = market.step(t)
        yield t, (market.announcements(t) + batch if t == start else batch)
