"""The market section of the configuration: the chain's assets worth pricing together, the
pegs they should hold, and when a common move or a broken peg is an incident
(``dexwatch.core.features.market``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from pydantic import Field, field_validator, model_validator

from dexwatch.core.settings_base import StrictModel, normalize_address


class AssetConfig(StrictModel):
    """One token of the chain, priced through every followed pool that holds it."""

    address: str
    symbol: str = Field(min_length=1)
    decimals: int = Field(18, ge=0, le=36)
    # The unit it should hold, shared by every asset pegged to it: "USD" for USD stablecoins,
    # "ETH" for WETH, staked and wrapped ETH. None: it floats.
    peg: str | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return normalize_address(value)


class MarketSettings(StrictModel):
    # Empty: no market view (a pool's moves are judged alone).
    assets: list[AssetConfig] = Field(default_factory=list)
    # The peg whose assets are the market's unit: the market moves against them.
    numeraire: str = "USD"
    # A market move: the median asset's price against the numeraire moved this much (a
    # fraction) within move_horizon_s, and at least min_assets_moved assets moved as much
    # the same way.
    move_threshold: float = Field(0.05, gt=0, lt=1)
    move_horizon_s: int = Field(300, ge=1)
    min_assets_moved: int = Field(2, ge=2)
    # A broken peg: an asset this far (a fraction) from the other assets of its peg.
    peg_tolerance: float = Field(0.01, gt=0, lt=1)
    # How long before its move the market is looked at to tell which asset of a two-asset
    # peg left it (the one that moved against the floating assets).
    peg_horizon_s: int = Field(3600, ge=1)

    @model_validator(mode="after")
    def _distinct_assets(self) -> MarketSettings:
        seen: set[str] = set()
        for asset in self.assets:
            if asset.address in seen:
                raise ValueError(f"market.assets lists {asset.address} twice")
            seen.add(asset.address)
        return self

    @property
    def log_move_threshold(self) -> float:
        return math.log1p(self.move_threshold)

    @property
    def log_peg_tolerance(self) -> float:
        return math.log1p(self.peg_tolerance)


@dataclasses.dataclass(frozen=True)
class Markets:
    """Each chain's market section: the chain's own assets (chains[].assets) with the
    market section's thresholds, the market section itself for any other chain."""

    default: MarketSettings
    by_chain: Mapping[int, MarketSettings] = dataclasses.field(default_factory=dict)

    def of(self, chain_id: int) -> MarketSettings:
        return self.by_chain.get(chain_id, self.default)

    @property
    def assets(self) -> list[AssetConfig]:
        """Every chain's assets (to name tokens by their symbols)."""
        markets = [self.default, *self.by_chain.values()]
        return [asset for market in markets for asset in market.assets]

    @property
    def any_assets(self) -> bool:
        """Whether any chain has a market view."""
        return bool(self.default.assets) or any(m.assets for m in self.by_chain.values())
