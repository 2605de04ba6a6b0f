"""Hand-made pool events and messages of the shape the chain publisher sends: valid ones, and
every kind of malformed one the pipeline must dead-letter (``POISON``). The tests and
bench/bad_input.py probe the pipeline with them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import orjson

from dexwatch.core.schemas.pool_event import PoolEvent

CHAIN_ID = 31337
V3_POOL = "0x" + "3a" * 20
V2_POOL = "0x" + "2b" * 20
TOKENS = ("0x" + "0a" * 20, "0x" + "0b" * 20)
TRADER = "0x" + "77" * 20
# sqrtPriceX96 of a price of 1 (token1 per token0), and a busy pool's in-range liquidity.
SQRT_PRICE_1 = 2**96
LIQUIDITY = 10**21


def _hash(n: int, salt: int = 0) -> str:
    return f"0x{salt:08x}{n:056x}"


def announcement(pool: str, dex: str, timestamp: int, index: int = 0) -> PoolEvent:
    """The factory log that created ``pool``: PoolCreated (uniswap_v3) or PairCreated."""
    if dex == "uniswap_v3":
        event, args = "PoolCreated", {"token0": TOKENS[0], "token1": TOKENS[1], "fee": "500",
                                      "tickSpacing": "10", "pool": pool}  # fmt: skip
    else:
        event, args = "PairCreated", {"token0": TOKENS[0], "token1": TOKENS[1], "pair": pool,
                                      "allPairsLength": str(index + 1)}  # fmt: skip
    return PoolEvent(
        chain_id=CHAIN_ID, dex=dex, pool=pool, event=event, block_number=1,
        block_hash=_hash(1, 0xC0), block_timestamp=timestamp, tx_hash=_hash(index, 0xC1),
        log_index=index, args=args,
    )  # fmt: skip


def v3_swap(n: int, timestamp: int, price_step: int = 0, amount: int = 10**18) -> PoolEvent:
    """A V3 swap on V3_POOL in block ``n``; ``price_step`` moves sqrtPriceX96 by 0.01 % steps."""
    sqrt_price = SQRT_PRICE_1 + price_step * SQRT_PRICE_1 // 10_000
    return PoolEvent(
        chain_id=CHAIN_ID, dex="uniswap_v3", pool=V3_POOL, event="Swap", block_number=n,
        block_hash=_hash(n), block_timestamp=timestamp, tx_hash=_hash(n, 1), log_index=0,
        args={"sender": TRADER, "recipient": f"0x{n % 7 + 1:040x}", "amount0": str(-amount),
              "amount1": str(amount), "sqrtPriceX96": str(sqrt_price),
              "liquidity": str(LIQUIDITY), "tick": "0"},
    )  # fmt: skip


def v2_sync_swap(n: int, timestamp: int, reserve0: int = 10**21) -> list[PoolEvent]:
    """A V2 swap on V2_POOL in block ``n``: its Sync, then the Swap."""
    common = dict(chain_id=CHAIN_ID, dex="sushiswap", pool=V2_POOL, block_number=n,
                  block_hash=_hash(n, 2), block_timestamp=timestamp,
                  tx_hash=_hash(n, 3))  # fmt: skip
    return [
        PoolEvent(**common, event="Sync", log_index=0,
                  args={"reserve0": str(reserve0), "reserve1": str(2 * reserve0)}),
        PoolEvent(**common, event="Swap", log_index=1,
                  args={"sender": TRADER, "to": f"0x{n % 5 + 1:040x}", "amount0In": "0",
                        "amount1In": "1000000", "amount0Out": "499000", "amount1Out": "0"}),
    ]  # fmt: skip


def v2_burn(n: int, timestamp: int, amount0: int, amount1: int) -> PoolEvent:
    return PoolEvent(
        chain_id=CHAIN_ID, dex="sushiswap", pool=V2_POOL, event="Burn", block_number=n,
        block_hash=_hash(n, 2), block_timestamp=timestamp, tx_hash=_hash(n, 3), log_index=2,
        args={"sender": TRADER, "to": TRADER, "amount0": str(amount0), "amount1": str(amount1)},
    )  # fmt: skip


def _with_args(event: PoolEvent, **args: str) -> bytes:
    return dataclasses.replace(event, args={**event.args, **args}).to_json()


def _with_fields(original: PoolEvent, **fields) -> bytes:
    raw = original.to_dict()
    raw.update(fields)
    return orjson.dumps(raw)


def _with_raw_arg(event: PoolEvent, name: str, raw_value: str) -> bytes:
    # orjson writes no bare NaN; the literal text goes in by hand.
    data = event.to_json()
    return data.replace(f'"{name}":"{event.args[name]}"'.encode(), f'"{name}":{raw_value}'.encode())


# Messages that must be dead-lettered at parsing, by what is wrong with them. Each takes a
# valid V3 swap and a valid V2 Burn to start from. The first ones crashed the earlier parser.
POISON: dict[str, Callable[[PoolEvent, PoolEvent], bytes]] = {
    "sqrt price with a fraction": lambda v3, v2: _with_args(v3, sqrtPriceX96="1.5"),
    "sqrt price in hex": lambda v3, v2: _with_args(v3, sqrtPriceX96="0x1f"),
    "sqrt price NaN": lambda v3, v2: _with_args(v3, sqrtPriceX96="NaN"),
    "sqrt price of 400 digits": lambda v3, v2: _with_args(v3, sqrtPriceX96="9" * 400),
    "sqrt price beyond uint160": lambda v3, v2: _with_args(v3, sqrtPriceX96=str(2**160)),
    "liquidity Infinity": lambda v3, v2: _with_args(v3, liquidity="Infinity"),
    "amount with a plus sign": lambda v3, v2: _with_args(v3, amount1="+5"),
    "amount with underscores": lambda v3, v2: _with_args(v3, amount1="1_000"),
    "amount with leading zeros": lambda v3, v2: _with_args(v3, amount1="007"),
    "amount in unicode digits": lambda v3, v2: _with_args(v3, amount1="٣"),
    "tick beyond int24": lambda v3, v2: _with_args(v3, tick=str(2**23)),
    "recipient not an address": lambda v3, v2: _with_args(v3, recipient="0x01"),
    "recipient in upper case": lambda v3, v2: _with_args(v3, recipient="0x" + "AB" * 20),
    "an argument missing": lambda v3, v2: dataclasses.replace(
        v3, args={k: v for k, v in v3.args.items() if k != "liquidity"}
    ).to_json(),
    "an unknown argument": lambda v3, v2: _with_args(v3, extra="1"),
    "a number as a JSON number": lambda v3, v2: _with_raw_arg(v3, "amount1", "5"),
    "NaN as a JSON literal": lambda v3, v2: _with_raw_arg(v3, "amount1", "NaN"),
    "V2 burn with a negative amount": lambda v3, v2: _with_args(v2, amount0="-5"),
    "V2 burn beyond uint256": lambda v3, v2: _with_args(v2, amount1=str(2**256)),
    "pool with a colon": lambda v3, v2: _with_fields(v3, pool="0xab:cd"),
    "pool too short": lambda v3, v2: _with_fields(v3, pool="0x1234"),
    "block hash not a hash": lambda v3, v2: _with_fields(v3, block_hash="0xzz"),
    "negative block number": lambda v3, v2: _with_fields(v3, block_number=-1),
    "block time beyond year 9999": lambda v3, v2: _with_fields(v3, block_timestamp=10**13),
    "chain id 0": lambda v3, v2: _with_fields(v3, chain_id=0),
    "a float block number": lambda v3, v2: _with_fields(v3, block_number=1.5),
    "an event a V3 pool does not have": lambda v3, v2: _with_fields(v3, event="Sync"),
    "an unknown field": lambda v3, v2: _with_fields(v3, note="hi"),
    "event id that does not match": lambda v3, v2: _with_fields(v3, event_id="31337:x:y:0"),
    "not JSON": lambda v3, v2: b"\x00garbage",
    "a JSON list": lambda v3, v2: b"[1, 2]",
    "schema version 2": lambda v3, v2: _with_fields(v3, schema_version=2),
}
