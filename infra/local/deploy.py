"""Deploy the local market: test tokens, Uniswap V3, Uniswap V2 and SushiSwap, eight funded pools.

Runs against a fresh anvil (accounts unlocked). Transactions are pre-encoded and sent in a
handful of batched blocks, so a deployment takes about a second.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from dexwatch.core.settings import Dex, FactoryConfig
from infra.local import evm
from infra.local.artifacts import load_artifact
from infra.local.deployment import Accounts, LocalDeployment, PoolInfo, TokenInfo
from infra.local.evm import Rpc, Transactor, Tx, decode, encode_args, encode_call
from infra.local.settings import LocalSettings

log = logging.getLogger("dexwatch.local.deploy")

# symbol, token name, initial USD price (USDC is the numeraire), peg. Three USD stablecoins, so
# that one's depeg is told apart from a move of everything priced in it, and which one left
# the peg from the other two.
_TOKENS = [
    ("WETH", "Wrapped Ether", 3000.0, None),
    ("USDC", "USD Coin", 1.0, "USD"),
    ("WBTC", "Wrapped BTC", 60000.0, None),
    ("LINK", "ChainLink Token", 15.0, None),
    ("UNI", "Uniswap", 8.0, None),
    ("DAI", "Dai Stablecoin", 1.0, "USD"),
    ("USDT", "Tether USD", 1.0, "USD"),
]
_DECIMALS = 18  # ERC20PresetMinterPauser has fixed 18 decimals


@dataclass(frozen=True)
class _PoolPlan:
    dex: Dex
    base: str
    quote: str
    fee: int | None  # V3 fee tier; None for V2 pairs
    depth_usd: float

    @property
    def name(self) -> str:
        name = f"{self.dex}:{self.base}/{self.quote}"
        return f"{name}:{self.fee}" if self.fee else name


_POOLS = [
    _PoolPlan("uniswap_v3", "WETH", "USDC", 500, 5_000_000),
    _PoolPlan("uniswap_v3", "WBTC", "USDC", 3000, 4_000_000),
    _PoolPlan("sushiswap", "WETH", "USDC", None, 4_000_000),
    _PoolPlan("sushiswap", "LINK", "WETH", None, 3_000_000),
    # UNI quoted in USDC: three floating assets with a stablecoin pool of their own, so
    # that the market's median stays put when one of them moves alone.
    _PoolPlan("uniswap_v2", "UNI", "USDC", None, 3_000_000),
    # The second stablecoin against the first, and WETH priced in it.
    _PoolPlan("uniswap_v3", "DAI", "USDC", 500, 4_000_000),
    _PoolPlan("uniswap_v3", "WETH", "DAI", 3000, 3_000_000),
    _PoolPlan("uniswap_v3", "USDT", "USDC", 500, 4_000_000),
]
# Every account starts with this much USD worth of every token: traders never run dry.
_BALANCE_USD = 1e9
# Each liquidity provider adds this share of a pool's depth at deployment, in V3 over the
# price ranges below (price / r .. price * r). The deployer keeps the rest in one wide range
# (price / 4 .. price * 4): about 97% of V3 liquidity and 98% of V2 LP tokens, so the
# incident injector can drain or rug a pool through the team's position alone.
_LP_SHARE_OF_DEPTH = 0.005
_LP_RANGES = (1.5, 2.0, 3.0, 4.0)
_TEAM_RANGE = 4.0
_GAS_CREATE = 15_000_000
_GAS_CREATE_POOL = 6_000_000
_GAS_SMALL = 200_000


def deploy_local_contracts(
    settings: LocalSettings, start_timestamp: int | None = None
) -> LocalDeployment:
    """Deploy everything to the anvil at ``settings.local.rpc_url`` and describe it. Blocks
    are stamped with the wall clock, or one second apart from ``start_timestamp`` (a chain
    started in the past, see ``stack.up``)."""
    started = time.monotonic()
    rpc = Rpc(settings.local.rpc_url)
    try:
        with evm.manual_mining(rpc):
            deployment = _Deployer(rpc, settings.local.node_modules, start_timestamp).run()
    finally:
        rpc.close()
    log.info(
        "deployed the local contracts",
        extra={"seconds": round(time.monotonic() - started, 2), "pools": len(deployment.pools)},
    )
    return deployment


class _Deployer:
    def __init__(self, rpc: Rpc, node_modules, start_timestamp: int | None = None) -> None:
        self.rpc = rpc
        self.node_modules = node_modules
        self.tx = Transactor(rpc)
        self._next_timestamp = start_timestamp
        accounts = [a.lower() for a in rpc.call("eth_accounts")]
        if len(accounts) < 8:
            raise evm.ChainError(f"the node has {len(accounts)} unlocked accounts; need at least 8")
        self.all_accounts = accounts
        self.accounts = Accounts(
            deployer=accounts[0],
            liquidity_providers=accounts[1:5],
            traders=accounts[5:-2],
            adversaries=accounts[-2:],
        )
        self.deployer = accounts[0]

    def _execute(self, txs: list[Tx]) -> list[dict]:
        """Send ``txs`` and mine them in one block (back-dated when the chain starts in the
        past)."""
        timestamp = self._next_timestamp
        if timestamp is not None:
            self._next_timestamp = timestamp + 1
        return self.tx.execute(txs, timestamp=timestamp)

    def _create(self, contract: str, types: list[str] | None = None, *args) -> Tx:
        code = load_artifact(self.node_modules, contract).bytecode
        return Tx(self.deployer, None, code + encode_args(types or [], *args), _GAS_CREATE)

    def _call(
        self, to: str, signature: str, *args, sender: str | None = None, gas: int = _GAS_SMALL
    ) -> Tx:
        return Tx(sender or self.deployer, to, encode_call(signature, *args), gas)

    def run(self) -> LocalDeployment:
        deployer = self.deployer
        # Block 1: tokens and factories.
        creations = [
            self._create("ERC20PresetMinterPauser", ["string", "string"], name, symbol)
            for symbol, name, _, _ in _TOKENS
        ]
        creations += [
            self._create("UniswapV3Factory"),
            self._create("UniswapV2Factory", ["address"], deployer),
            self._create("SushiSwapFactory", ["address"], deployer),
        ]
        receipts = self._execute(creations)
        addresses = [r["contractAddress"].lower() for r in receipts]
        factory_block = int(receipts[0]["blockNumber"], 16)
        token_addresses = dict(zip([t[0] for t in _TOKENS], addresses, strict=False))
        v3_factory, v2_factory, sushi_factory = addresses[len(_TOKENS) :]
        factory_of = {
            "uniswap_v3": v3_factory,
            "uniswap_v2": v2_factory,
            "sushiswap": sushi_factory,
        }
        usd = {symbol: price for symbol, _, price, _ in _TOKENS}
        peg = {symbol: peg for symbol, _, _, peg in _TOKENS}
        tokens = {
            symbol: TokenInfo(
                symbol=symbol,
                address=token_addresses[symbol],
                decimals=_DECIMALS,
                initial_usd_price=usd[symbol],
                peg=peg[symbol],
            )
            for symbol in token_addresses
        }
        weth = token_addresses["WETH"]

        # Block 2: periphery, pools, balances.
        txs = [
            self._create(
                "NonfungiblePositionManager",
                ["address", "address", "address"],
                v3_factory,
                weth,
                "0x" + "00" * 20,
            ),
            self._create("SwapRouter", ["address", "address"], v3_factory, weth),
        ]
        for plan in _POOLS:
            a, b = token_addresses[plan.base], token_addresses[plan.quote]
            if plan.fee:
                txs.append(
                    self._call(
                        v3_factory,
                        "createPool(address,address,uint24)",
                        a,
                        b,
                        plan.fee,
                        gas=_GAS_CREATE_POOL,
                    )
                )
            else:
                txs.append(
                    self._call(
                        factory_of[plan.dex],
                        "createPair(address,address)",
                        a,
                        b,
                        gas=_GAS_CREATE_POOL,
                    )
                )
        for symbol, token in tokens.items():
            amount = evm.units(token, _BALANCE_USD / usd[symbol])
            txs += [
                self._call(token.address, "mint(address,uint256)", account, amount)
                for account in self.all_accounts
            ]
        receipts = self._execute(txs)
        npm, router = (r["contractAddress"].lower() for r in receipts[:2])
        pools = self._pool_infos(tokens, factory_of)
        deployment = LocalDeployment(
            chain_id=int(self.rpc.call("eth_chainId"), 16),
            rpc_url=self.rpc.url,
            deployed_at_block=factory_block,
            tokens=tokens,
            factories=[
                FactoryConfig(
                    dex=dex,
                    protocol="v3" if dex == "uniswap_v3" else "v2",
                    address=address,
                    start_block=factory_block,
                )
                for dex, address in factory_of.items()
            ],
            pools=pools,
            periphery={"v3_swap_router": router, "v3_position_manager": npm},
            accounts=self.accounts,
        )

        # Block 3: approvals, prices, the team's liquidity. Block 4: the other providers'.
        txs = [
            self._call(
                token.address, "approve(address,uint256)", spender, 2**256 - 1, sender=account
            )
            for account in self.all_accounts
            for token in tokens.values()
            for spender in (router, npm)
        ]
        for plan, pool in zip(_POOLS, pools, strict=True):
            if pool.protocol == "v3":
                txs.append(
                    self._call(
                        pool.address,
                        "initialize(uint160)",
                        evm.sqrt_price_x96(usd[pool.token0] / usd[pool.token1]),
                    )
                )
            txs += self._liquidity(
                deployment,
                plan,
                pool,
                deployer,
                1 - _LP_SHARE_OF_DEPTH * len(_LP_RANGES),
                _TEAM_RANGE,
            )
        self._execute(txs)
        txs = []
        for plan, pool in zip(_POOLS, pools, strict=True):
            for provider, price_range in zip(
                self.accounts.liquidity_providers, _LP_RANGES, strict=False
            ):
                txs += self._liquidity(
                    deployment, plan, pool, provider, _LP_SHARE_OF_DEPTH, price_range
                )
        self._execute(txs)
        return deployment

    def _pool_infos(
        self, tokens: dict[str, TokenInfo], factory_of: dict[str, str]
    ) -> list[PoolInfo]:
        calls = []
        for plan in _POOLS:
            a, b = tokens[plan.base].address, tokens[plan.quote].address
            if plan.fee:
                calls.append(
                    (
                        factory_of[plan.dex],
                        encode_call("getPool(address,address,uint24)", a, b, plan.fee),
                    )
                )
            else:
                calls.append((factory_of[plan.dex], encode_call("getPair(address,address)", a, b)))
        infos = []
        for plan, raw in zip(_POOLS, evm.eth_calls(self.rpc, calls), strict=True):
            token0, token1 = sorted((plan.base, plan.quote), key=lambda s: tokens[s].address)
            infos.append(
                PoolInfo(
                    name=plan.name,
                    dex=plan.dex,
                    protocol="v3" if plan.fee else "v2",
                    address=decode(["address"], raw)[0].lower(),
                    token0=token0,
                    token1=token1,
                    fee=plan.fee,
                )
            )
        return infos

    def _liquidity(
        self,
        deployment: LocalDeployment,
        plan: _PoolPlan,
        pool: PoolInfo,
        owner: str,
        share: float,
        price_range: float,
    ) -> list[Tx]:
        """``owner`` adds ``share`` of the pool's depth at the initial prices (half each side)."""
        usd = {s: t.initial_usd_price for s, t in deployment.tokens.items()}
        half_usd = plan.depth_usd * share / 2
        amount0, amount1 = (
            evm.units(deployment.tokens[s], half_usd / usd[s]) for s in (pool.token0, pool.token1)
        )
        if pool.protocol == "v2":
            return evm.v2_add(deployment, pool, owner, amount0, amount1)
        spacing = evm.TICK_SPACING[pool.fee]
        center = evm.tick_of(usd[pool.token0] / usd[pool.token1])
        width = math.log(price_range) / math.log(1.0001)
        lower, upper = (
            evm.aligned_tick(center - width, spacing),
            evm.aligned_tick(center + width, spacing),
        )
        return [evm.v3_mint(deployment, pool, owner, lower, upper, amount0, amount1)]
