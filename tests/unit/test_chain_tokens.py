"""Token decimals of the followed pools: read once per token, in one request for the tokens
of all new pools, and learnt from the pools that already have theirs."""

from __future__ import annotations

import dataclasses

from publishers.chain.events import Pool
from publishers.chain.tokens import TokenDecimals

WETH, USDC, ODD, NEW = ("0x" + c * 40 for c in "abcd")


class _Node:
    """Stands for RpcClient.token_decimals: one request per call, answers from a table."""

    def __init__(self, decimals: dict[str, int | None]) -> None:
        self.decimals = decimals
        self.requests: list[list[str]] = []

    def token_decimals(self, tokens: list[str]) -> dict[str, int | None]:
        if tokens:
            self.requests.append(list(tokens))
        return {token: self.decimals[token] for token in tokens}


def _pool(n: int, token0: str, token1: str) -> Pool:
    return Pool(f"0x{n:040x}", "uniswap_v3", "v3", "0x" + "11" * 20, n, token0, token1, 500)


def test_each_token_is_read_once_for_all_new_pools_and_unreadable_ones_are_counted() -> None:
    node = _Node({WETH: 18, USDC: 6, ODD: None, NEW: 8})
    tokens = TokenDecimals(node)  # the one RpcClient method it uses

    pools, unreadable = tokens.fill(
        [_pool(1, USDC, WETH), _pool(2, ODD, WETH), _pool(3, USDC, ODD)]
    )
    assert node.requests == [sorted({USDC, WETH, ODD})]  # three pools, one request
    assert [(p.token0_decimals, p.token1_decimals, p.decimals_read) for p in pools] == [
        (6, 18, True), (None, 18, True), (6, None, True),
    ]  # fmt: skip
    assert unreadable == 1

    # Later pools: only the token not seen yet is asked for, the unreadable one is not again.
    pools, unreadable = tokens.fill([_pool(4, NEW, WETH), _pool(5, ODD, USDC)])
    assert node.requests[1:] == [[NEW]] and unreadable == 0
    assert [(p.token0_decimals, p.token1_decimals) for p in pools] == [(8, 18), (None, 6)]
    # Pools that have theirs are kept as they are, asking nothing.
    again, _ = tokens.fill(pools)
    assert again == pools and len(node.requests) == 2


def test_pools_that_have_their_decimals_teach_them() -> None:
    node = _Node({WETH: 18, USDC: 6, NEW: 8})
    tokens = TokenDecimals(node)
    known = dataclasses.replace(
        _pool(1, USDC, WETH), token0_decimals=6, token1_decimals=18, decimals_read=True
    )
    # Loaded pools (read) and pools of lines from before decimals (not read) together.
    pools, _ = tokens.fill([known, _pool(2, USDC, WETH), _pool(3, NEW, WETH)])
    assert node.requests == [[NEW]]
    assert pools[0] is known
    assert [(p.token0_decimals, p.token1_decimals) for p in pools[1:]] == [(6, 18), (8, 18)]
