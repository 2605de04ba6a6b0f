"""Private helpers of the local-chain tools (deploy, market simulator, incident injector).

A small batched JSON-RPC client, ABI encoding by signature, transactions sent with locally
tracked nonces and explicit gas (so a whole block's worth goes out in one HTTP request
without per-transaction estimation), mining, and the pool reads and transaction builders
that the simulator and the incident injector share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import eth_abi
import httpx
from eth_utils import function_signature_to_4byte_selector, keccak

from dexwatch.contracts.deployment import LocalDeployment, PoolInfo, TokenInfo

# Every transaction pays this legacy gas price: far above anvil's base fee, which only
# falls on our mostly empty blocks, so no transaction ever waits for a cheaper block.
_GAS_PRICE = 10 * 10**9
# NonfungiblePositionManager and SwapRouter deadlines: never the reason a transaction fails,
# even when history runs put chain time far ahead of the wall clock.
FAR_DEADLINE = 2**63
UINT128_MAX = 2**128 - 1
Q96 = 2**96
# Tick bounds of Uniswap V3 (TickMath.MIN_TICK / MAX_TICK) and the matching price limits.
MIN_TICK, MAX_TICK = -887272, 887272
_MIN_SQRT_RATIO, _MAX_SQRT_RATIO = 4295128739, 1461446703485210103287273052203988822378723970342
TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10000: 200}

# Gas limits per action, generous: a block's limit (1e9 on the local anvil) holds thousands.
GAS_TRANSFER = 120_000
GAS_V2_SWAP = 200_000
GAS_V2_MINT_BURN = 300_000
GAS_V3_SWAP = 1_000_000
GAS_V3_MINT = 1_000_000
GAS_V3_REMOVE = 600_000


# Calls per HTTP request. anvil runs the calls of one batch concurrently: past about 100
# (measured) transactions reach its pool out of order, and a V2 swap paid by a transfer then
# takes another trader's payment. Small batches, sent one after another, keep send order.
_BATCH_SIZE = 25


class ChainError(RuntimeError):
    """The node refused a request or a transaction reverted."""


def topic(event_signature: str) -> str:
    return "0x" + keccak(text=event_signature).hex()


# topic0 of the events the tools read back from receipts.
TRANSFER_TOPIC = topic("Transfer(address,address,uint256)")
INCREASE_LIQUIDITY_TOPIC = topic("IncreaseLiquidity(uint256,uint128,uint256,uint256)")


class Rpc:
    """JSON-RPC over one keep-alive HTTP connection; ``batch`` sends many calls in one request."""

    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout_s)

    def call(self, method: str, *params: Any) -> Any:
        return self.batch([(method, list(params))])[0]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(calls), _BATCH_SIZE):
            results += self._post(calls[start : start + _BATCH_SIZE])
        return results

    def _post(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        body = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        try:
            response = self._client.post(self.url, json=body)
            response.raise_for_status()
        except httpx.HTTPError as err:
            raise ChainError(f"cannot reach the node at {self.url}: {err}") from err
        replies = sorted(response.json(), key=lambda reply: reply["id"])
        for reply in replies:
            if "error" in reply:
                method = calls[reply["id"]][0]
                raise ChainError(
                    f"{method} failed: {reply['error'].get('message', reply['error'])}"
                )
        return [reply["result"] for reply in replies]

    def close(self) -> None:
        self._client.close()


# ---------------------------------------------------------------------------------------------
# ABI encoding by human-readable signature, e.g. "transfer(address,uint256)".


@cache
def _parse_signature(signature: str) -> tuple[bytes, tuple[str, ...]]:
    inner = signature[signature.index("(") + 1 : -1]
    types, depth, start = [], 0, 0
    for i, char in enumerate(inner):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            types.append(inner[start:i])
            start = i + 1
    if inner:
        types.append(inner[start:])
    return function_signature_to_4byte_selector(signature), tuple(types)


def encode_call(signature: str, *args: Any) -> str:
    selector, types = _parse_signature(signature)
    return "0x" + (selector + eth_abi.encode(types, args)).hex()


def encode_args(types: Sequence[str], *args: Any) -> str:
    """Constructor arguments, appended to creation bytecode."""
    return eth_abi.encode(list(types), args).hex()


def decode(types: Sequence[str], data: str) -> tuple[Any, ...]:
    return eth_abi.decode(list(types), bytes.fromhex(data.removeprefix("0x")))


def eth_calls(rpc: Rpc, calls: Sequence[tuple[str, str]], block: str = "latest") -> list[str]:
    """Results of many (to, calldata) read-only calls, in one request."""
    return rpc.batch([("eth_call", [{"to": to, "data": data}, block]) for to, data in calls])


# ---------------------------------------------------------------------------------------------
# Transactions, blocks and mining.


@dataclass(frozen=True)
class Tx:
    sender: str
    to: str | None  # None deploys ``data`` as creation code
    data: str
    gas: int


class Transactor:
    """Sends transactions from unlocked accounts, numbering nonces itself.

    Nonces are fetched once per sender ("pending", so transactions still in the pool count)
    and then counted locally: a block's transactions go out as one batch and are mined in
    send order (anvil runs with ``--order fifo``). Each sender must be used by only one
    Transactor at a time.
    """

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc
        self._nonces: dict[str, int] = {}

    def send(self, txs: Sequence[Tx]) -> list[str]:
        unknown = sorted({tx.sender for tx in txs} - self._nonces.keys())
        counts = self.rpc.batch([("eth_getTransactionCount", [s, "pending"]) for s in unknown])
        self._nonces.update({s: int(n, 16) for s, n in zip(unknown, counts, strict=True)})
        requests = []
        for tx in txs:
            request = {
                "from": tx.sender,
                "data": tx.data,
                "gas": hex(tx.gas),
                "gasPrice": hex(_GAS_PRICE),
                "nonce": hex(self._nonces[tx.sender]),
            }
            if tx.to is not None:
                request["to"] = tx.to
            self._nonces[tx.sender] += 1
            requests.append(("eth_sendTransaction", [request]))
        try:
            return self.rpc.batch(requests)
        except ChainError:
            self._nonces.clear()  # some may have been accepted: ask the node again next time
            raise

    def receipts(self, hashes: Sequence[str], timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Receipts of ``hashes`` once all are mined (by us or anyone else mining)."""
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            missing = [h for h in hashes if h not in found]
            replies = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in missing])
            found.update({h: r for h, r in zip(missing, replies, strict=True) if r is not None})
            if len(found) == len(set(hashes)):
                return [found[h] for h in hashes]
            if time.monotonic() > deadline:
                raise ChainError(
                    f"{len(hashes) - len(found)} transactions not mined in {timeout_s}s"
                )
            time.sleep(0.01)

    def execute(
        self, txs: Sequence[Tx], timestamp: int | None = None, strict: bool = True
    ) -> list[dict[str, Any]]:
        """Send, mine one block (stamped ``timestamp``, else the wall clock), and return the
        receipts; if ``strict``, raise if any
        transaction reverted (the simulator counts its reverts instead: a trade that fails in
        a busy block is normal market life)."""
        hashes = self.send(txs)
        if timestamp is None:
            mine_at_wall_clock(self.rpc)
        else:
            mine(self.rpc, timestamp)
        receipts = self.receipts(hashes)
        if not strict:
            return receipts
        for tx, receipt in zip(txs, receipts, strict=True):
            if receipt["status"] != "0x1":
                raise ChainError(
                    f"transaction {receipt['transactionHash']} from {tx.sender} to {tx.to} "
                    f"reverted (selector {tx.data[:10]})"
                )
        return receipts


def latest_block(rpc: Rpc) -> tuple[int, int]:
    """(number, timestamp) of the latest block."""
    block = rpc.call("eth_getBlockByNumber", "latest", False)
    return int(block["number"], 16), int(block["timestamp"], 16)


def mine(rpc: Rpc, timestamp: int | None = None) -> None:
    rpc.call("evm_mine", *([] if timestamp is None else [timestamp]))


def mine_at_wall_clock(rpc: Rpc) -> None:
    """Mine a block stamped with the wall clock, or one second after the latest if that is later.

    Someone else may mine between our read of the latest block and our own mining (the live
    simulator and the incident injector share the chain): then read again and retry.
    """
    for _ in range(5):
        _, last = latest_block(rpc)
        try:
            mine(rpc, max(last + 1, int(time.time())))
            return
        except ChainError as err:
            if "lower than previous block" not in str(err):
                raise
    raise ChainError("could not mine: another process keeps mining ahead of this one")


@contextmanager
def manual_mining(rpc: Rpc) -> Iterator[None]:
    """Turn automine off (blocks only on evm_mine) and restore the previous mode on exit."""
    was_on = rpc.call("anvil_getAutomine")
    rpc.call("evm_setAutomine", False)
    try:
        yield
    finally:
        rpc.call("evm_setAutomine", was_on)


# ---------------------------------------------------------------------------------------------
# Pools: state, prices, positions.


@dataclass(frozen=True)
class PoolState:
    """A pool's state as reserves: real ones for V2 pairs, virtual ones (L/√P, L·√P) for V3.

    Either way the pool price (token1 per token0, raw units) is reserve1 / reserve0 and
    sqrt(reserve0 · reserve1) is its liquidity (V3: L; V2: √k).
    """

    pool: PoolInfo
    reserve0: int
    reserve1: int
    sqrt_price_x96: int = 0  # V3 only
    tick: int = 0  # V3 only
    total_supply: int = 0  # V2 only: LP tokens

    @property
    def price(self) -> float:
        return self.reserve1 / self.reserve0

    @property
    def liquidity(self) -> float:
        return math.sqrt(self.reserve0 * self.reserve1)


def read_pools(rpc: Rpc, pools: Sequence[PoolInfo], block: str = "latest") -> dict[str, PoolState]:
    """The state of ``pools`` at ``block`` (a tag or hex number), by name, in one request."""
    calls: list[tuple[str, str]] = []
    for pool in pools:
        if pool.protocol == "v3":
            calls += [
                (pool.address, encode_call("slot0()")),
                (pool.address, encode_call("liquidity()")),
            ]
        else:
            calls += [
                (pool.address, encode_call("getReserves()")),
                (pool.address, encode_call("totalSupply()")),
            ]
    results = iter(eth_calls(rpc, calls, block))
    states = {}
    for pool in pools:
        first, second = next(results), next(results)
        if pool.protocol == "v3":
            sqrt_price, tick = decode(["uint160", "int24"], first[:130])
            (liquidity,) = decode(["uint128"], second)
            states[pool.name] = PoolState(
                pool,
                reserve0=liquidity * Q96 // sqrt_price,
                reserve1=liquidity * sqrt_price // Q96,
                sqrt_price_x96=sqrt_price,
                tick=tick,
            )
        else:
            reserve0, reserve1, _ = decode(["uint112", "uint112", "uint32"], first)
            (supply,) = decode(["uint256"], second)
            states[pool.name] = PoolState(pool, reserve0, reserve1, total_supply=supply)
    return states


def human_price(deployment: LocalDeployment, state: PoolState) -> float:
    """Price of token0 in units of token1, decimals applied."""
    pool = state.pool
    decimals0, decimals1 = (deployment.tokens[s].decimals for s in (pool.token0, pool.token1))
    return state.price * 10 ** (decimals0 - decimals1)


def usd_prices(deployment: LocalDeployment, states: dict[str, PoolState]) -> dict[str, float]:
    """USD price of every token, walking the pools out from the numeraire (USDC = 1).

    Tokens no pool connects to the numeraire keep their initial price.
    """
    prices = {"USDC": 1.0}
    changed = True
    while changed:
        changed = False
        for state in states.values():
            pool = state.pool
            price = human_price(deployment, state)
            if pool.token1 in prices and pool.token0 not in prices:
                prices[pool.token0] = price * prices[pool.token1]
                changed = True
            elif pool.token0 in prices and pool.token1 not in prices:
                prices[pool.token1] = prices[pool.token0] / price
                changed = True
    for symbol, token in deployment.tokens.items():
        prices.setdefault(symbol, token.initial_usd_price)
    return prices


def units(token: TokenInfo, amount: float) -> int:
    """Raw units of ``amount`` whole tokens."""
    return int(amount * 10**token.decimals)


@dataclass(frozen=True)
class V3Position:
    token_id: int
    owner: str
    token0: str  # addresses
    token1: str
    fee: int
    tick_lower: int
    tick_upper: int
    liquidity: int


def v3_positions(rpc: Rpc, position_manager: str, owners: Sequence[str]) -> list[V3Position]:
    """Every NonfungiblePositionManager position of ``owners`` (three requests in all)."""
    counts = eth_calls(
        rpc, [(position_manager, encode_call("balanceOf(address)", o)) for o in owners]
    )
    slots = [
        (owner, index)
        for owner, count in zip(owners, counts, strict=True)
        for index in range(decode(["uint256"], count)[0])
    ]
    ids = eth_calls(
        rpc,
        [
            (position_manager, encode_call("tokenOfOwnerByIndex(address,uint256)", o, i))
            for o, i in slots
        ],
    )
    token_ids = [decode(["uint256"], raw)[0] for raw in ids]
    details = eth_calls(
        rpc, [(position_manager, encode_call("positions(uint256)", t)) for t in token_ids]
    )
    positions = []
    for (owner, _), token_id, raw in zip(slots, token_ids, details, strict=True):
        fields = decode(
            ["uint96", "address", "address", "address", "uint24", "int24", "int24", "uint128"],
            raw[: 2 + 64 * 8],
        )
        token0, token1, fee, lower, upper, liquidity = fields[2:]
        positions.append(V3Position(token_id, owner, token0, token1, fee, lower, upper, liquidity))
    return positions


def positions_in(
    deployment: LocalDeployment, pool: PoolInfo, positions: Sequence[V3Position]
) -> list[V3Position]:
    """The live (non-empty) positions among ``positions`` that belong to ``pool``."""
    token0, token1 = (deployment.tokens[s].address for s in (pool.token0, pool.token1))
    return [
        p
        for p in positions
        if (p.token0, p.token1, p.fee) == (token0, token1, pool.fee) and p.liquidity > 0
    ]


def v2_balances(rpc: Rpc, pair: str, owners: Sequence[str]) -> list[int]:
    """LP-token balances of ``owners`` in a V2 pair."""
    raw = eth_calls(rpc, [(pair, encode_call("balanceOf(address)", owner)) for owner in owners])
    return [decode(["uint256"], r)[0] for r in raw]


# ---------------------------------------------------------------------------------------------
# Transaction builders. Amounts are raw token units.


def transfer(token: str, sender: str, to: str, amount: int) -> Tx:
    return Tx(sender, token, encode_call("transfer(address,uint256)", to, amount), GAS_TRANSFER)


def v3_swap(
    deployment: LocalDeployment,
    pool: PoolInfo,
    trader: str,
    zero_for_one: bool,
    amount_in: int,
    sqrt_price_limit_x96: int = 0,
) -> Tx:
    """Exact-input swap through the SwapRouter; it stops early at ``sqrt_price_limit_x96``."""
    token_in, token_out = (deployment.tokens[s].address for s in (pool.token0, pool.token1))
    if not zero_for_one:
        token_in, token_out = token_out, token_in
    if not sqrt_price_limit_x96:
        sqrt_price_limit_x96 = _MIN_SQRT_RATIO + 1 if zero_for_one else _MAX_SQRT_RATIO - 1
    params = (
        token_in,
        token_out,
        pool.fee,
        trader,
        FAR_DEADLINE,
        amount_in,
        0,
        sqrt_price_limit_x96,
    )
    data = encode_call(
        "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))", params
    )
    return Tx(trader, deployment.periphery["v3_swap_router"], data, GAS_V3_SWAP)


def v3_mint(
    deployment: LocalDeployment,
    pool: PoolInfo,
    owner: str,
    tick_lower: int,
    tick_upper: int,
    amount0: int,
    amount1: int,
) -> Tx:
    """A new position; the manager takes as much of the two amounts as the range needs."""
    token0, token1 = (deployment.tokens[s].address for s in (pool.token0, pool.token1))
    params = (
        token0,
        token1,
        pool.fee,
        tick_lower,
        tick_upper,
        amount0,
        amount1,
        0,
        0,
        owner,
        FAR_DEADLINE,
    )
    data = encode_call(
        "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))",
        params,
    )
    return Tx(owner, deployment.periphery["v3_position_manager"], data, GAS_V3_MINT)


def v3_remove(deployment: LocalDeployment, position: V3Position, liquidity: int) -> Tx:
    """Decrease a position and collect what it owes (pool Burn + Collect), in one transaction.

    A position emptied completely is burnt too, so position lists stay short.
    """
    calls = [
        encode_call(
            "decreaseLiquidity((uint256,uint128,uint256,uint256,uint256))",
            (position.token_id, liquidity, 0, 0, FAR_DEADLINE),
        ),
        encode_call(
            "collect((uint256,address,uint128,uint128))",
            (position.token_id, position.owner, UINT128_MAX, UINT128_MAX),
        ),
    ]
    if liquidity >= position.liquidity:
        calls.append(encode_call("burn(uint256)", position.token_id))
    data = encode_call("multicall(bytes[])", [bytes.fromhex(c[2:]) for c in calls])
    return Tx(position.owner, deployment.periphery["v3_position_manager"], data, GAS_V3_REMOVE)


def v2_swap(
    deployment: LocalDeployment,
    pool: PoolInfo,
    trader: str,
    zero_for_one: bool,
    amount_in: int,
    amount_out: int,
) -> list[Tx]:
    """Pay the pair, then take ``amount_out`` (the pair checks its constant product)."""
    symbol_in = pool.token0 if zero_for_one else pool.token1
    outs = (0, amount_out) if zero_for_one else (amount_out, 0)
    return [
        transfer(deployment.tokens[symbol_in].address, trader, pool.address, amount_in),
        Tx(
            trader,
            pool.address,
            encode_call("swap(uint256,uint256,address,bytes)", *outs, trader, b""),
            GAS_V2_SWAP,
        ),
    ]


def v2_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut: the 0.3% fee of Uniswap V2 and SushiSwap pairs."""
    with_fee = amount_in * 997
    return with_fee * reserve_out // (reserve_in * 1000 + with_fee)


def v2_add(
    deployment: LocalDeployment, pool: PoolInfo, owner: str, amount0: int, amount1: int
) -> list[Tx]:
    token0, token1 = (deployment.tokens[s].address for s in (pool.token0, pool.token1))
    return [
        transfer(token0, owner, pool.address, amount0),
        transfer(token1, owner, pool.address, amount1),
        Tx(owner, pool.address, encode_call("mint(address)", owner), GAS_V2_MINT_BURN),
    ]


def v2_remove(pool: PoolInfo, owner: str, lp_amount: int) -> list[Tx]:
    return [
        transfer(pool.address, owner, pool.address, lp_amount),
        Tx(owner, pool.address, encode_call("burn(address)", owner), GAS_V2_MINT_BURN),
    ]


def sqrt_price_x96(price: float) -> int:
    """sqrtPriceX96 of a raw price (token1 units per token0 unit)."""
    return math.isqrt(int(price * 2**192))


def aligned_tick(tick: float, spacing: int) -> int:
    """The usable tick nearest ``tick``: a multiple of the spacing, within the V3 bounds."""
    aligned = round(tick / spacing) * spacing
    bound = MAX_TICK // spacing * spacing
    return max(-bound, min(bound, aligned))


def tick_of(price: float) -> float:
    return math.log(price) / math.log(1.0001)


# ---------------------------------------------------------------------------------------------
# Swaps that both the simulator and the incident injector build from a pool's state.


def swap_exact_in(
    deployment: LocalDeployment, state: PoolState, trader: str, zero_for_one: bool, amount_in: int
) -> tuple[list[Tx], PoolState]:
    """A swap of ``amount_in`` and the pool state after it.

    V2 pairs need the output amount up front: it is computed from the reserves (0.1% short of
    the exact figure, so rounding never reverts) and the returned state carries the new
    reserves, for the next swap of the same block. V3 pools price the swap themselves; their
    state is returned unchanged.
    """
    pool = state.pool
    if pool.protocol == "v3":
        return [v3_swap(deployment, pool, trader, zero_for_one, amount_in)], state
    reserve_in, reserve_out = (
        (state.reserve0, state.reserve1) if zero_for_one else (state.reserve1, state.reserve0)
    )
    amount_out = v2_amount_out(amount_in, reserve_in, reserve_out) * 999 // 1000
    if amount_out <= 0:
        return [], state
    reserve_in, reserve_out = reserve_in + amount_in, reserve_out - amount_out
    after = (
        PoolState(pool, reserve_in, reserve_out, total_supply=state.total_supply)
        if zero_for_one
        else PoolState(pool, reserve_out, reserve_in, total_supply=state.total_supply)
    )
    return v2_swap(deployment, pool, trader, zero_for_one, amount_in, amount_out), after


def swap_to_price(
    deployment: LocalDeployment, state: PoolState, trader: str, target_price: float
) -> list[Tx]:
    """One swap that moves the pool's raw price (token1 per token0) to ``target_price``."""
    pool = state.pool
    zero_for_one = target_price < state.price  # selling token0 makes it cheaper
    if pool.protocol == "v3":
        # Exact input with a price limit: the router pays only what reaching the limit takes,
        # so the amount offered just has to be more than enough.
        offered = 20 * (state.reserve0 if zero_for_one else state.reserve1)
        limit = sqrt_price_x96(target_price)
        return [v3_swap(deployment, pool, trader, zero_for_one, offered, limit)]
    # Constant product: the reserves at the target price keep k = x * y.
    k = state.reserve0 * state.reserve1
    target0, target1 = math.isqrt(int(k / target_price)), math.isqrt(int(k * target_price))
    needed = target0 - state.reserve0 if zero_for_one else target1 - state.reserve1
    amount_in = needed * 1000 // 997  # the pair keeps 0.3% of the input
    return swap_exact_in(deployment, state, trader, zero_for_one, amount_in)[0]
