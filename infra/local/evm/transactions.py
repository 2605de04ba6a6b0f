"""Transactions sent with locally tracked nonces and explicit gas (a whole block's worth
goes out in one HTTP request, without per-transaction estimation), and mining."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from infra.local.evm.rpc import ChainError, Rpc, encode_call

# Every transaction pays this legacy gas price: far above anvil's base fee, which only
# falls on our mostly empty blocks, so no transaction ever waits for a cheaper block.
_GAS_PRICE = 10 * 10**9


# Gas limits per action, generous: a block's limit (1e9 on the local anvil) holds thousands.
GAS_TRANSFER = 120_000


GAS_V2_SWAP = 200_000


GAS_V2_MINT_BURN = 300_000


# A pump or an arbitrage through a pool of many narrow positions crosses dozens of ticks
# (tens of thousands of gas each): a million ran out of gas on the calibrated market's stable
# pools (a rug's 10 % pump; the simulator's rare reverted back-runs).
GAS_V3_SWAP = 5_000_000


GAS_V3_MINT = 1_000_000


GAS_V3_REMOVE = 600_000


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


def block_timestamp(rpc: Rpc, number: int) -> int:
    """The timestamp of block ``number``."""
    return int(rpc.call("eth_getBlockByNumber", hex(number), False)["timestamp"], 16)


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


def transfer(token: str, sender: str, to: str, amount: int) -> Tx:
    return Tx(sender, token, encode_call("transfer(address,uint256)", to, amount), GAS_TRANSFER)
