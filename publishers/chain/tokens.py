"""The decimals of the followed pools' tokens, read once per token.

Most pools share a few tokens (WETH, USDC), so the decimals are kept per token across
pools: the tokens of newly found pools that are not known yet are read together, with one
JSON-RPC batch of ``eth_call`` per 100 (``RpcClient.token_decimals``). A token that gives
no decimals (not a standard ERC-20, no code, self-destructed) is kept as None and not
asked again; it does not stop the publisher.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from publishers.chain.events import Pool
from publishers.chain.rpc import RpcClient

log = logging.getLogger("dexwatch.publisher.chain")

# Unreadable tokens named in one warning; the rest are counted.
_NAMED = 5


class TokenDecimals:
    """Each token's decimals (None: unreadable), learnt from the pools that have theirs and
    read from the node for the rest."""

    def __init__(self, rpc: RpcClient) -> None:
        self._rpc = rpc
        self._known: dict[str, int | None] = {}

    def fill(self, pools: Iterable[Pool]) -> tuple[list[Pool], int]:
        """``pools``, each with its tokens' decimals (``decimals_read``), and how many tokens
        read now gave none. Raises RpcError when the node does not answer at all."""
        pools = list(pools)
        unread = []
        for pool in pools:
            if pool.decimals_read:
                for token, decimals in (
                    (pool.token0, pool.token0_decimals),
                    (pool.token1, pool.token1_decimals),
                ):
                    self._known.setdefault(token, decimals)
            else:
                unread.append(pool)
        if not unread:
            return pools, 0
        wanted = {token for pool in unread for token in (pool.token0, pool.token1) if token}
        read = self._rpc.token_decimals(sorted(wanted - self._known.keys()))
        self._known.update(read)
        failed = sorted(token for token, decimals in read.items() if decimals is None)
        if failed:
            log.warning(
                "%d of %d tokens gave no decimals() (%s%s): their pools' decimals stay unknown",
                len(failed),
                len(read),
                ", ".join(failed[:_NAMED]),
                ", …" if len(failed) > _NAMED else "",
                extra={"tokens": len(failed)},
            )
        filled = [pool if pool.decimals_read else self._with_decimals(pool) for pool in pools]
        return filled, len(failed)

    def _with_decimals(self, pool: Pool) -> Pool:
        return dataclasses.replace(
            pool,
            token0_decimals=self._known.get(pool.token0),
            token1_decimals=self._known.get(pool.token1),
            decimals_read=True,
        )
