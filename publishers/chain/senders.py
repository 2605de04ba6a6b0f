"""Each pool event's transaction sender: the trader of a swap made through a router.

A block whose transactions are mostly wanted is read whole from its receipts (one call);
other transactions are looked up one by one, in batches. A node without receipts by block
is asked by lookups only; a node without lookups either is read without senders.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from dexwatch.core.chain_settings import ChainSettings
from dexwatch.core.schemas.pool_event import PoolEvent
from publishers.chain.errors import MethodUnsupported
from publishers.chain.rpc import BlockHeader, RpcClient

log = logging.getLogger("dexwatch.publisher.chain")


class SenderReader:
    """Reads senders for a publisher's batches.

    Args:
        rpc: the publisher's node client.
        chain: its chain settings (``senders``, ``receipts_min_share``).
    """

    def __init__(self, rpc: RpcClient, chain: ChainSettings) -> None:
        self._rpc = rpc
        self._min_share = chain.receipts_min_share
        self._senders = chain.senders
        self._receipts = True  # until the node says it does not offer eth_getBlockReceipts
        # Transactions whose senders came with their blocks' receipts.
        self.from_receipts = 0

    def with_senders(
        self, events: list[PoolEvent], headers: Mapping[int, BlockHeader]
    ) -> list[PoolEvent]:
        """``events`` with their transactions' senders (``tx_from``; "" where unknown)."""
        if not self._senders or not events:
            return events
        wanted: dict[int, set[str]] = {}
        for event in events:
            wanted.setdefault(event.block_number, set()).add(event.tx_hash)
        whole = sorted(
            number
            for number, hashes in wanted.items()
            if self._receipts and len(hashes) >= self._min_share * headers[number].tx_count
        )
        senders: dict[str, str] = {}
        if whole:
            try:
                senders = self._rpc.get_block_senders(whole)
            except MethodUnsupported as err:
                log.warning("%s: senders are read one transaction at a time", err)
                self._receipts = False
                whole = []
        one_by_one = sorted({h for hashes in wanted.values() for h in hashes} - senders.keys())
        if one_by_one:
            try:
                senders |= self._rpc.get_senders(one_by_one)
            except MethodUnsupported as err:
                log.warning("%s: traders are the swaps' recipients from here on", err)
                self._senders = False
                return events
        self.from_receipts += sum(len(wanted[number]) for number in whole)
        return [
            dataclasses.replace(event, tx_from=senders.get(event.tx_hash, "")) for event in events
        ]
