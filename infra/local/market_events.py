"""Chain-wide incidents on the local market, with their ground truth: what moves is the
market's fair prices (``FairPrices.shift``), and the pools follow as on a real chain, through
the arbitrageur and the traders, block after block:

- market-move: every floating token (all but the USD stablecoins) falls 8 % within three
  blocks: every pool priced in a stablecoin moves, the pools of two floating tokens do not.
- asset-move: one floating token (default WBTC) falls 8 % within three blocks, alone: the
  same move as a market move's, on its pools only (each keeps its own alert).
- depeg: one USD stablecoin (default DAI) drifts from 1.00 to 0.90 over an hour.

Beside the live simulator (``dexwatch simulate inject``), the move is asked of it through a
file in the state folder that it reads every block (``ShiftRequests``); into a history run
the bench hands the simulator itself, which mines the move's blocks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from dexwatch.core.schemas.labels import IncidentLabel
from infra.local import evm
from infra.local.deployment import LocalDeployment
from infra.local.evm import Rpc
from infra.local.settings import LocalSettings

log = logging.getLogger("dexwatch.local.market_events")

MARKET_EVENT_KINDS = ("market-move", "asset-move", "depeg")
_MOVE = 0.92  # the market's and the lone asset's price factor
_MOVE_BLOCKS = 3
_DEPEG = 0.90
_DEPEG_S = 3600.0
_DEFAULT_ASSET = {"asset-move": "WBTC", "depeg": "DAI"}


@dataclass(frozen=True)
class MarketEvent:
    """A move of fair prices: these tokens by these factors over ``over_s`` seconds."""

    kind: str
    factors: dict[str, float]
    over_s: float

    def describe(self) -> str:
        moves = ", ".join(f"{s} {f - 1:+.0%}" for s, f in sorted(self.factors.items()))
        return f"fair prices moved over {self.over_s:g} s: {moves}"


def plan_event(
    kind: str, deployment: LocalDeployment, block_s: float, asset: str | None = None
) -> MarketEvent:
    """The fair-price move of ``kind`` on this deployment (``asset``: the token that moves
    alone or depegs)."""
    if kind not in MARKET_EVENT_KINDS:
        raise ValueError(f"unknown market event {kind!r}; choose one of {MARKET_EVENT_KINDS}")
    floating = [s for s, token in deployment.tokens.items() if token.peg is None]
    if kind == "market-move":
        return MarketEvent(kind, dict.fromkeys(floating, _MOVE), _MOVE_BLOCKS * block_s)
    symbol = asset or _DEFAULT_ASSET[kind]
    token = deployment.tokens.get(symbol)
    if token is None:
        raise ValueError(f"no token {symbol!r} in the deployment")
    if kind == "depeg":
        if token.peg != "USD":
            raise ValueError(f"{symbol} holds no USD peg: choose a stablecoin")
        return MarketEvent(kind, {symbol: _DEPEG}, _DEPEG_S)
    if token.peg is not None:
        raise ValueError(f"{symbol} is pegged: an asset's move is a floating token's")
    return MarketEvent(kind, {symbol: _MOVE}, _MOVE_BLOCKS * block_s)


class ShiftRequests:
    """The live simulator's mailbox of fair-price moves: a JSON-lines file in the state
    folder, appended by ``dexwatch simulate inject`` and read by the simulator each block."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "market-shifts.jsonl"
        self._read = self.path.stat().st_size if self.path.is_file() else 0

    def send(self, event: MarketEvent) -> None:
        with self.path.open("ab") as mailbox:
            mailbox.write(orjson.dumps({"factors": event.factors, "over_s": event.over_s}) + b"\n")

    def receive(self) -> list[tuple[dict[str, float], float]]:
        """The moves asked since the last call."""
        if not self.path.is_file() or self.path.stat().st_size <= self._read:
            return []
        with self.path.open("rb") as mailbox:
            mailbox.seek(self._read)
            lines = mailbox.read().splitlines()
            self._read = mailbox.tell()
        requests = [orjson.loads(line) for line in lines if line.strip()]
        return [(r["factors"], r["over_s"]) for r in requests]


def inject_market_event(
    settings: LocalSettings,
    deployment: LocalDeployment,
    kind: str,
    asset: str | None = None,
    simulator=None,
) -> list[IncidentLabel]:
    """Move the market's fair prices and return the ground truth: one label for a market
    move (pool ``market``) or a depeg (``asset:<address>``), one per pool of a lone asset's
    move.

    Args:
        simulator: a ``MarketSimulator`` mining history, which mines the move's blocks (a
            block interval apart; a depeg's hour as its history); None: the live simulator
            is asked and followed in time.
    """
    block_s = settings.simulator.block_interval_s
    event = plan_event(kind, deployment, block_s, asset)
    rpc = Rpc(settings.local.rpc_url)
    try:
        first, _ = evm.latest_block(rpc)
        if simulator is not None:
            simulator.prices.shift(event.factors, event.over_s)
            # A move's three blocks a block apart; a depeg's hour as history is mined.
            interval = round(block_s) if kind != "depeg" else None
            simulator.generate_history(event.over_s / 3600, block_interval_s=interval)
        else:
            ShiftRequests(settings.state_dir).send(event)
            log.info("asked the live market for a %s: %s", kind, event.describe())
            time.sleep(event.over_s + block_s)
        last, _ = evm.latest_block(rpc)
        first += 1
        first_ts, last_ts = (evm.block_timestamp(rpc, n) for n in (first, last))
    finally:
        rpc.close()
    details = event.describe()
    if kind == "market-move":
        places = [("market", "market")]
    elif kind == "depeg":
        (symbol,) = event.factors
        places = [("market", f"asset:{deployment.tokens[symbol].address}")]
    else:
        (symbol,) = event.factors
        places = [(p.dex, p.address) for p in deployment.pools if symbol in (p.token0, p.token1)]
    return [
        IncidentLabel(
            label_id=IncidentLabel.make_id(deployment.chain_id, place, kind, first),
            chain_id=deployment.chain_id,
            dex=dex,
            pool=place,
            kind=kind,  # type: ignore[arg-type]
            first_block=first,
            last_block=last,
            first_timestamp=datetime.fromtimestamp(first_ts, UTC),
            last_timestamp=datetime.fromtimestamp(last_ts, UTC),
            injected_at=datetime.now(UTC),
            details=details,
        )  # fmt: skip
        for dex, place in places
    ]
