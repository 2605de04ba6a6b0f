"""The pool registry's fee tiers and token decimals against the real contracts on anvil:
decimals read with one batch of eth_call for all tokens, tokens that answer no decimals
kept as None without stopping the publisher, and registries written before decimals were
kept read once at start."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from dexwatch.core.settings import ChainSettings, Settings
from infra.local import evm
from publishers.chain import run
from publishers.chain.checkpoint import FileCheckpointStore
from publishers.chain.rpc import RpcClient
from tests._faulty_rpc import FaultyRpcProxy
from tests.conftest import make_settings

pytestmark = pytest.mark.stack

# Runtime code of tokens that are not quite ERC-20s: decimals() (any call) answering 6, a
# revert, one byte instead of a word, and a word too large for a uint8.
SIX = "0x" + "600660005260206000f3"
REVERTS = "0x" + "60006000fd"
ONE_BYTE = "0x" + "600660005360016000f3"
TOO_LARGE = "0x" + "6103e860005260206000f3"
V2_FEE_TIER = 3000


def _address(n: int) -> str:
    return f"0x{0xDEC1:04x}{n:036x}"


def _install(settings: Settings, codes: dict[str, str]) -> None:
    rpc = evm.Rpc(settings.local.rpc_url)
    try:
        for address, code in codes.items():
            rpc.call("anvil_setCode", address, code)
    finally:
        rpc.close()


def test_token_decimals_come_in_one_batch_and_odd_tokens_give_none(deployed) -> None:
    base, deployment = deployed
    six, reverts, one_byte, too_large, codeless = (_address(n) for n in range(5))
    _install(base, {six: SIX, reverts: REVERTS, one_byte: ONE_BYTE, too_large: TOO_LARGE})
    tokens = {token.address: token.decimals for token in deployment.tokens.values()}
    odd = [six, reverts, one_byte, too_large, codeless]

    with FaultyRpcProxy(base.local.rpc_url) as proxy:
        with RpcClient.from_settings(ChainSettings(rpc_urls=[proxy.url])) as client:
            found = client.token_decimals([*tokens, *odd])
            assert proxy.methods == ["eth_call"], "one request for every token"
            # More tokens than a batch holds: one request per 100.
            many = client.token_decimals([_address(n) for n in range(100, 301)])
    assert {address: found[address] for address in tokens} == tokens
    assert set(tokens.values()) == {18}  # the local ERC20PresetMinterPauser's
    assert [found[address] for address in odd] == [6, None, None, None, None]
    assert set(many.values()) == {None} and len(many) == 201
    assert proxy.methods == ["eth_call"] * 4


def _registry_lines(checkpoint: Path) -> dict[str, dict]:
    path = FileCheckpointStore(checkpoint).pools.path
    return {line["address"]: line for line in map(orjson.loads, path.read_bytes().splitlines())}


def test_the_registry_keeps_fee_tiers_and_decimals_and_fills_old_lines_once(
    deployed, tmp_path: Path
) -> None:
    base, deployment = deployed
    weth = deployment.tokens["WETH"].address
    six, codeless = _address(0), _address(1)
    _install(base, {six: SIX})
    # Two more pairs through the real V2 factory (createPair never calls its tokens): one
    # of a 6-decimal token, one of an address without code.
    factory = next(f.address for f in deployment.factories if f.dex == "uniswap_v2")
    rpc = evm.Rpc(base.local.rpc_url)
    try:
        with evm.manual_mining(rpc):
            evm.Transactor(rpc).execute([
                evm.Tx(deployment.accounts.deployer, factory,
                       evm.encode_call("createPair(address,address)", weth, other), 6_000_000)
                for other in (six, codeless)
            ])  # fmt: skip
        head, _ = evm.latest_block(rpc)
    finally:
        rpc.close()
    checkpoint = tmp_path / "chain.json"

    def publish(name: str):  # noqa: ANN202
        with FaultyRpcProxy(base.local.rpc_url) as proxy:
            settings = make_settings(
                base.state_dir,
                local={"anvil_port": base.local.anvil_port},
                chain={"rpc_urls": [proxy.url], "confirmations": 0, "checkpoint_path": checkpoint},
            ).with_deployment()
            stats = run(settings, once=True, record_to=tmp_path / name)
        return stats, proxy.methods.count("eth_call")

    stats, eth_calls = publish("first")
    # 7 local tokens and 2 odd ones, all in one request; the codeless token did not stop it.
    assert (eth_calls, stats.tokens_without_decimals, stats.last_block) == (1, 1, head)
    lines = _registry_lines(checkpoint)
    assert len(lines) == len(deployment.pools) + 2
    for pool in deployment.pools:
        line = lines[pool.address]
        assert line["fee_tier"] == (pool.fee if pool.protocol == "v3" else V2_FEE_TIER)
        assert (line["token0_decimals"], line["token1_decimals"]) == (
            deployment.tokens[pool.token0].decimals,
            deployment.tokens[pool.token1].decimals,
        )
    assert {line["fee_tier"] for line in lines.values()} == {500, 3000}  # the local V3 tiers
    odd = {
        other: next(line for line in lines.values() if other in (line["token0"], line["token1"]))
        for other in (six, codeless)
    }
    for other, expected in ((six, 6), (codeless, None)):
        line = odd[other]
        token_decimals = {line["token0"]: line["token0_decimals"],
                          line["token1"]: line["token1_decimals"]}  # fmt: skip
        assert token_decimals == {weth: 18, other: expected}
        assert (line["fee_tier"], line["decimals_read"]) == (V2_FEE_TIER, True)

    # A registry written before fee tiers and decimals were kept: read at the next start in
    # one request, and written back, so the start after that reads nothing.
    registry = FileCheckpointStore(checkpoint).pools.path
    new_fields = ("fee_tier", "token0_decimals", "token1_decimals", "decimals_read")
    registry.write_bytes(
        b"".join(
            orjson.dumps({k: v for k, v in line.items() if k not in new_fields}) + b"\n"
            for line in lines.values()
        )
    )
    stats, eth_calls = publish("old-lines")
    assert (eth_calls, stats.tokens_without_decimals, stats.events) == (1, 1, 0)
    assert _registry_lines(checkpoint) == lines
    written = registry.read_bytes()
    stats, eth_calls = publish("again")
    assert (eth_calls, stats.tokens_without_decimals) == (0, 0)
    assert registry.read_bytes() == written
