"""Hand-made Uniswap V3 blocks for feature tests: one pool, 12 s blocks, one block a slice."""

from __future__ import annotations

from beam_pipelines.transforms.pool_windows import pool_windows
from dexwatch.core.features.slices import summarize_slice
from dexwatch.core.schemas.pool_event import PoolEvent
from dexwatch.core.settings import PipelineSettings

POOL = "0x" + "cd" * 20
T0 = 1_800_000_000  # a multiple of the 12 s slices below
SLICE_S = 12
LEVEL = 10**18  # the pool's in-range liquidity
ROUTER = "0x" + "e5" * 20
JIT_BOT = "0x" + "b0" * 20
LP = "0x" + "1f" * 20
WIDE = (-1000, 1000)  # wider than DEPTH_BAND_TICKS: its liquidity counts in full


class Block:
    """Events of one 12 s block, log indexes in order."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.events: list[PoolEvent] = []

    def _add(self, name: str, args: dict[str, str]) -> Block:
        self.events.append(
            PoolEvent(
                chain_id=1,
                dex="uniswap_v3",
                pool=POOL,
                event=name,
                block_number=self.number,
                block_hash=f"0x{self.number:064x}",
                block_timestamp=T0 + SLICE_S * self.number,
                tx_hash=f"0x{self.number:062x}{len(self.events):02x}",
                log_index=len(self.events),
                args=args,
            )  # fmt: skip
        )
        return self

    def swap(self, liquidity: int = LEVEL, tick: int = 0) -> Block:
        sqrt_price = int(1.0001 ** (tick / 2) * 2**96)
        return self._add(
            "Swap",
            {"sender": ROUTER, "recipient": ROUTER, "amount0": "-1000", "amount1": "1000",
             "sqrtPriceX96": str(sqrt_price), "liquidity": str(liquidity), "tick": str(tick)},
        )  # fmt: skip

    def trade(self, trader: str, amount0: int, amount1: int, tick: int = 0) -> Block:
        """A swap by ``trader`` in a transaction of its own; amounts as the pool sees them
        (positive: paid in)."""
        sqrt_price = int(1.0001 ** (tick / 2) * 2**96)
        return self._add(
            "Swap",
            {"sender": trader, "recipient": trader, "amount0": str(amount0),
             "amount1": str(amount1), "sqrtPriceX96": str(sqrt_price), "liquidity": str(LEVEL),
             "tick": str(tick)},
        )  # fmt: skip

    def mint(self, owner: str, low: int, high: int, amount: int) -> Block:
        return self._add(
            "Mint",
            {"sender": owner, "owner": owner, "tickLower": str(low), "tickUpper": str(high),
             "amount": str(amount), "amount0": "1", "amount1": "1"},
        )  # fmt: skip

    def burn(self, owner: str, low: int, high: int, amount: int) -> Block:
        return self._add(
            "Burn",
            {"owner": owner, "tickLower": str(low), "tickUpper": str(high),
             "amount": str(amount), "amount0": "1", "amount1": "1"},
        )  # fmt: skip


def window_rows(blocks: list[Block], settings: PipelineSettings) -> list[dict]:
    """The pool's window rows (pool_windows) over ``blocks``, one block a slice."""
    slices = [summarize_slice(POOL, T0 + SLICE_S * b.number, b.events) for b in blocks]
    return list(pool_windows((f"1:uniswap_v3:{POOL}", slices), settings))
