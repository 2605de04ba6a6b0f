"""A small Ethereum JSON-RPC client over httpx for the calls the chain publisher makes.

Transient failures (HTTP 429/5xx, timeouts, refused connections, rate-limit errors) are
retried with exponential backoff and full jitter (``chain.retry``), then the next URL is
tried; the URL that answered stays in use. ``get_logs`` splits a block range the node
refuses as too large.
URLs are only ever shown redacted (scheme, host, port): they usually carry an API key, and
a node's own messages are scrubbed of it before they become an error or a log line.

Why not web3.py's HTTPProvider for transport: side by side (``bench/rpc_transport.py``,
``bench/results/rpc_transport.json``) this client reads 1.3x the logs a second over the
one-block ``eth_getLogs`` ranges a publisher following the head makes, and the provider
neither splits ranges a node refuses nor fails over to a second URL. Decoding stays with
``publishers.chain.abi`` (word by word, by topic0) either way.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import httpx
import orjson

from dexwatch.core.logs import register_url, scrub
from dexwatch.core.retry import RetryPolicy
from dexwatch.core.settings import ChainSettings, redact_url
from publishers.chain.errors import MethodUnsupported, RpcError, RpcUnavailable

log = logging.getLogger("dexwatch.publisher.rpc")

T = TypeVar("T")

# Providers cap JSON-RPC batches (often at 100 calls); larger header fetches are chunked.
_MAX_BATCH = 100
_RECEIPT_BLOCKS_PER_BATCH = 10
# eth_getLogs refusals for too many results or too wide a range, across node implementations.
_TOO_LARGE_CODES = {-32005}
_TOO_LARGE_TEXTS = (
    "query returned more than",
    "block range",
    "too many",
    "limit exceeded",
    "response size",
    "max results",
    "range is too large",
)
# Checked first: some providers use -32005 or "too many requests" for rate limiting.
_UNSUPPORTED_CODES = {-32601}
_UNSUPPORTED_TEXTS = ("method not found", "not supported", "does not exist", "not available")
_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
# ERC-20 decimals(), and its answer: one 32-byte word (Solidity ignores any after it).
_DECIMALS_SELECTOR = "0x313ce567"
_WORDS = re.compile(r"0x([0-9a-fA-F]{64})(?:[0-9a-fA-F]{64})*")
_RATE_LIMIT_TEXTS = ("rate limit", "too many requests", "rate exceeded", "exceeded rate")


class _Transient(Exception):
    """Worth another try on the same URL."""


class _WrongUrl(Exception):
    """This URL's fault (a 4xx without a JSON-RPC error: bad key, wrong path): retrying it
    cannot help, another URL may."""


class _RangeTooLarge(RpcError):
    """The node refused an eth_getLogs range as too large."""


@dataclasses.dataclass(frozen=True, slots=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    # Transactions in the block (0 where the node's answer had no list).
    tx_count: int = 0


class RpcClient:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        """``retry`` None means chain.retry's default."""
        if not urls:
            raise ValueError("at least one RPC URL is needed")
        self._urls = list(urls)
        for url in self._urls:
            register_url(url)  # httpx logs full URLs; nodes may quote their key
        self._active = 0
        self._retry = retry or ChainSettings().retry
        self._http = httpx.Client(
            timeout=self._retry.timeout_s, headers={"content-type": "application/json"}
        )
        self._ids = itertools.count(1)
        # Learned from refusals, so later ranges are not refused again.
        self._max_log_blocks: int | None = None

    @classmethod
    def from_settings(cls, chain: ChainSettings) -> RpcClient:
        return cls(chain.rpc_urls, retry=chain.retry)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def redacted_urls(self) -> list[str]:
        return [redact_url(url) for url in self._urls]

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        return self._exchange(payload, lambda reply: _result(reply, method), method)

    def batch(
        self,
        calls: Sequence[tuple[str, Sequence[Any]]],
        *,
        errors_in_place: bool = False,
        size: int = _MAX_BATCH,
    ) -> list[Any]:
        """Results of several calls, sent as JSON-RPC batch requests. With ``errors_in_place``
        a call the node refuses (a reverted eth_call) gives its RpcError as its result
        instead of failing the batch; transient refusals (rate limits) are retried either way.
        ``size`` calls at most go in one request."""
        results: list[Any] = []
        for start in range(0, len(calls), size):
            chunk = calls[start : start + size]
            payload = [
                {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                for i, (method, params) in enumerate(chunk)
            ]
            what = f"batch of {len(chunk)} {chunk[0][0]}"
            read = functools.partial(_batch_results, calls=chunk, errors_in_place=errors_in_place)
            results += self._exchange(payload, read, what)
        return results

    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def get_headers(self, numbers: Iterable[int]) -> dict[int, BlockHeader | None]:
        """Headers by block number; None for a block the node does not have (yet)."""
        wanted = sorted(set(numbers))
        blocks = self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in wanted])
        headers: dict[int, BlockHeader | None] = {}
        for number, block in zip(wanted, blocks, strict=True):
            headers[number] = None if block is None else _header(block, number)
        return headers

    def get_senders(self, tx_hashes: Sequence[str]) -> dict[str, str]:
        """Each transaction's sender (its ``from``, lower-case), by hash, in batches; a
        transaction the node does not know (any more) or answers oddly is left out."""
        found = self.batch([("eth_getTransactionByHash", [tx_hash]) for tx_hash in tx_hashes])
        senders = {}
        for tx_hash, tx in zip(tx_hashes, found, strict=True):
            sender = str(tx.get("from", "")).lower() if isinstance(tx, dict) else ""
            if _ADDRESS.fullmatch(sender):
                senders[tx_hash] = sender
        return senders

    def get_block_senders(self, numbers: Sequence[int]) -> dict[str, str]:
        """The sender of every transaction of the blocks ``numbers``, by hash, from the
        blocks' receipts (``eth_getBlockReceipts``: one call a block instead of one a
        transaction, cheaper where most of a block's transactions are wanted)."""
        # A mainnet block's receipts are hundreds of kB: a few blocks a request.
        calls = [("eth_getBlockReceipts", [hex(number)]) for number in numbers]
        blocks = self.batch(calls, size=_RECEIPT_BLOCKS_PER_BATCH)
        senders = {}
        for receipts in blocks:
            for receipt in receipts if isinstance(receipts, list) else ():
                sender = str(receipt.get("from", "")).lower() if isinstance(receipt, dict) else ""
                if _ADDRESS.fullmatch(sender):
                    senders[str(receipt.get("transactionHash", "")).lower()] = sender
        return senders

    def token_decimals(self, tokens: Sequence[str]) -> dict[str, int | None]:
        """Each ERC-20 token's ``decimals()`` at the latest block, by address, read with
        ``eth_call`` in batches; None for a token whose call fails or whose answer is not
        a uint8 word (no code there, not a standard token, self-destructed)."""
        call = {"data": _DECIMALS_SELECTOR}
        answers = self.batch(
            [("eth_call", [{**call, "to": token}, "latest"]) for token in tokens],
            errors_in_place=True,
        )
        return {token: _decimals(answer) for token, answer in zip(tokens, answers, strict=True)}

    def first_block_at(self, timestamp: int, head: int) -> int:
        """The first block at or after ``timestamp`` (unix s), by bisection over [0, head];
        head + 1 if every block is older."""
        low, high = 0, head + 1
        while low < high:
            middle = (low + high) // 2
            header = self.get_headers([middle])[middle]
            if header is None:
                raise RpcError(f"the node does not have block {middle} (head {head})")
            if header.timestamp < timestamp:
                low = middle + 1
            else:
                high = middle
        return low

    def get_logs(
        self,
        from_block: int,
        to_block: int,
        addresses: Sequence[str] | None,
        topics: Sequence[Any],
    ) -> list[dict[str, Any]]:
        """Logs of ``addresses`` (None: of any contract) matching ``topics`` in
        [from_block, to_block], in chain order."""
        step = self._max_log_blocks or to_block - from_block + 1
        logs: list[dict[str, Any]] = []
        for start in range(from_block, to_block + 1, step):
            logs += self._get_logs(start, min(start + step - 1, to_block), addresses, topics)
        return logs

    def _get_logs(
        self,
        from_block: int,
        to_block: int,
        addresses: Sequence[str] | None,
        topics: Sequence[Any],
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
            "topics": list(topics),
        }
        if addresses is not None:
            query["address"] = list(addresses)
        try:
            logs = self.call("eth_getLogs", [query])
        except _RangeTooLarge as err:
            if from_block == to_block:
                raise RpcError(
                    f"eth_getLogs refused even the single block {from_block}: {err}"
                ) from None
            middle = (from_block + to_block) // 2
            self._max_log_blocks = middle - from_block + 1
            log.info(
                "node refused %d blocks for eth_getLogs, splitting",
                to_block - from_block + 1,
                extra={"from_block": from_block, "to_block": to_block, "reason": str(err)},
            )
            return self._get_logs(from_block, middle, addresses, topics) + self._get_logs(
                middle + 1, to_block, addresses, topics
            )
        if not isinstance(logs, list):
            raise RpcError(f"eth_getLogs answered {type(logs).__name__}, not a list")
        return logs

    def _exchange(self, payload: Any, read: Callable[[Any], T], what: str) -> T:
        body = orjson.dumps(payload)
        last_error = "nothing tried"
        for offset in range(len(self._urls)):
            index = (self._active + offset) % len(self._urls)
            try:
                value = self._on_url(self._urls[index], lambda u: read(self._post(u, body)), what)
            except (_Transient, _WrongUrl) as err:
                last_error = str(err)
                continue
            if index != self._active:
                log.warning("switched to RPC URL %s", redact_url(self._urls[index]))
                self._active = index
            return value
        raise RpcUnavailable(
            f"{what}: no RPC URL answered after {self._retry.attempts} attempts each "
            f"({', '.join(self.redacted_urls)}); last error: {last_error}"
        )

    def _on_url(self, url: str, attempt: Callable[[str], T], what: str) -> T:
        """``attempt(url)``, its transient failures retried by the policy; every failure is
        logged, and the last transient one, or the URL's own fault at once, is raised."""
        shown = redact_url(url)

        def failed(number: int, err: BaseException) -> None:
            log.warning(
                "%s failed on %s: %s", what, shown, err, extra={"attempt": number, "rpc": shown}
            )

        retrying = self._retry.retrying(_Transient, on_failure=failed)
        try:
            return retrying(attempt, url)
        except _WrongUrl as err:
            failed(retrying.statistics["attempt_number"], err)
            raise

    def _post(self, url: str, body: bytes) -> Any:
        try:
            response = self._http.post(url, content=body)
        except httpx.TimeoutException:
            raise _Transient("timed out") from None
        except httpx.TransportError as err:
            shown = scrub(str(err).replace(url, redact_url(url)))
            raise _Transient(f"{type(err).__name__}: {shown}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        # A 4xx without a JSON-RPC error (bad key, wrong path) is this URL's fault: retrying it
        # cannot help, another URL may.
        try:
            reply = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            if status >= 400:
                raise _WrongUrl(f"HTTP {status}") from None
            raise _Transient(f"HTTP {status} with a reply that is not JSON") from None
        if status >= 400 and not (isinstance(reply, dict) and "error" in reply):
            raise _WrongUrl(f"HTTP {status}")
        return reply


def _result(reply: Any, method: str) -> Any:
    if not isinstance(reply, dict):
        raise _Transient(f"{method}: malformed reply")
    error = reply.get("error")
    if error is None:
        if "result" not in reply:
            raise _Transient(f"{method}: reply without result")
        return reply["result"]
    code = error.get("code") if isinstance(error, dict) else None
    # Some nodes quote the request's API key in their messages.
    message = scrub(str(error.get("message", "")) if isinstance(error, dict) else str(error))
    text = message.lower()
    if any(marker in text for marker in _RATE_LIMIT_TEXTS):
        raise _Transient(f"rate limited ({code}: {message})")
    if code in _TOO_LARGE_CODES or any(marker in text for marker in _TOO_LARGE_TEXTS):
        raise _RangeTooLarge(f"{code}: {message}")
    if code in _UNSUPPORTED_CODES or any(marker in text for marker in _UNSUPPORTED_TEXTS):
        raise MethodUnsupported(f"{method} is not offered by the node: {code}: {message}")
    raise RpcError(f"{method} failed: {code}: {message}")


def _batch_results(
    reply: Any, calls: Sequence[tuple[str, Sequence[Any]]], errors_in_place: bool
) -> list[Any]:
    if not isinstance(reply, list):
        _result(reply, calls[0][0])  # some nodes answer a whole batch with one error: raise it
        raise _Transient("a batch answered with a single reply")
    by_id = {item.get("id"): item for item in reply if isinstance(item, dict)}
    if len(by_id) != len(calls):
        raise _Transient(f"batch answered {len(by_id)} of {len(calls)} calls")
    results: list[Any] = []
    for i, (method, _) in enumerate(calls):
        try:
            results.append(_result(by_id.get(i), method))
        except RpcError as err:
            if not errors_in_place:
                raise
            results.append(err)
    return results


def _decimals(answer: Any) -> int | None:
    """A decimals() call's answer as a uint8, None if it is not one."""
    words = _WORDS.fullmatch(answer) if isinstance(answer, str) else None
    value = int(words.group(1), 16) if words else None
    return value if value is not None and value <= 255 else None


def _header(block: Any, number: int) -> BlockHeader:
    try:
        header = BlockHeader(
            number=int(block["number"], 16),
            hash=block["hash"].lower(),
            parent_hash=block["parentHash"].lower(),
            timestamp=int(block["timestamp"], 16),
            tx_count=len(block.get("transactions") or ()),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise RpcError(f"malformed header for block {number}: {err!r}") from None
    if header.number != number:
        raise RpcError(f"asked for block {number}, node answered block {header.number}")
    return header
