"""The local deployment manifest: what `dexwatch local up` deployed, and where.

Written once by the local stack, read by the simulator, the chain publisher (its factories)
and the tests. Production has no manifest: factories come from settings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from dexwatch.core.files import write_atomically
from dexwatch.core.market_settings import AssetConfig
from dexwatch.core.settings import Dex, FactoryConfig, Protocol


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenInfo(_Strict):
    symbol: str
    address: str
    decimals: int
    # The USD price the market simulator starts from; USDC is the USD numeraire.
    initial_usd_price: float
    # What it should hold (market.assets): "USD" for the stablecoins; None: it floats.
    peg: str | None = None


class PoolInfo(_Strict):
    name: str  # e.g. "uniswap_v3:WETH/USDC:500"
    dex: Dex
    protocol: Protocol
    address: str
    token0: str  # token symbols, in the pool's own (address-sorted) order
    token1: str
    fee: int | None = None  # V3 fee in hundredths of a bip; None for V2 pairs


class Accounts(_Strict):
    deployer: str
    liquidity_providers: list[str]
    traders: list[str]
    # Two colluding addresses that the incident injector uses (wash trading, rug pulls).
    adversaries: list[str]


class LocalDeployment(_Strict):
    chain_id: int
    rpc_url: str
    deployed_at_block: int
    tokens: dict[str, TokenInfo]
    factories: list[FactoryConfig]
    pools: list[PoolInfo]
    # Helper contracts by name, e.g. "v3_swap_router", "v3_position_manager".
    periphery: dict[str, str]
    accounts: Accounts

    def assets(self) -> list[AssetConfig]:
        """The tokens as the market view's assets (market.assets)."""
        return [
            AssetConfig(address=t.address, symbol=t.symbol, decimals=t.decimals, peg=t.peg)
            for t in self.tokens.values()
        ]

    def pool(self, name_or_address: str) -> PoolInfo:
        key = name_or_address.lower()
        for pool in self.pools:
            if key in (pool.name.lower(), pool.address.lower()):
                return pool
        names = ", ".join(p.name for p in self.pools)
        raise KeyError(f"no pool {name_or_address!r} in the local deployment (have: {names})")

    def save(self, path: Path) -> None:
        write_atomically(path, self.model_dump_json(indent=2).encode())

    @classmethod
    def load(cls, path: Path) -> LocalDeployment:
        if not path.is_file():
            raise FileNotFoundError(
                f"no local deployment at {path}: start the local stack with `dexwatch local up`"
            )
        return cls.model_validate_json(path.read_text())
