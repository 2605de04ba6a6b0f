"""A small batched JSON-RPC client for the local chain and ABI encoding by signature."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import eth_abi
import httpx
from eth_utils import function_signature_to_4byte_selector, keccak

from dexwatch.core.errors import DexwatchError

# Calls per HTTP request. anvil runs the calls of one batch concurrently: past about 100
# (measured) transactions reach its pool out of order, and a V2 swap paid by a transfer then
# takes another trader's payment. Small batches, sent one after another, keep send order.
_BATCH_SIZE = 25


class ChainError(DexwatchError, RuntimeError):
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
