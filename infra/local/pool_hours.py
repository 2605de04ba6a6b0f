"""PoolHours computed from the local chain's pool events: what a subgraph would index for
the simulated market, for training the first hourly model on it (no subgraph runs locally).

It follows the Uniswap subgraphs' bookkeeping, simplified to the local market:

- USD prices: USDC is the numeraire (as in the market simulator); every other token is
  priced through the pools, from the latest price of a pool whose other token is priced
  (WETH from WETH/USDC, LINK from LINK/WETH, ...), first pool of the deployment first.
- volume_usd: per swap, the mean of both sides' USD values; fees_usd: volume times the fee
  tier (V3) or 0.3 % (V2).
- tvl_usd: the pool's token balances at the hour's end in USD. V2: the reserves of the last
  Sync; V3: everything that entered (Mint, Swap) less what left (Swap, Burn), counted from
  the pool's creation, so the recording must start at the deployment.
- liquidity: V3 in-range liquidity (the last Swap's, moved by Mints and Burns whose range
  holds the current tick); V2 sqrt(reserve0 * reserve1) in raw units, which is the LP token
  supply up to the fees accrued since the first Mint (LP transfers are not pool events).
- tx_count: distinct transactions with an event of the pool in the hour.

Only whole hours inside the recording are produced; an hour without events is ``filled``
(state carried forward, zero volume), as the subgraph publisher fills quiet hours.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from dexwatch.contracts.deployment import LocalDeployment, PoolInfo
from dexwatch.contracts.pool_event import PoolEvent
from dexwatch.contracts.pool_hour import HOUR_S, PoolHour

NUMERAIRE = "USDC"
_Q96 = 2**96
_V2_FEE = 0.003


@dataclass
class _PoolBook:
    info: PoolInfo
    scale0: float  # raw units per whole token
    scale1: float
    balance0: float = 0.0  # whole tokens
    balance1: float = 0.0
    price: float | None = None  # token1 per token0
    liquidity: float = 0.0
    tick: int | None = None
    # The hour being accumulated.
    volume_usd: float = 0.0
    transactions: set[str] = field(default_factory=set)


def pool_hours_from_events(
    events: Iterable[PoolEvent], deployment: LocalDeployment
) -> list[PoolHour]:
    """The PoolHours of every pool of ``deployment`` over the whole hours the events span.
    Retracted events are left out."""
    ordered = sorted(events, key=lambda e: (e.block_number, e.log_index))
    retracted = {e.event_id for e in ordered if e.kind == "retraction"}
    live = [e for e in ordered if e.kind == "event" and e.event_id not in retracted]
    if not live:
        return []
    books = {
        p.address.lower(): _PoolBook(
            p,
            10.0 ** deployment.tokens[p.token0].decimals,
            10.0 ** deployment.tokens[p.token1].decimals,
        )
        for p in deployment.pools
    }
    first_hour = -(-live[0].block_timestamp // HOUR_S) * HOUR_S  # the first whole hour
    last_block = live[-1].block_number
    hours: list[PoolHour] = []
    hour_start = live[0].block_timestamp // HOUR_S * HOUR_S
    for event in live:
        while event.block_timestamp >= hour_start + HOUR_S:
            if hour_start >= first_hour:
                hours += _close_hour(books, deployment, hour_start, last_block)
            else:
                _reset(books)
            hour_start += HOUR_S
        book = books.get(event.pool)
        if book is not None:
            _apply(book, event, _usd_prices(books))
    return hours  # the last event's hour is still open: left out


def _apply(book: _PoolBook, event: PoolEvent, usd: dict[str, float]) -> None:
    args = event.args
    info = book.info
    book.transactions.add(event.tx_hash)
    if event.event == "Swap":
        if "sqrtPriceX96" in args:  # V3: amounts from the pool's side, signed
            amount0 = float(args["amount0"]) / book.scale0
            amount1 = float(args["amount1"]) / book.scale1
            book.balance0 += amount0
            book.balance1 += amount1
            book.price = (int(args["sqrtPriceX96"]) / _Q96) ** 2 * book.scale0 / book.scale1
            book.liquidity = float(args["liquidity"])
            book.tick = int(args["tick"])
        else:
            amount0 = (float(args["amount0In"]) + float(args["amount0Out"])) / book.scale0
            amount1 = (float(args["amount1In"]) + float(args["amount1Out"])) / book.scale1
        values = [
            abs(amount) * usd[symbol]
            for amount, symbol in ((amount0, info.token0), (amount1, info.token1))
            if symbol in usd
        ]
        if values:
            book.volume_usd += sum(values) / len(values)
    elif event.event == "Sync":
        book.balance0 = float(args["reserve0"]) / book.scale0
        book.balance1 = float(args["reserve1"]) / book.scale1
        if book.balance0 > 0:
            book.price = book.balance1 / book.balance0
        book.liquidity = math.sqrt(float(args["reserve0"]) * float(args["reserve1"]))
    elif event.event in ("Mint", "Burn") and "amount" in args:  # V3; V2 follows its Syncs
        sign = 1.0 if event.event == "Mint" else -1.0
        book.balance0 += sign * float(args["amount0"]) / book.scale0
        book.balance1 += sign * float(args["amount1"]) / book.scale1
        if book.tick is not None and int(args["tickLower"]) <= book.tick < int(args["tickUpper"]):
            book.liquidity = max(0.0, book.liquidity + sign * float(args["amount"]))


def _usd_prices(books: dict[str, _PoolBook]) -> dict[str, float]:
    """Token → USD, through the pools' latest prices from the numeraire outwards."""
    usd = {NUMERAIRE: 1.0}
    changed = True
    while changed:
        changed = False
        for book in books.values():
            token0, token1, price = book.info.token0, book.info.token1, book.price
            if not price:
                continue
            if token1 in usd and token0 not in usd:
                usd[token0] = price * usd[token1]
                changed = True
            elif token0 in usd and token1 not in usd:
                usd[token1] = usd[token0] / price
                changed = True
    return usd


def _close_hour(
    books: dict[str, _PoolBook], deployment: LocalDeployment, hour_start: int, indexed_block: int
) -> list[PoolHour]:
    usd = _usd_prices(books)
    hours = []
    for book in books.values():
        info = book.info
        if book.price is None:  # not trading yet
            continue
        tvl = sum(
            max(balance, 0.0) * usd[symbol]
            for balance, symbol in ((book.balance0, info.token0), (book.balance1, info.token1))
            if symbol in usd
        )
        fee = info.fee / 1e6 if info.fee is not None else _V2_FEE
        hours.append(
            PoolHour(
                chain_id=deployment.chain_id,
                dex=info.dex,
                pool=info.address.lower(),
                hour_start=hour_start,
                volume_usd=book.volume_usd,
                tvl_usd=tvl,
                liquidity=book.liquidity,
                fees_usd=book.volume_usd * fee,
                tx_count=len(book.transactions),
                token0_price=book.price,
                token1_price=1.0 / book.price,
                filled=not book.transactions,
                indexed_block=indexed_block,
            )
        )
    _reset(books)
    return hours


def _reset(books: dict[str, _PoolBook]) -> None:
    for book in books.values():
        book.volume_usd = 0.0
        book.transactions = set()
