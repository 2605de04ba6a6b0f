"""Hour rows as The Graph returns them (BigInt/BigDecimal as strings), to feed the stand-in
in tests and benchmarks."""

from __future__ import annotations

from typing import Any

from dexwatch.core.settings import Settings
from infra.local.settings import load_local_settings

HOUR = 3600
# A whole hour well in the past: the publisher never waits for the wall clock to reach it.
H0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def default_sources() -> tuple[Any, Any]:
    """The default Uniswap V3 and SushiSwap sources (their paths name the stand-in's routes)."""
    settings: Settings = load_local_settings()
    v3, v2 = settings.subgraph.sources
    return v3, v2


def pool_address(n: int) -> str:
    return f"0x{n:040x}"


def v3_row(pool: str, hour: int, volume: float = 1000.0, **fields: Any) -> dict[str, Any]:
    row = {
        "id": f"{pool}-{hour // HOUR}",
        "periodStartUnix": hour,
        "pool": {"id": pool},
        "liquidity": "5000000000000000000",
        "sqrtPrice": "3543191142285914378072636784640",
        "token0Price": "0.0005",
        "token1Price": "2000",
        "tick": "200000",
        "tvlUSD": "1500000.25",
        "volumeToken0": "0.5",
        "volumeToken1": "1000",
        "volumeUSD": str(volume),
        "feesUSD": str(volume * 0.0005),
        "txCount": "7",
        "open": "0.0005",
        "high": "0.0005",
        "low": "0.0005",
        "close": "0.0005",
    }
    row.update(fields)
    return row


def v2_row(pair: str, hour: int, volume: float = 500.0, **fields: Any) -> dict[str, Any]:
    row = {
        "id": f"{pair}-{hour // HOUR}",
        "hourStartUnix": hour,
        "pair": {"id": pair},
        "reserve0": "400",
        "reserve1": "1200000",
        "totalSupply": "21000.5",
        "reserveUSD": "2400000",
        "hourlyVolumeToken0": "0.1",
        "hourlyVolumeToken1": "300",
        "hourlyVolumeUSD": str(volume),
        "hourlyTxns": "3",
    }
    row.update(fields)
    return row


def v3_pool(pool: str, tvl: float = 1.0) -> dict[str, Any]:
    return {
        "id": pool,
        "totalValueLockedUSD": str(tvl),
        "liquidity": "1",
        "volumeUSD": "0",
        "txCount": "1",
    }


def v2_pair(pair: str, tvl: float = 1.0) -> dict[str, Any]:
    return {
        "id": pair,
        "reserveUSD": str(tvl),
        "totalSupply": "1",
        "volumeUSD": "0",
        "txCount": "1",
    }
