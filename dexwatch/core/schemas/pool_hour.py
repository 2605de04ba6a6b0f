"""The ``pool-hourly`` message: one pool's statistics for one hour, from a subgraph.

Uniswap V3 ``poolHourDatas`` and SushiSwap ``pairHourDatas`` are normalised into this one
record by the subgraph publisher. The wire format is JSON; attributes repeat the fields
subscribers filter on, and ``event_time`` carries the end of the hour (the pipeline's event
time for the row). ``hour_id`` (chain_id:pool:hour_start) is the natural id: the same hour
published twice is the same record.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dexwatch.core.schemas.pool_event import (
    DEXES,
    EVENT_TIME_ATTRIBUTE,
    MAX_BLOCK_TIMESTAMP,
    MessageError,
    rfc3339,
)

SCHEMA_VERSION = 1
HOUR_S = 3600
HOUR_ID_ATTRIBUTE = "hour_id"


class PoolHour(BaseModel):
    """One pool and hour. USD figures are the subgraph's own (its price oracle)."""

    # Every number finite: "NaN" and "Infinity" would pass the bounds below or poison the
    # hourly statistics of a whole day.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    chain_id: int = Field(ge=1, le=2**63 - 1)
    dex: Literal["uniswap_v3", "uniswap_v2", "sushiswap"]
    pool: str = Field(pattern=r"^0x[0-9a-f]{40}$")
    hour_start: int = Field(
        ge=0, le=MAX_BLOCK_TIMESTAMP - HOUR_S, description="unix seconds, a multiple of 3600"
    )
    volume_usd: float = Field(ge=0)
    tvl_usd: float = Field(ge=0, description="V3 tvlUSD; V2 reserveUSD")
    liquidity: float = Field(ge=0, description="V3 in-range liquidity; V2 LP token supply")
    fees_usd: float = Field(ge=0, description="V3 feesUSD; V2 volume times the pair's fee")
    tx_count: int = Field(ge=0, le=2**63 - 1, description="Transactions in the hour")
    token0_price: float = Field(ge=0, description="token0 in token1 units, at the hour's end")
    token1_price: float = Field(ge=0, description="token1 in token0 units, at the hour's end")
    # True when the subgraph had no row for this quiet hour: the publisher carried the
    # previous hour's state forward with zero volume and transactions.
    filled: bool = False
    indexed_block: int = Field(
        ge=0, le=2**63 - 1, description="The subgraph's _meta block when published"
    )

    @model_validator(mode="after")
    def _whole_hour(self) -> PoolHour:
        if self.hour_start % HOUR_S:
            raise ValueError(f"hour_start {self.hour_start} is not a whole hour")
        if self.dex not in DEXES:  # keeps the two contracts' dex lists in step
            raise ValueError(f"unknown dex {self.dex}")
        return self

    @property
    def hour_id(self) -> str:
        return f"{self.chain_id}:{self.pool}:{self.hour_start}"

    @property
    def hour_end(self) -> int:
        return self.hour_start + HOUR_S

    def attributes(self) -> dict[str, str]:
        return {
            "schema_version": str(SCHEMA_VERSION),
            "chain_id": str(self.chain_id),
            "dex": self.dex,
            "pool": self.pool,
            HOUR_ID_ATTRIBUTE: self.hour_id,
            EVENT_TIME_ATTRIBUTE: rfc3339(self.hour_end),
        }

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes) -> PoolHour:
        """Parse and check a message; raises MessageError saying what is wrong."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(message)"
            raise MessageError(f"{where}: {first['msg']}") from None
