"""Helpers of bench/publisher_scale.py: many quiet pools made by the local deployment's real
factories, and a reverse proxy in front of anvil that counts what a client asks of it."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson

from infra.local import evm
from infra.local.deployment import LocalDeployment
from infra.local.evm import Rpc, Transactor, Tx, encode_call

# The local anvil's block gas limit is 1e9 (infra.local.stack): the transactions of one block
# must fit it by their gas limits, or the rest wait for a block nobody mines.
_BLOCK_GAS = 950_000_000
# Gas limits: a V3 pool's creation used 4.5-4.9 million, a V2 pair's about 2.0 million.
_GAS_V3 = 5_500_000
_GAS_V2 = 2_600_000
_V3_FEES = (500, 3000, 10000)
# The synthetic tokens' addresses: this prefix and a counter (no contract lives there;
# createPair and createPool never call their tokens).
_TOKEN_PREFIX = 0x5CA1E


def token_address(n: int) -> str:
    return f"0x{_TOKEN_PREFIX:05x}{n:035x}"


def create_quiet_pools(
    rpc_url: str,
    deployment: LocalDeployment,
    count: int,
    first_timestamp: int,
    progress: Callable[[int, int], None],
) -> tuple[int, int, dict[str, int]]:
    """Create ``count`` pools of distinct synthetic token pairs through the deployment's
    factories (by turns: Uniswap V3 with fee tiers 500/3000/10000 by turns, Uniswap V2,
    SushiSwap), in blocks stamped a second apart from ``first_timestamp``. Returns (blocks
    mined, the last block's timestamp, pools per dex). Raises if a creation reverts."""
    factory_of = {factory.dex: factory.address for factory in deployment.factories}
    sender = deployment.accounts.adversaries[0]  # the simulator never sends from it
    txs: list[Tx] = []
    per_dex: collections.Counter[str] = collections.Counter()
    for n in range(count):
        a, b = token_address(2 * n + 1), token_address(2 * n + 2)
        dex = ("uniswap_v3", "uniswap_v2", "sushiswap")[n % 3]
        per_dex[dex] += 1
        if dex == "uniswap_v3":
            fee = _V3_FEES[(n // 3) % 3]
            data = encode_call("createPool(address,address,uint24)", a, b, fee)
            txs.append(Tx(sender, factory_of[dex], data, _GAS_V3))
        else:
            data = encode_call("createPair(address,address)", a, b)
            txs.append(Tx(sender, factory_of[dex], data, _GAS_V2))
    blocks, timestamp, done = 0, first_timestamp - 1, 0
    rpc = Rpc(rpc_url)
    try:
        with evm.manual_mining(rpc):
            transactor = Transactor(rpc)
            start = 0
            while start < len(txs):
                end, gas = start, 0
                while end < len(txs) and gas + txs[end].gas <= _BLOCK_GAS:
                    gas += txs[end].gas
                    end += 1
                timestamp += 1
                transactor.execute(txs[start:end], timestamp=timestamp)  # strict: raises
                blocks += 1
                done += end - start
                start = end
                progress(done, count)
    finally:
        rpc.close()
    return blocks, timestamp, dict(per_dex)


@dataclass
class Counts:
    """What a client asked: HTTP requests, the JSON-RPC calls in them (a batch counts each of
    its calls), calls per method, and the bytes of the requests and answers."""

    http_requests: int = 0
    rpc_calls: int = 0
    batches: int = 0
    methods: collections.Counter[str] = field(default_factory=collections.Counter)
    request_bytes: int = 0
    response_bytes: int = 0
    # eth_getLogs calls by the length of their address list (0: none, by topic alone).
    get_logs_addresses: collections.Counter[int] = field(default_factory=collections.Counter)

    def describe(self) -> str:
        methods = ", ".join(f"{m} {n}" for m, n in sorted(self.methods.items()))
        lists = ", ".join(
            f"{n} with {size} addresses" if size else f"{n} by topic alone"
            for size, n in sorted(self.get_logs_addresses.items())
        )
        return (
            f"{self.http_requests} HTTP requests ({self.batches} of them JSON-RPC batches), "
            f"{self.rpc_calls} JSON-RPC calls ({methods}; eth_getLogs: {lists}); "
            f"{self.request_bytes:,} bytes sent, {self.response_bytes:,} received"
        )


def _is_get_logs(call: object) -> bool:
    return isinstance(call, dict) and call.get("method") == "eth_getLogs"


def _addresses(call: dict) -> int:
    params = call.get("params") or [{}]
    address = params[0].get("address") if isinstance(params[0], dict) else None
    if address is None:
        return 0
    return len(address) if isinstance(address, list) else 1


class CountingProxy:
    """An HTTP reverse proxy on 127.0.0.1 (a thread) forwarding POSTs to ``upstream`` with
    httpx and counting them; ``take()`` returns the counts so far and starts afresh."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._client = httpx.Client(timeout=120.0)
        self._lock = threading.Lock()
        self._counts = Counts()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the client would have with anvil

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = proxy._client.post(
                    proxy.upstream, content=body, headers={"content-type": "application/json"}
                )
                proxy._count(body, len(answer.content))
                self.send_response(answer.status_code)
                self.send_header(
                    "Content-Type", answer.headers.get("content-type", "application/json")
                )
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _count(self, body: bytes, answered: int) -> None:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = {}
        calls = payload if isinstance(payload, list) else [payload]
        with self._lock:
            counts = self._counts
            counts.http_requests += 1
            counts.batches += isinstance(payload, list)
            counts.rpc_calls += len(calls)
            counts.methods.update(str(c.get("method", "?")) for c in calls if isinstance(c, dict))
            counts.get_logs_addresses.update(_addresses(c) for c in calls if _is_get_logs(c))
            counts.request_bytes += len(body)
            counts.response_bytes += answered

    def take(self) -> Counts:
        with self._lock:
            counts, self._counts = self._counts, Counts()
        return counts

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._client.close()
