"""The stand-in's indexer: reads the local chain's pool events over JSON-RPC and keeps each
subgraph's entities the way the Uniswap V3 and SushiSwap V2 subgraphs compute them.

It reads the chain itself rather than the ``pool-events`` topic because graph-node does:
a subgraph indexes the chain independently of dexwatch, so the hourly figures stay an
independent source (a chain publisher bug cannot leak into them), ``_meta.block`` is simply
the last block processed, and no extra subscription has to be declared. It decodes the few
events it needs itself, for the same independence.

Per subgraph, as the real ones do:

- an hour row (``<pool>-<hourIndex>``) exists only for hours in which the pool had an event
  the subgraph counts: V3 Swap, Mint, Burn, Collect; V2 Swap, Mint, Burn. Its state fields
  are the pool's after the hour's last such event;
- USD prices come from the subgraph's own pools, walked out from the stablecoin (USDC = 1):
  WETH through a WETH/USDC pool, other tokens through their pool with USDC or WETH;
- swap volume in USD is the mean of the two sides' USD values; V3 fees are volume times the
  pool's fee tier;
- V3 TVL is the pool's token balances (Mint and Swap deposits, less Collect withdrawals) at
  those prices, liquidity the in-range liquidity (Swap, and Mint/Burn inside the current
  tick); V2 TVL is the reserves (Sync) at those prices, totalSupply from LP mints and burns.

Reorgs are not followed (the local chain only reorganises in the chain publisher's tests).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dexwatch.core.schemas.pool_hour import HOUR_S
from infra.local.deployment import LocalDeployment, PoolInfo
from infra.local.evm import Rpc, decode, topic
from infra.local.subgraph.schema import StandInSubgraph

log = logging.getLogger("dexwatch.local.subgraph.indexer")

STABLECOIN = "USDC"
_ZERO_ADDRESS_TOPIC = "0x" + "00" * 32
_BLOCKS_PER_REQUEST = 2000
_V3_INITIALIZE = topic("Initialize(uint160,int24)")
_V3_SWAP = topic("Swap(address,address,int256,int256,uint160,uint128,int24)")
_V3_MINT = topic("Mint(address,address,int24,int24,uint128,uint256,uint256)")
_V3_BURN = topic("Burn(address,int24,int24,uint128,uint256,uint256)")
_V3_COLLECT = topic("Collect(address,address,int24,int24,uint128,uint128)")
_V2_SWAP = topic("Swap(address,uint256,uint256,uint256,uint256,address)")
_V2_MINT = topic("Mint(address,uint256,uint256)")
_V2_BURN = topic("Burn(address,uint256,uint256,address)")
_V2_SYNC = topic("Sync(uint112,uint112)")
_V2_TRANSFER = topic("Transfer(address,address,uint256)")
_TOPICS = sorted(
    {
        _V3_INITIALIZE,
        _V3_SWAP,
        _V3_MINT,
        _V3_BURN,
        _V3_COLLECT,
        _V2_SWAP,
        _V2_MINT,
        _V2_BURN,
        _V2_SYNC,
        _V2_TRANSFER,
    }
)


def decimal_string(value: float) -> str:
    """A BigDecimal as graph-node writes it: plain notation, no exponent."""
    return format(Decimal(repr(float(value))), "f")


def _signed(word: str) -> int:
    return int.from_bytes(bytes.fromhex(word.removeprefix("0x")), "big", signed=True)


@dataclasses.dataclass
class _Pool:
    """A pool's state as its subgraph tracks it (raw token units)."""

    info: PoolInfo
    decimals0: int
    decimals1: int
    # V3
    sqrt_price: int = 0
    tick: int = 0
    liquidity: int = 0
    # V3: token balances; V2: reserves (Sync)
    balance0: int = 0
    balance1: int = 0
    total_supply: int = 0  # V2 LP tokens
    tx_count: int = 0
    volume_usd: float = 0.0

    @property
    def price(self) -> float:
        """token1 per token0, decimals applied; 0 before the pool has a price."""
        if self.info.protocol == "v3":
            raw = (self.sqrt_price / 2**96) ** 2
        else:
            raw = self.balance1 / self.balance0 if self.balance0 else 0.0
        return raw * 10 ** (self.decimals0 - self.decimals1)

    def amounts(self) -> tuple[float, float]:
        return self.balance0 / 10**self.decimals0, self.balance1 / 10**self.decimals1


@dataclasses.dataclass
class _Hour:
    """One pool's running figures for one hour."""

    volume0: float = 0.0
    volume1: float = 0.0
    volume_usd: float = 0.0
    fees_usd: float = 0.0
    tx_count: int = 0
    open: float | None = None
    high: float = 0.0
    low: float = 0.0


class ChainIndexer:
    """Indexes the pools of ``subgraphs`` (by dex) from the local chain into them, up to the
    newest block at least ``lag_blocks`` below the head and stamped at least ``lag_s``
    before it: an indexer that lags, as The Graph's do."""

    def __init__(
        self,
        rpc_url: str,
        deployment: LocalDeployment,
        subgraphs: Mapping[str, StandInSubgraph],
        lag_blocks: int = 0,
        lag_s: float = 0.0,
    ) -> None:
        self._rpc = Rpc(rpc_url)
        self._subgraphs = dict(subgraphs)
        self.lag_blocks = lag_blocks
        self.lag_s = lag_s
        self._pools: dict[str, _Pool] = {}
        for info in deployment.pools:
            subgraph = self._subgraphs.get(info.dex)
            if subgraph is None:
                continue
            if subgraph.protocol != info.protocol:
                raise ValueError(f"{info.name} is a {info.protocol} pool, its subgraph is not")
            decimals = (deployment.tokens[s].decimals for s in (info.token0, info.token1))
            self._pools[info.address] = _Pool(info, *decimals)
        self._hours: dict[tuple[str, int], _Hour] = {}
        # Rows and pools changed since they were last handed to the subgraphs, by dex.
        self._changed_rows: dict[str, dict[str, dict[str, Any]]] = {}
        self._changed_pools: dict[str, set[str]] = {}
        # Pools are created in the block after the factories.
        self.last_block = deployment.deployed_at_block

    def close(self) -> None:
        self._rpc.close()

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Index new blocks as they come until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.index_once()
            except Exception as err:  # noqa: BLE001 - a node restart must not end the stand-in
                log.warning("indexing failed, retrying: %s", err)
            stop.wait(poll_s)

    def index_once(self) -> int:
        """Index up to the lagging target; returns the number of blocks indexed."""
        target = self._target(int(self._rpc.call("eth_blockNumber"), 16))
        first = self.last_block + 1
        for start in range(first, target + 1, _BLOCKS_PER_REQUEST):
            end = min(start + _BLOCKS_PER_REQUEST - 1, target)
            query = {
                "fromBlock": hex(start),
                "toBlock": hex(end),
                "address": sorted(self._pools),
                "topics": [_TOPICS],
            }
            logs = self._rpc.call("eth_getLogs", query) if self._pools else []
            numbers = sorted({int(entry["blockNumber"], 16) for entry in logs} | {end})
            blocks = self._rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
            timestamps = {n: int(b["timestamp"], 16) for n, b in zip(numbers, blocks, strict=True)}
            for entry in logs:
                self._apply(entry, timestamps[int(entry["blockNumber"], 16)])
            self._hand_over(end, timestamps[end])
            self.last_block = end
        return max(0, target - first + 1)

    def _target(self, head: int) -> int:
        """The newest block ``lag_blocks`` below ``head`` and stamped ``lag_s`` before it, by
        bisection above the last block indexed."""
        target = head - self.lag_blocks
        if self.lag_s <= 0 or target <= self.last_block:
            return target
        cutoff = self._timestamp(head) - self.lag_s
        low, high = self.last_block, target
        while low < high:
            middle = (low + high + 1) // 2
            if self._timestamp(middle) <= cutoff:
                low = middle
            else:
                high = middle - 1
        return low

    def _timestamp(self, number: int) -> int:
        return int(self._rpc.call("eth_getBlockByNumber", hex(number), False)["timestamp"], 16)

    # --- events -------------------------------------------------------------------------------

    def _apply(self, entry: dict[str, Any], timestamp: int) -> None:
        pool = self._pools[entry["address"].lower()]
        topics, data = entry["topics"], entry["data"]
        kind = topics[0]
        prices = self._usd_prices(pool.info.dex)
        p0, p1 = prices.get(pool.info.token0, 0.0), prices.get(pool.info.token1, 0.0)
        volume: tuple[float, float] | None = None
        if kind == _V3_INITIALIZE:
            pool.sqrt_price, pool.tick = decode(["uint160", "int24"], data)
            return
        if kind == _V3_SWAP:
            amount0, amount1, pool.sqrt_price, pool.liquidity, pool.tick = decode(
                ["int256", "int256", "uint160", "uint128", "int24"], data
            )
            pool.balance0 += amount0
            pool.balance1 += amount1
            volume = (abs(amount0), abs(amount1))
        elif kind == _V3_MINT:
            _, amount, amount0, amount1 = decode(["address", "uint128", "uint256", "uint256"], data)
            pool.balance0 += amount0
            pool.balance1 += amount1
            if _signed(topics[2]) <= pool.tick < _signed(topics[3]):
                pool.liquidity += amount
        elif kind == _V3_BURN:
            amount, _, _ = decode(["uint128", "uint256", "uint256"], data)
            if _signed(topics[2]) <= pool.tick < _signed(topics[3]):
                pool.liquidity -= amount
        elif kind == _V3_COLLECT:
            _, amount0, amount1 = decode(["address", "uint128", "uint128"], data)
            pool.balance0 -= amount0
            pool.balance1 -= amount1
        elif kind == _V2_SYNC:
            pool.balance0, pool.balance1 = decode(["uint112", "uint112"], data)
            return
        elif kind == _V2_TRANSFER:
            # LP tokens minted (from zero; the first mint locks some at the zero address)
            # or burnt (to zero).
            (value,) = decode(["uint256"], data)
            if topics[1] == _ZERO_ADDRESS_TOPIC:
                pool.total_supply += value
            elif topics[2] == _ZERO_ADDRESS_TOPIC:
                pool.total_supply -= value
            return
        elif kind == _V2_SWAP:
            in0, in1, out0, out1 = decode(["uint256"] * 4, data)
            volume = (in0 + out0, in1 + out1)
        elif kind not in (_V2_MINT, _V2_BURN):
            return
        self._count(pool, timestamp, volume, p0, p1)

    def _count(
        self,
        pool: _Pool,
        timestamp: int,
        volume: tuple[int, int] | None,
        p0: float,
        p1: float,
    ) -> None:
        """Fold a counted event into the pool's hour row (prices from before the event)."""
        hour_index = timestamp // HOUR_S
        hour = self._hours.setdefault((pool.info.address, hour_index), _Hour())
        hour.tx_count += 1
        pool.tx_count += 1
        if volume is not None:
            volume0 = volume[0] / 10**pool.decimals0
            volume1 = volume[1] / 10**pool.decimals1
            sides = [v * p for v, p in ((volume0, p0), (volume1, p1)) if p > 0]
            volume_usd = sum(sides) / len(sides) if sides else 0.0
            hour.volume0 += volume0
            hour.volume1 += volume1
            hour.volume_usd += volume_usd
            pool.volume_usd += volume_usd
            if pool.info.fee is not None:
                hour.fees_usd += volume_usd * pool.info.fee / 1e6
        token0_price = 1 / pool.price if pool.price > 0 else 0.0  # token0 per token1
        if hour.open is None:
            hour.open = hour.high = hour.low = token0_price
        hour.high, hour.low = max(hour.high, token0_price), min(hour.low, token0_price)
        prices = self._usd_prices(pool.info.dex)
        row = self._hour_row(pool, hour_index, hour, prices, token0_price)
        self._changed_rows.setdefault(pool.info.dex, {})[row["id"]] = row
        self._changed_pools.setdefault(pool.info.dex, set()).add(pool.info.address)

    # --- entities -----------------------------------------------------------------------------

    def _usd_prices(self, dex: str) -> dict[str, float]:
        """USD per token from this subgraph's own pools, walked out from the stablecoin."""
        prices = {STABLECOIN: 1.0}
        pools = [p for p in self._pools.values() if p.info.dex == dex and p.price > 0]
        changed = True
        while changed:
            changed = False
            for pool in pools:
                token0, token1 = pool.info.token0, pool.info.token1
                if token1 in prices and token0 not in prices:
                    prices[token0] = pool.price * prices[token1]
                    changed = True
                elif token0 in prices and token1 not in prices:
                    prices[token1] = prices[token0] / pool.price
                    changed = True
        return prices

    def _tvl_usd(self, pool: _Pool, prices: Mapping[str, float]) -> float:
        amount0, amount1 = pool.amounts()
        return amount0 * prices.get(pool.info.token0, 0.0) + amount1 * prices.get(
            pool.info.token1, 0.0
        )

    def _hour_row(
        self,
        pool: _Pool,
        hour_index: int,
        hour: _Hour,
        prices: Mapping[str, float],
        token0_price: float,
    ) -> dict[str, Any]:
        address = pool.info.address
        tvl = decimal_string(self._tvl_usd(pool, prices))
        if pool.info.protocol == "v3":
            return {
                "id": f"{address}-{hour_index}",
                "periodStartUnix": hour_index * HOUR_S,
                "pool": {"id": address},
                "liquidity": str(pool.liquidity),
                "sqrtPrice": str(pool.sqrt_price),
                "token0Price": decimal_string(token0_price),
                "token1Price": decimal_string(pool.price),
                "tick": str(pool.tick),
                "tvlUSD": tvl,
                "volumeToken0": decimal_string(hour.volume0),
                "volumeToken1": decimal_string(hour.volume1),
                "volumeUSD": decimal_string(hour.volume_usd),
                "feesUSD": decimal_string(hour.fees_usd),
                "txCount": str(hour.tx_count),
                "open": decimal_string(hour.open or 0.0),
                "high": decimal_string(hour.high),
                "low": decimal_string(hour.low),
                "close": decimal_string(token0_price),
            }
        amount0, amount1 = pool.amounts()
        return {
            "id": f"{address}-{hour_index}",
            "hourStartUnix": hour_index * HOUR_S,
            "pair": {"id": address},
            "reserve0": decimal_string(amount0),
            "reserve1": decimal_string(amount1),
            "totalSupply": decimal_string(pool.total_supply / 10**18),
            "reserveUSD": tvl,
            "hourlyVolumeToken0": decimal_string(hour.volume0),
            "hourlyVolumeToken1": decimal_string(hour.volume1),
            "hourlyVolumeUSD": decimal_string(hour.volume_usd),
            "hourlyTxns": str(hour.tx_count),
        }

    def _pool_row(self, pool: _Pool) -> dict[str, Any]:
        tvl = decimal_string(self._tvl_usd(pool, self._usd_prices(pool.info.dex)))
        common = {
            "id": pool.info.address,
            "volumeUSD": decimal_string(pool.volume_usd),
            "txCount": str(pool.tx_count),
        }
        if pool.info.protocol == "v3":
            return {**common, "totalValueLockedUSD": tvl, "liquidity": str(pool.liquidity)}
        supply = decimal_string(pool.total_supply / 10**18)
        return {**common, "reserveUSD": tvl, "totalSupply": supply}

    def _hand_over(self, block: int, timestamp: int) -> None:
        """Give each subgraph its changed rows and pools with the new indexed block, at once."""
        for dex, subgraph in self._subgraphs.items():
            rows = self._changed_rows.pop(dex, {})
            pools = [self._pool_row(self._pools[a]) for a in self._changed_pools.pop(dex, set())]
            subgraph.update(rows.values(), pools, (block, timestamp))
