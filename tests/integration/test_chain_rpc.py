"""The chain publisher's JSON-RPC client against a real anvil, through a proxy that injects the
faults real providers show: rate limits, 5xx, timeouts, dropped connections, HTML error
pages, ranges refused as too large, dead URLs."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import pytest

from dexwatch.core import logs
from dexwatch.core.settings import ChainSettings
from infra.local import evm, processes
from publishers.chain import RpcError, RpcUnavailable
from publishers.chain.rpc import RpcClient
from tests._faulty_rpc import FaultyRpcProxy

pytestmark = pytest.mark.stack

# Small backoff and timeout so a test with several failed attempts still takes well under 1 s.
FAST = {"max_retries": 3, "backoff_base_s": 0.001, "backoff_max_s": 0.01, "timeout_s": 0.3}
TRANSFER_BLOCKS = 8


def _client(*urls: str, **retry: object) -> RpcClient:
    return RpcClient.from_settings(ChainSettings(rpc_urls=list(urls), retry={**FAST, **retry}))


def _dead_url(path: str = "") -> str:
    """A URL on a free local port: nobody listens there, so connections are refused."""
    return f"http://127.0.0.1:{processes.free_port()}{path}"


@pytest.fixture(scope="module")
def chain(module_deployed) -> tuple[str, list[str], int]:
    """(anvil URL, addresses with logs, head): the deployment's blocks and some more blocks
    of token transfers, so logs spread over more blocks than a narrow range allows."""
    settings, deployment = module_deployed
    rpc = evm.Rpc(settings.local.rpc_url)
    sender, receiver = deployment.accounts.traders[:2]
    tokens = [token.address for token in deployment.tokens.values()]
    try:
        with evm.manual_mining(rpc):
            transactor = evm.Transactor(rpc)
            for block in range(TRANSFER_BLOCKS):
                transactor.execute(
                    [evm.transfer(token, sender, receiver, 1000 + block) for token in tokens]
                )
        head, _ = evm.latest_block(rpc)
    finally:
        rpc.close()
    return settings.local.rpc_url, tokens + [pool.address for pool in deployment.pools], head


@pytest.fixture
def proxy(chain) -> Iterator[FaultyRpcProxy]:
    with FaultyRpcProxy(chain[0], hang_s=1.0) as running:
        yield running


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """logs.configure replaces the root handlers and logger levels: put them back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = ("httpx", "httpcore", "urllib3", "google", "grpc", "web3", "asyncio")
    levels = {name: logging.getLogger(name).level for name in noisy}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, previous in levels.items():
        logging.getLogger(name).setLevel(previous)


@pytest.mark.parametrize(
    "fault", ["http_429", "http_500", "http_503", "timeout", "disconnect", "not_json"]
)
def test_transient_faults_are_retried_until_the_call_succeeds(chain, proxy, fault: str) -> None:
    _, _, head = chain
    proxy.inject("eth_blockNumber", fault, fault)
    with _client(proxy.url) as client:
        assert client.block_number() == head
    assert proxy.faults_served == [("eth_blockNumber", fault)] * 2
    assert proxy.methods.count("eth_blockNumber") == 3


def test_batched_calls_are_retried_too(chain, proxy) -> None:
    url, _, head = chain
    proxy.inject("eth_getBlockByNumber", "http_503", "disconnect")
    with _client(url) as direct, _client(proxy.url) as client:
        assert client.get_headers(range(head + 1)) == direct.get_headers(range(head + 1))
    assert proxy.pending() == 0


def test_a_persistent_fault_gives_up_after_max_retries(proxy) -> None:
    proxy.inject("eth_blockNumber", *["http_503"] * 3)
    with _client(proxy.url, max_retries=2) as client, pytest.raises(RpcUnavailable) as raised:
        client.block_number()
    assert proxy.methods.count("eth_blockNumber") == 3
    assert "HTTP 503" in str(raised.value) and proxy.url in str(raised.value)


def test_too_wide_log_ranges_are_split_into_exactly_the_same_logs(chain, proxy) -> None:
    url, addresses, head = chain
    with _client(url) as direct:
        expected = direct.get_logs(0, head, addresses, [])
    assert len(expected) > 100
    assert len({entry["blockNumber"] for entry in expected}) >= TRANSFER_BLOCKS + 3

    proxy.max_log_blocks = 3
    with _client(proxy.url) as client:
        assert client.get_logs(0, head, addresses, []) == expected
        first_requests = proxy.methods.count("eth_getLogs")
        assert first_requests > math.ceil((head + 1) / 3)  # refusals, then the split ranges
        # The width that worked is remembered: no refused request the second time.
        assert client.get_logs(0, head, addresses, []) == expected
        second_requests = proxy.methods.count("eth_getLogs") - first_requests
        assert second_requests < first_requests


def test_a_one_off_too_large_refusal_is_split_in_two(chain, proxy) -> None:
    url, addresses, head = chain
    proxy.inject("eth_getLogs", "too_large")
    with _client(url) as direct, _client(proxy.url) as client:
        assert client.get_logs(0, head, addresses, []) == direct.get_logs(0, head, addresses, [])
    assert proxy.methods.count("eth_getLogs") == 3


def test_a_single_block_refused_as_too_large_is_an_error(chain, proxy) -> None:
    _, addresses, head = chain
    proxy.max_log_blocks = 0
    with _client(proxy.url) as client, pytest.raises(RpcError, match="single block"):
        client.get_logs(0, head, addresses, [])


def test_fails_over_from_a_dead_url_and_stays_on_the_live_one(chain, caplog) -> None:
    url, _, head = chain
    dead = _dead_url()
    caplog.set_level(logging.INFO, logger="dexwatch.publisher.rpc")
    with _client(dead, url) as client:
        assert client.block_number() == head
        refused = [r for r in caplog.records if dead in r.getMessage()]
        assert len(refused) == FAST["max_retries"] + 1  # every attempt on the dead URL
        assert any(f"switched to RPC URL {url}" in r.getMessage() for r in caplog.records)
        caplog.clear()
        assert client.chain_id() == 31337
        assert not [r for r in caplog.records if dead in r.getMessage()]


def test_a_url_that_rejects_the_key_is_left_without_retrying(chain, proxy) -> None:
    url, _, head = chain
    proxy.inject("eth_blockNumber", "http_401")
    with _client(proxy.url, url) as client:
        assert client.block_number() == head
    assert proxy.methods == ["eth_blockNumber"]


def test_no_url_answering_is_rpc_unavailable_naming_urls_but_never_their_keys(
    proxy, capfd, restore_logging
) -> None:
    logs.configure("DEBUG", "json")
    # httpx logs every request with its full URL at INFO: the scrubbing must hide the key.
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    dead = _dead_url("/v3/SECRETKEY1234")
    failing = f"{proxy.url}/v2/OTHERSECRET5678"
    proxy.inject("eth_chainId", *["http_503"] * (FAST["max_retries"] + 1))
    with _client(dead, failing) as client, pytest.raises(RpcUnavailable) as raised:
        client.chain_id()

    message = str(raised.value)
    output = capfd.readouterr().err
    assert "HTTP Request: POST" in output  # the URL-bearing lines were really logged
    for url in (dead, failing):
        redacted = url[: url.index("/", len("http://"))]
        assert redacted in message and redacted in output
    for secret in ("SECRETKEY1234", "OTHERSECRET5678"):
        assert secret not in message
        assert secret not in output
