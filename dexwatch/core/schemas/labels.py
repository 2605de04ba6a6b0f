"""Ground truth of injected incidents: the ``incident_labels`` table that evaluation reads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

IncidentKind = Literal[
    "liquidity-drain",
    "slow-drain",
    "quiet-pool-drain",
    "rug-pull",
    "fresh-pool-rug",
    "price-manipulation",
    "wash-trading",
    "sandwich",
    "round-trips",
    # Chain-wide (infra.local.market_events): labelled with the pool "market" or
    # "asset:<address>", an asset's move with each of its pools.
    "market-move",
    "asset-move",
    "depeg",
]
INCIDENT_KINDS: tuple[str, ...] = IncidentKind.__args__  # type: ignore[attr-defined]
# The alert kind each incident should raise (dexwatch.core.features.kinds).
ALERT_KIND_OF_INCIDENT: dict[str, str] = {
    "liquidity-drain": "liquidity-drain",
    "slow-drain": "liquidity-drain",
    "quiet-pool-drain": "liquidity-drain",
    "rug-pull": "rug-pull",
    "fresh-pool-rug": "rug-pull",
    "price-manipulation": "price-dislocation",
    "wash-trading": "wash-trading",
    "sandwich": "sandwich",
    "round-trips": "round-trips",
    "market-move": "market-move",
    "asset-move": "price-dislocation",
    "depeg": "depeg",
}


class IncidentLabel(BaseModel):
    """One injected incident: which pool, what, and the blocks and times it spans."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label_id: str  # natural key: chain_id:pool:kind:first_block
    chain_id: int
    dex: str
    pool: str
    kind: IncidentKind
    first_block: int
    last_block: int
    first_timestamp: datetime
    last_timestamp: datetime
    injected_at: datetime
    # What the injector did, for a person reading the label (e.g. "removed 62% of liquidity").
    details: str

    @staticmethod
    def make_id(chain_id: int, pool: str, kind: str, first_block: int) -> str:
        return f"{chain_id}:{pool}:{kind}:{first_block}"
