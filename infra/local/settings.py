"""The local stack's and the simulator's settings, apart from production's.

``LocalSettings`` is the production ``Settings`` plus two sections: ``local`` (the embedded
stack: ports, the history mined before going live, the subgraph stand-in) and ``simulator``
(the market simulator). The CLI loads it; production code paths (publishers, pipelines,
model) take ``Settings`` and never see these sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from dexwatch.core.config import load_settings
from dexwatch.core.settings import Settings, SettingsError, StrictModel

# The faults the local stand-in for The Graph can serve (infra/local/subgraph/server.py).
StandInFault = Literal["http_429", "http_500", "http_503", "graphql_error", "timeout"]


class SubgraphStandInSettings(StrictModel):
    """Indexing lag and faults of the local stand-in for The Graph, to watch the subgraph
    publisher wait and retry (`python -m infra.local.subgraph` takes the same as flags).
    The defaults are a punctual subgraph that never fails."""

    # _meta.block and the rows stay at the newest block that is this many blocks and this
    # many seconds of chain time behind the chain's head.
    lag_blocks: int = Field(0, ge=0)
    lag_s: float = Field(0.0, ge=0)
    # Share of the requests answered with each fault, e.g. {http_429: 0.2}; drawn per request
    # from a generator seeded with seed, so a run's n-th request always gets the same answer.
    faults: dict[StandInFault, float] = Field(default_factory=dict)
    seed: int = 0
    # A timeout fault holds the request this long, then closes the connection unanswered.
    hang_s: float = Field(2.0, gt=0)

    @field_validator("faults")
    @classmethod
    def _shares(cls, faults: dict[str, float]) -> dict[str, float]:
        if any(not 0 <= share <= 1 for share in faults.values()):
            raise ValueError("each share must be between 0 and 1")
        if sum(faults.values()) > 1:
            raise ValueError(f"the shares add up to {sum(faults.values()):g}, more than 1")
        return faults


# The chain id of the stack's own chain: its anvil and manifest keep the plain names
# (``anvil``, ``deployment.json``); other local chains' carry their id.
STACK_CHAIN_ID = 31337


def block_intervals(block_s: int) -> dict[str, float | int]:
    """The simulator's intervals that mine a chain of fixed ``block_s`` blocks, live and in
    history."""
    return {"block_interval_s": float(block_s), "history_block_interval_s": block_s}


class LocalStackSettings(StrictModel):
    host: str = "127.0.0.1"
    anvil_port: int = Field(8545, gt=0, lt=65536)
    emulator_port: int = Field(8085, gt=0, lt=65536)
    # The local stand-in for The Graph (infra/local/subgraph), started by `dexwatch run`.
    subgraph_port: int = Field(8000, gt=0, lt=65536)
    subgraph_standin: SubgraphStandInSettings = SubgraphStandInSettings()
    # The dashboard `dexwatch run` serves (a free port when this one is taken; 0: always).
    dashboard_port: int = Field(8050, ge=0, lt=65536)
    # `dexwatch run` starts a fresh chain this many hours (rounded down to a whole hour) in
    # the past and mines that history before going live, so that the subgraph path has
    # complete hours at once: with 8, each pool's last hours have the 6 hours of history the
    # hourly features need. History is mined simulator.history_block_interval_s apart (about
    # 10 s per hour), its last live_history_minutes with live-like blocks
    # (simulator.block_interval_s apart, about 40 s per hour): the chain publisher starts
    # there, so the chain path's baselines hold live-like traffic only.
    history_hours: float = Field(8.0, ge=0, le=48)
    # A run that first trains its models (in the background, competing for the CPU with the
    # mining) starts the chain only this far back, so the chain path scores within two
    # minutes; the hourly path then scores once its pools have 6 hours of history.
    first_run_history_hours: float = Field(1.0, ge=0, le=48)
    live_history_minutes: float = Field(15.0, ge=0)
    anvil_accounts: int = Field(20, ge=12)
    chain_id: int = STACK_CHAIN_ID
    node_modules: Path = Path("node_modules")

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.anvil_port}"

    @property
    def emulator_host(self) -> str:
        return f"{self.host}:{self.emulator_port}"

    @property
    def subgraph_url(self) -> str:
        return f"http://{self.host}:{self.subgraph_port}"


class SimulatorSettings(StrictModel):
    seed: int = 7
    # Live runs mine a block every block_interval_s, timestamped with the wall clock.
    # History runs (`simulate history`) stamp blocks history_block_interval_s apart, as fast
    # as they can mine. The default chain has no block time of its own: live blocks come often
    # and history is mined with fewer, longer blocks (the same trades a second of chain time).
    # A chain with a fixed block time (chain.block_time_s: 12 on an Ethereum-like chain) is
    # mined with it, live and in history (LocalSettings).
    block_interval_s: float = Field(2.0, gt=0)
    history_block_interval_s: int = Field(12, ge=1)
    # A simulated "day" of trading rhythm passes in this many seconds of chain time.
    day_length_s: float = Field(600.0, gt=0)
    # Mean swaps per pool per minute of chain time at the daily average.
    swaps_per_minute: float = Field(20.0, gt=0)
    # Chance per pool per minute of chain time that a liquidity provider adds or removes a
    # position.
    lp_change_probability: float = Field(0.3, ge=0, le=1)
    # Share of those moves that take liquidity out (the rest add; moving a position the price
    # has left back around it is neither). A real busy pool's providers mostly add where the
    # price is and let old positions fall out of range: bench/calibration.py.
    lp_removal_share: float = Field(0.5, ge=0, le=1)
    # A provider's add or removal: uniform between these shares of the pool's value. In a
    # concentrated market a narrow position's liquidity is many times its value's share of
    # the in-range liquidity: the calibrated market's are a fifth of the default's.
    lp_change_share: tuple[float, float] = (0.001, 0.004)
    # Log-normal trade size in USD: median and shape (sigma of the log).
    trade_usd_median: float = Field(600.0, gt=0)
    trade_usd_sigma: float = Field(1.3, gt=0)
    # Below the median, trade sizes spread this much (sigma of the log) instead: real pools
    # have a long tail of small trades. None: trade_usd_sigma on both sides.
    trade_usd_sigma_low: float | None = Field(None, gt=0)
    # Daily volatility of the fair prices the traders chase. The default's ten-minute days
    # move 1 % (2.4 % an hour, a hectic real hour's): at 4 %, its assets moved 3 % every five
    # minutes, and an 8 % market move in three blocks was within its habits at that horizon.
    daily_volatility: float = Field(0.01, ge=0)
    # Volatility regimes: the fair prices' volatility, and the market's activity with it, are
    # multiplied by exp(x), x a mean-reverting (Ornstein-Uhlenbeck) process with this standard
    # deviation and half-life: calm and hectic hours, fat tails in hourly price changes.
    regime_sigma: float = Field(0.0, ge=0)
    regime_halflife_s: float = Field(3600.0, gt=0)
    # Bursts: the same on the scale of minutes (news, a liquidation, a whale), so that
    # trades and moves come in clusters as on a real chain.
    burst_sigma: float = Field(0.0, ge=0)
    burst_halflife_s: float = Field(60.0, gt=0)
    # The daily rhythm: activity swings between 1 - amplitude and 1 + amplitude times the
    # mean, busiest at busiest_at (a fraction of the day: 0.5 is noon). Days 6 and 7 of each
    # week of day_length_s days trade weekend_activity times as much.
    rhythm_amplitude: float = Field(0.6, ge=0, lt=1)
    busiest_at: float = Field(0.5, ge=0, lt=1)
    weekend_activity: float = Field(1.0, gt=0)
    # How traders pick a side. "arbitrage": traders pick a side at random and an arbitrageur
    # brings each pool's price back within its fee of the fair price at the next block, as
    # bots trading against an external market do: pools of the same assets agree, as on a
    # real chain (the market view prices assets across pools). "lean" (the early way): 70 %
    # of trades lean toward the fair price, the rest at random; each pool wanders off the
    # others by several percent.
    price_discovery: Literal["lean", "arbitrage"] = "arbitrage"
    # The arbitrageur trades only when the price is this much (in log) beyond the fee: its
    # gas and risk. The smaller, the more back-runs and the closer pools follow the market.
    arbitrage_min_gap: float = Field(0.0, ge=0)
    # Share of swaps whose output goes to a router (the Swap's recipient is not the trader).
    router_share: float = Field(0.0, ge=0, le=1)
    # Concentrated liquidity: providers keep narrow positions (widths below) around each V3
    # pool's price worth this many times the deployment's wide positions in it, and move a
    # position back around the price once the price has left it. 0: wide positions only.
    concentrated_ratio: float = Field(0.0, ge=0)
    # Width of the positions providers add, in ticks: log-normal with this median and sigma
    # of the log. None: 1.2x to 3x price ranges, the early simulator's.
    position_width_ticks: tuple[float, float] | None = None
    # Share of V3 adds that are range orders: one tick spacing wide, just beside the price.
    range_order_share: float = Field(0.0, ge=0, le=1)
    # Just-in-time liquidity bundles per V3 pool per hour (at average activity): in one
    # block, a searcher mints 30 to 85 times the in-range liquidity in the tick spacing
    # around the price, a large swap trades through it, and the searcher removes it.
    jit_per_hour: float = Field(0.0, ge=0)
    # Pools fall silent: chance per pool per day of chain time that a silence starts, and the
    # silences' mean length (exponential) in hours.
    silences_per_day: float = Field(0.0, ge=0)
    silence_mean_hours: float = Field(3.0, gt=0)

    @field_validator("lp_change_share")
    @classmethod
    def _a_share_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high < 1:
            raise ValueError(f"must be two shares, 0 < low <= high < 1: got {low:g}, {high:g}")
        return value


class LocalSettings(Settings):
    """Settings of a process that runs on the local stack: the CLI, the stack, the simulator."""

    local: LocalStackSettings = LocalStackSettings()
    simulator: SimulatorSettings = SimulatorSettings()

    @model_validator(mode="after")
    def _simulator_keeps_the_chains_block_time(self) -> LocalSettings:
        """A chain with a fixed block time is simulated with it, live and in history: block
        intervals the simulator section leaves unset follow chain.block_time_s, and one that
        contradicts it is an error (a 12 s chain mined every 2 s is not that chain)."""
        if len(self.chains) > 1:  # the local stack mines one chain
            return self
        block_s = self.chain.block_time_s
        if block_s is None:
            return self
        intervals = block_intervals(block_s)
        for name in sorted(intervals.keys() & self.simulator.model_fields_set):
            if getattr(self.simulator, name) != block_s:
                raise ValueError(
                    f"simulator.{name} {getattr(self.simulator, name):g} contradicts "
                    f"chain.block_time_s {block_s}: leave it out, and the simulator mines "
                    f"the chain's {block_s} s blocks"
                )
        # Validation runs once, on a fresh model: filling its own section here is safe.
        object.__setattr__(self, "simulator", self.simulator.model_copy(update=intervals))
        return self

    @property
    def deployment_path(self) -> Path:
        """The local deployment manifest (infra.local.deployment) of the stack's chain
        (local.chain_id), written by `local up`."""
        return self.deployment_path_of(self.local.chain_id)

    def deployment_path_of(self, chain_id: int) -> Path:
        """The deployment manifest of one local chain: the default chain's keeps its name."""
        name = "deployment.json" if chain_id == STACK_CHAIN_ID else f"deployment-{chain_id}.json"
        return self.state_dir / name

    def local_chains(self) -> list[LocalSettings]:
        """One-chain settings per chain the local stack runs: each configured chain whose
        node is on local.host, with local.anvil_port and local.chain_id its own, and the
        simulator mining its block time. With one chain, these settings themselves."""
        if len(self.chains) == 1:
            return [self]
        local = []
        for chain in self.chains:
            url = urlsplit(chain.rpc_urls[0])
            if url.hostname not in (self.local.host, "localhost") or url.port is None:
                continue
            block_s = chain.block_time_s
            local.append(
                self.for_chain(chain.chain_id).with_sections(
                    local={"anvil_port": url.port, "chain_id": chain.chain_id},
                    simulator={} if block_s is None else block_intervals(block_s),
                )
            )
        return local

    def subgraph_chains(self) -> list[LocalSettings]:
        """The local chains (``local_chains``) whose hours the local stand-in for The Graph
        indexes, each reading its own subgraphs (subgraph.sources narrowed to the chain).

        Raises:
            SettingsError: two local chains read the same subgraph: the stand-in would serve
                one chain's hours as the other's.
        """
        chains = self.local_chains()
        readers: dict[str, str] = {}
        for chain in chains:
            for source in chain.subgraph.sources:
                other = readers.setdefault(source.path, chain.chain.name)
                if other != chain.chain.name:
                    raise SettingsError(
                        f"the local chains {other} and {chain.chain.name} read the same "
                        f"subgraph ({source.path}): give each local chain subgraph_sources of "
                        "its own (infra/local/chains/two-chains.yaml)"
                    )
        return chains

    def with_deployment(self) -> LocalSettings:
        """These settings, with chain.factories and market.assets from the local deployment
        manifest where none are configured and the manifest exists: on the local stack the
        publishers follow what `local up` deployed and the market view prices its tokens.
        With several chains, each chain's factories and assets from its own manifest.
        Production configures both."""
        from infra.local.deployment import LocalDeployment

        if len(self.chains) > 1:
            chains = []
            for chain in self.chains:
                path = self.deployment_path_of(chain.chain_id)
                if path.is_file() and (not chain.factories or chain.assets is None):
                    deployment = LocalDeployment.load(path)
                    update: dict[str, Any] = {}
                    if not chain.factories:
                        update["factories"] = list(deployment.factories)
                    if chain.assets is None:
                        update["assets"] = deployment.assets()
                    chain = chain.model_copy(update=update)
                chains.append(chain)
            return self.model_copy(update={"chains": chains})
        if not self.deployment_path.is_file():
            return self
        deployment = LocalDeployment.load(self.deployment_path)
        settings = self
        if not self.chain.factories:
            settings = settings.with_sections(chain={"factories": list(deployment.factories)})
        if not self.market.assets:
            settings = settings.with_sections(market={"assets": deployment.assets()})
        return settings


def load_local_settings(config_file: Path | None = None, **overrides: Any) -> LocalSettings:
    """``load_settings`` for LocalSettings."""
    return load_settings(config_file, schema=LocalSettings, **overrides)
