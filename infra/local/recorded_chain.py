"""A recorded chain served over JSON-RPC: real pool logs, read from an ``eth_getLogs`` dump,
answered to the real chain publisher as a node would answer them.

    recording = Recording.from_csv(path, RecordedPool(address=..., chain_id=137, ...))
    with RecordedChainNode(recording) as node:
        ... point chain.rpc_urls at node.url and chain.factories at recording.factory ...

What a dump lacks is synthesized, and only that: block hashes (``keccak(chain id, number)``,
each block's parent the one before), the timestamps of blocks without a log (interpolated
between the recorded ones, at ``block_time_s`` before the first and after the last), and the
factory's ``PoolCreated`` log (one block before the first recorded log: dumps of one day do
not reach back to the pool's creation). Transaction senders and pool balances are not in a
dump; this node does not answer ``eth_getTransactionByHash`` or ``eth_call``.

Dumps are the CSV files of zelos-alpha/demeter-fetch (``../shared/data/real-logs/``):
``block_number, block_timestamp, transaction_hash, pool_tx_index, pool_log_index,
pool_topics, pool_data, ...``.
"""

from __future__ import annotations

import ast
import bisect
import csv
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from eth_utils import keccak

from dexwatch.core.errors import DexwatchError
from dexwatch.core.settings import FactoryConfig, Settings
from infra.local.http_server import LocalHttpServer, send_json

_POOL_CREATED_V3 = "0x" + keccak(text="PoolCreated(address,address,uint24,int24,address)").hex()


class RecordingError(DexwatchError):
    """A dump that cannot be served: unreadable, empty, or not in chain order."""


@dataclasses.dataclass(frozen=True)
class RecordedPool:
    """What a dump does not say about its pool: where it lives and what it trades.

    Args:
        address: the pool's address.
        chain_id: the chain the logs were read from.
        factory: the Uniswap V3 factory that created the pool.
        token0, token1: the pool's tokens.
        fee: the fee tier, in hundredths of a basis point (500 = 0.05 %).
        tick_spacing: the pool's tick spacing.
        block_time_s: the chain's usual block interval, for the timestamps of blocks
            without a recorded log.
    """

    address: str
    chain_id: int
    factory: str
    token0: str
    token1: str
    fee: int
    tick_spacing: int
    block_time_s: float

    def __post_init__(self) -> None:
        for name in ("address", "factory", "token0", "token1"):
            object.__setattr__(self, name, getattr(self, name).lower())


def block_hash(chain_id: int, number: int) -> str:
    """The synthesized hash of block ``number``: stable, and distinct per chain and block."""
    return "0x" + keccak(f"dexwatch-recorded:{chain_id}:{number}".encode()).hex()


def abi_word(value: int) -> str:
    """``value`` as one 32-byte ABI word in hex (two's complement when negative)."""
    return (value % 2**256).to_bytes(32, "big").hex()


def creation_log(pool: RecordedPool, block: int, log_index: int) -> dict[str, Any]:
    """The factory's PoolCreated log of ``pool``, in ``block``."""
    return {
        "address": pool.factory,
        "topics": [
            _POOL_CREATED_V3,
            _address_topic(pool.token0),
            _address_topic(pool.token1),
            "0x" + abi_word(pool.fee),
        ],
        "data": "0x" + abi_word(pool.tick_spacing) + abi_word(int(pool.address, 16)),
        "blockNumber": hex(block),
        "blockHash": block_hash(pool.chain_id, block),
        "transactionHash": "0x" + keccak(f"created:{pool.address}".encode()).hex(),
        "transactionIndex": "0x0",
        "logIndex": hex(log_index),
        "removed": False,
    }


def _address_topic(address: str) -> str:
    return "0x" + address.removeprefix("0x").rjust(64, "0")


class Recording:
    """The logs of one pool, in chain order, with the blocks' timestamps they carry."""

    def __init__(self, pool: RecordedPool, logs: Sequence[dict[str, Any]]) -> None:
        if not logs:
            raise RecordingError("the recording has no logs")
        numbers = [int(log["blockNumber"], 16) for log in logs]
        if numbers != sorted(numbers):
            raise RecordingError("the recording's logs are not in block order")
        self.pool = pool
        self.logs = list(logs)
        self._numbers = numbers
        self.first_block = numbers[0]
        self.last_block = numbers[-1]
        # Recorded timestamps, one per block with a log: the anchors of the interpolation.
        self._stamps: dict[int, int] = {}
        for number, log in zip(numbers, logs, strict=True):
            self._stamps.setdefault(number, int(log["_timestamp"]))
        self._anchors = sorted(self._stamps)
        self.created_block = self.first_block - 1

    @classmethod
    def from_csv(cls, path: Path, pool: RecordedPool) -> Recording:
        """Read a demeter-fetch CSV dump of ``pool``'s logs; raises RecordingError."""
        try:
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        except OSError as err:
            raise RecordingError(f"cannot read {path}: {err.strerror}") from None
        logs = []
        for line, row in enumerate(rows, start=2):
            try:
                number = int(row["block_number"])
                stamp = datetime.fromisoformat(row["block_timestamp"])
                topics = ast.literal_eval(row["pool_topics"])
                logs.append(
                    {
                        "address": pool.address,
                        "topics": [str(topic).lower() for topic in topics],
                        "data": row["pool_data"].lower(),
                        "blockNumber": hex(number),
                        "blockHash": block_hash(pool.chain_id, number),
                        "transactionHash": row["transaction_hash"].lower(),
                        "transactionIndex": hex(int(row["pool_tx_index"])),
                        "logIndex": hex(int(row["pool_log_index"])),
                        "removed": False,
                        "_timestamp": int(stamp.timestamp()),
                    }
                )
            except (KeyError, ValueError, SyntaxError, TypeError) as err:
                raise RecordingError(f"{path.name}, line {line}: {err!r}") from None
        logs.sort(key=lambda log: (int(log["blockNumber"], 16), int(log["logIndex"], 16)))
        return cls(pool, logs)

    @property
    def creation_log(self) -> dict[str, Any]:
        """The factory's PoolCreated log, synthesized one block before the first record."""
        return creation_log(self.pool, self.created_block, log_index=0)

    def timestamp(self, number: int) -> int:
        """Block ``number``'s timestamp: recorded, else interpolated between the recorded
        blocks around it (never decreasing)."""
        if number in self._stamps:
            return self._stamps[number]
        anchors, step = self._anchors, self.pool.block_time_s
        at = bisect.bisect_left(anchors, number)
        if at == 0:
            return int(self._stamps[anchors[0]] - (anchors[0] - number) * step)
        if at == len(anchors):
            return int(self._stamps[anchors[-1]] + (number - anchors[-1]) * step)
        low, high = anchors[at - 1], anchors[at]
        share = (number - low) / (high - low)
        return int(self._stamps[low] + share * (self._stamps[high] - self._stamps[low]))

    def block_at(self, timestamp: float) -> int:
        """The first block at or after ``timestamp`` (the last block if none is)."""
        low, high = self.created_block, self.last_block
        while low < high:
            middle = (low + high) // 2
            if self.timestamp(middle) < timestamp:
                low = middle + 1
            else:
                high = middle
        return low

    def header(self, number: int) -> dict[str, Any] | None:
        """Block ``number``'s header, as eth_getBlockByNumber answers; None past the head."""
        if number > self.last_block or number < 0:
            return None
        chain_id = self.pool.chain_id
        return {
            "number": hex(number),
            "hash": block_hash(chain_id, number),
            "parentHash": block_hash(chain_id, number - 1),
            "timestamp": hex(self.timestamp(number)),
            "transactions": [],
        }

    def get_logs(
        self, first: int, last: int, addresses: Iterable[str], topics: Sequence[Any]
    ) -> list[dict[str, Any]]:
        """The logs in [first, last] of ``addresses`` matching ``topics`` (eth_getLogs'
        filter: per position, one topic, a list of alternatives, or None for any)."""
        wanted = {address.lower() for address in addresses}
        candidates = []
        if self.created_block >= first and self.created_block <= last:
            candidates.append(self.creation_log)
        start = bisect.bisect_left(self._numbers, first)
        end = bisect.bisect_right(self._numbers, last)
        candidates += self.logs[start:end]
        return [
            {key: value for key, value in log.items() if not key.startswith("_")}
            for log in candidates
            if (not wanted or log["address"] in wanted) and _matches(log["topics"], topics)
        ]


def _matches(log_topics: Sequence[str], wanted: Sequence[Any]) -> bool:
    for position, alternatives in enumerate(wanted):
        if alternatives is None:
            continue
        if position >= len(log_topics):
            return False
        options = [alternatives] if isinstance(alternatives, str) else alternatives
        if log_topics[position] not in {option.lower() for option in options}:
            return False
    return True


class RecordedChainNode:
    """A JSON-RPC node on 127.0.0.1 serving a Recording: eth_chainId, eth_blockNumber (the
    last recorded block), eth_getBlockByNumber and eth_getLogs, single or batched."""

    def __init__(self, recording: Recording, host: str = "127.0.0.1", port: int = 0) -> None:
        self.recording = recording
        self.requests = 0
        self._http = LocalHttpServer(self._handler(), host, port)

    @property
    def url(self) -> str:
        return self._http.url

    def __enter__(self) -> RecordedChainNode:
        self._http.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._http.stop()

    def following(self, settings: Settings, **chain: Any) -> Settings:
        """``settings`` with the chain publisher pointed at this node and its pool's factory
        (no confirmations: a recording does not reorganise); ``chain`` sets more."""
        recording = self.recording
        factory = FactoryConfig(
            dex="uniswap_v3",
            protocol="v3",
            address=recording.pool.factory,
            start_block=recording.created_block,
        )
        return settings.with_sections(
            chain={
                "chain_id": recording.pool.chain_id,
                "rpc_urls": [self.url],
                "confirmations": 0,
                "factories": [factory],
                **chain,
            }
        )

    def answer(self, call: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON-RPC answer to one call."""
        self.requests += 1
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call.get("id")}
        try:
            reply["result"] = self._result(call.get("method"), call.get("params") or [])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            reply["error"] = {"code": -32602, "message": f"invalid params: {err!r}"}
        except NotImplementedError as err:
            reply["error"] = {"code": -32601, "message": str(err)}
        return reply

    def _result(self, method: Any, params: Sequence[Any]) -> Any:
        recording = self.recording
        if method == "eth_chainId":
            return hex(recording.pool.chain_id)
        if method == "eth_blockNumber":
            return hex(recording.last_block)
        if method == "eth_getBlockByNumber":
            tag = params[0]
            number = recording.last_block if tag in ("latest", "safe", "finalized") else tag
            return recording.header(int(number, 16) if isinstance(number, str) else number)
        if method == "eth_getLogs":
            query = params[0]
            first = _block(query.get("fromBlock", "earliest"), recording)
            last = _block(query.get("toBlock", "latest"), recording)
            addresses = query.get("address") or []
            if isinstance(addresses, str):
                addresses = [addresses]
            return recording.get_logs(first, last, addresses, query.get("topics") or [])
        raise NotImplementedError(f"the method {method} does not exist on a recorded chain")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    request = json.loads(body)
                except ValueError:
                    reply: Any = {
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": {"code": -32700, "message": "parse error"},
                    }
                else:
                    if isinstance(request, list):
                        reply = [node.answer(call) for call in request]
                    else:
                        reply = node.answer(request)
                send_json(self, 200, json.dumps(reply).encode())

            def log_message(self, *_: Any) -> None:  # requests are counted, not logged
                pass

        return Handler


def _block(tag: Any, recording: Recording) -> int:
    if tag == "earliest":
        return 0
    if tag in ("latest", "safe", "finalized", "pending"):
        return recording.last_block
    return int(tag, 16)


# The pools of the dumps under ../shared/data/real-logs/, by file-name prefix (see its README).
KNOWN_POOLS: dict[str, RecordedPool] = {
    "polygon-uniswap-v3-usdc-weth-500": RecordedPool(
        address="0x45dda9cb7c25131df268515131f647d726f50608",
        chain_id=137,
        factory="0x1f98431c8ad98523631ae4a59f267346ea31f984",
        token0="0x2791bca1f2de4661ed88a30c99a7a9449aa84174",
        token1="0x7ceb23fd6bc0add59e62ac25578270cff1b9f619",
        fee=500,
        tick_spacing=10,
        block_time_s=2.0,
    ),
}


def open_recording(path: Path) -> Recording:
    """The recording of a dump whose pool is known by its file name (KNOWN_POOLS)."""
    for prefix, pool in KNOWN_POOLS.items():
        if path.name.startswith(prefix):
            return Recording.from_csv(path, pool)
    raise RecordingError(
        f"{path.name}: no known pool for this file name (known: {', '.join(KNOWN_POOLS)})"
    )
