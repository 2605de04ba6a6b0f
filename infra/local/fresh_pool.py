"""The fresh scam pool of the ``fresh-pool-rug`` incident (``infra.local.incidents``): a new
token, its pool against a pool's quote token on the same DEX, and the team's liquidity at a
cent a token, $200k deep."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from infra.local import evm
from infra.local.artifacts import load_artifact
from infra.local.deployment import LocalDeployment, PoolInfo, TokenInfo
from infra.local.evm import Rpc, Tx

__all__ = ["launch_fresh_pool"]

_FRESH_USD_PRICE = 0.01
_FRESH_DEPTH_USD = 200_000.0
_FRESH_FEE = 3000
_GAS_CREATE = 15_000_000
_GAS_CREATE_POOL = 6_000_000
_GAS_SMALL = 200_000


def launch_fresh_pool(
    node_modules: Path,
    deployment: LocalDeployment,
    rpc: Rpc,
    pool: PoolInfo,
    team: str,
    quote_usd: float,
    mine: Callable[[list[Tx]], list[dict]],
) -> tuple[LocalDeployment, PoolInfo, str]:
    """Deploy a new token and a pool of it against ``pool``'s quote token, on its DEX, with
    the team's liquidity, mining each step with ``mine``.

    Returns:
        The deployment with the token and the pool, the pool, and what was launched in words.
    """
    quote = "USDC" if "USDC" in (pool.token0, pool.token1) else "WETH"
    code = load_artifact(node_modules, "ERC20PresetMinterPauser").bytecode
    symbol = f"RUG{evm.latest_block(rpc)[0] + 1}"
    creation = Tx(
        team, None,
        code + evm.encode_args(["string", "string"], f"Fresh {symbol}", symbol), _GAS_CREATE,
    )  # fmt: skip
    (receipt,) = mine([creation])
    token = TokenInfo(
        symbol=symbol, address=receipt["contractAddress"].lower(), decimals=18,
        initial_usd_price=_FRESH_USD_PRICE,
    )  # fmt: skip
    deployment = deployment.model_copy(update={"tokens": {**deployment.tokens, symbol: token}})
    factory = next(f for f in deployment.factories if f.dex == pool.dex).address
    quote_token = deployment.tokens[quote]
    manager = deployment.periphery["v3_position_manager"]
    txs = [
        Tx(team, token.address, evm.encode_call("mint(address,uint256)", team,
           evm.units(token, 10 * _FRESH_DEPTH_USD / _FRESH_USD_PRICE)), _GAS_SMALL),
        Tx(team, token.address,
           evm.encode_call("approve(address,uint256)", manager, 2**256 - 1), _GAS_SMALL),
    ]  # fmt: skip
    pair = (token.address, quote_token.address)
    protocol = pool.protocol
    if protocol == "v3":
        create = evm.encode_call("createPool(address,address,uint24)", *pair, _FRESH_FEE)
        lookup = evm.encode_call("getPool(address,address,uint24)", *pair, _FRESH_FEE)
    else:
        create = evm.encode_call("createPair(address,address)", *pair)
        lookup = evm.encode_call("getPair(address,address)", *pair)
    mine([*txs, Tx(team, factory, create, _GAS_CREATE_POOL)])
    (raw,) = evm.eth_calls(rpc, [(factory, lookup)])
    token0, token1 = sorted((symbol, quote), key=lambda s: deployment.tokens[s].address)
    fresh = PoolInfo(
        name=f"{pool.dex}:{symbol}/{quote}" + (f":{_FRESH_FEE}" * (protocol == "v3")),
        dex=pool.dex, protocol=protocol, address=evm.decode(["address"], raw)[0].lower(),
        token0=token0, token1=token1, fee=_FRESH_FEE if protocol == "v3" else None,
    )  # fmt: skip
    deployment = deployment.model_copy(update={"pools": [*deployment.pools, fresh]})
    # The team's liquidity at a cent a token: half the depth on each side, in V3 over
    # the same wide range as the deployment's.
    usd = {symbol: _FRESH_USD_PRICE, quote: quote_usd}
    amounts = [
        evm.units(deployment.tokens[s], _FRESH_DEPTH_USD / 2 / usd[s]) for s in (token0, token1)
    ]
    if protocol == "v3":
        price = usd[token0] / usd[token1]
        spacing = evm.TICK_SPACING[_FRESH_FEE]
        width = math.log(4.0) / math.log(1.0001)
        lower, upper = (evm.aligned_tick(evm.tick_of(price) + w, spacing) for w in (-width, width))
        init = evm.encode_call("initialize(uint160)", evm.sqrt_price_x96(price))
        liquidity = [
            Tx(team, fresh.address, init, _GAS_SMALL),
            evm.v3_mint(deployment, fresh, team, lower, upper, *amounts),
        ]
    else:
        liquidity = evm.v2_add(deployment, fresh, team, *amounts)
    mine(liquidity)
    launched = (
        f"launched {fresh.name} at ${_FRESH_USD_PRICE} a token, ${_FRESH_DEPTH_USD:,.0f} deep"
    )
    return deployment, fresh, launched
