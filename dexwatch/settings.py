"""The one configuration model of dexwatch.

Settings come, highest priority first, from keyword arguments, ``DEXWATCH_*`` environment
variables (nested keys joined by ``__``, e.g. ``DEXWATCH_CHAIN__CONFIRMATIONS=5``) and a
YAML file (``--config``, ``DEXWATCH_CONFIG`` or ``./dexwatch.yaml``). Every model rejects
unknown keys, so a typo is an error that names the key instead of a silently ignored value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from dexwatch import logs

CONFIG_ENV = "DEXWATCH_CONFIG"
DEFAULT_CONFIG_FILE = Path("dexwatch.yaml")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_SECRET_VERSION = re.compile(r"projects/[^/]+/secrets/[^/]+/versions/[^/]+")

Dex = Literal["uniswap_v3", "uniswap_v2", "sushiswap"]
Protocol = Literal["v3", "v2"]


class SettingsError(ValueError):
    """Configuration that cannot be used; the message names the offending key."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def normalize_address(value: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise ValueError(f"not a 20-byte hex address: {value!r}")
    return value.lower()


def redact_url(url: str) -> str:
    """Scheme, host and port only: RPC URLs often carry an API key in the path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


class FactoryConfig(StrictModel):
    """A factory whose pools the chain publisher follows."""

    dex: Dex
    protocol: Protocol
    address: str
    start_block: int = Field(0, ge=0)

    _address = field_validator("address")(normalize_address)


class ChainSettings(StrictModel):
    chain_id: int = 31337
    rpc_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8545"], min_length=1)
    # Empty means: read the factories of the local stack's deployment manifest.
    factories: list[FactoryConfig] = Field(default_factory=list)
    start_block: int = Field(0, ge=0)
    confirmations: int = Field(2, ge=0)
    batch_blocks: int = Field(500, ge=1)
    poll_interval_s: float = Field(0.5, gt=0)
    # How many recent block hashes the checkpoint keeps to find a fork point.
    reorg_window: int = Field(128, ge=1)
    request_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(0.2, gt=0)
    backoff_max_s: float = Field(10.0, gt=0)
    # Empty means <local.state_dir>/checkpoints/chain-<chain_id>.json
    checkpoint_path: Path | None = None

    @field_validator("rpc_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(f"RPC URL must be http(s): {redact_url(url)}")
        return urls

    @model_validator(mode="after")
    def _window_covers_confirmations(self) -> ChainSettings:
        if self.reorg_window <= self.confirmations:
            raise ValueError("reorg_window must be larger than confirmations")
        return self


class PubSubSettings(StrictModel):
    project: str = "dexwatch-local"
    # host:port of the Pub/Sub emulator; null in production.
    emulator_host: str | None = "127.0.0.1:8085"
    publish_timeout_s: float = Field(60.0, gt=0)


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


class LocalStackSettings(StrictModel):
    state_dir: Path = Path(".dexwatch")
    host: str = "127.0.0.1"
    anvil_port: int = Field(8545, gt=0, lt=65536)
    emulator_port: int = Field(8085, gt=0, lt=65536)
    # The local stand-in for The Graph (infra/local/subgraph), started by `dexwatch run`.
    subgraph_port: int = Field(8000, gt=0, lt=65536)
    subgraph_standin: SubgraphStandInSettings = SubgraphStandInSettings()
    # `dexwatch run` starts a fresh chain this many hours (rounded down to a whole hour) in
    # the past and mines that history before going live, so that the subgraph path has
    # complete hours at once: with 8, each pool's last hours have the 6 hours of history the
    # hourly features need. History is mined simulator.history_block_interval_s apart (about
    # 10 s per hour), its last live_history_minutes with live-like blocks
    # (simulator.block_interval_s apart, about 40 s per hour): the chain publisher starts
    # there, so the chain path's baselines hold live-like traffic only.
    history_hours: float = Field(8.0, ge=0, le=48)
    live_history_minutes: float = Field(15.0, ge=0)
    anvil_accounts: int = Field(20, ge=12)
    chain_id: int = 31337
    node_modules: Path = Path("node_modules")

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.anvil_port}"

    @property
    def emulator_host(self) -> str:
        return f"{self.host}:{self.emulator_port}"

    @property
    def deployment_path(self) -> Path:
        return self.state_dir / "deployment.json"

    @property
    def subgraph_url(self) -> str:
        return f"http://{self.host}:{self.subgraph_port}"


class SimulatorSettings(StrictModel):
    seed: int = 7
    # Live runs mine a block every block_interval_s, timestamped with the wall clock.
    block_interval_s: float = Field(2.0, gt=0)
    # History runs (`simulate history`) stamp blocks this far apart, as fast as they can mine.
    history_block_interval_s: int = Field(12, ge=1)
    # A simulated "day" of trading rhythm passes in this many seconds of chain time.
    day_length_s: float = Field(600.0, gt=0)
    # Mean swaps per pool per minute of chain time at the daily average.
    swaps_per_minute: float = Field(20.0, gt=0)
    # Chance per pool per minute of chain time that a liquidity provider adds or removes a
    # position.
    lp_change_probability: float = Field(0.3, ge=0, le=1)
    # Log-normal trade size in USD: median and shape (sigma of the log).
    trade_usd_median: float = Field(600.0, gt=0)
    trade_usd_sigma: float = Field(1.3, gt=0)
    # Daily volatility of the fair prices the traders chase.
    daily_volatility: float = Field(0.04, ge=0)


class WarehouseSettings(StrictModel):
    # duckdb: the local file; bigquery: the production dataset (tables created by Terraform).
    backend: Literal["duckdb", "bigquery"] = "duckdb"
    # Empty means <local.state_dir>/warehouse.duckdb
    path: Path | None = None
    bigquery_project: str = ""
    bigquery_dataset: str = "dexwatch"


class PipelineSettings(StrictModel):
    """The streaming pipeline: event-time slices, windows, triggers (see contracts/features)."""

    # Events are summarised per pool in fixed slices of this many seconds of event time.
    slice_s: int = Field(15, ge=1)
    # The window under test: the last current_slices slices; its baseline: the ones before.
    current_slices: int = Field(4, ge=1)
    baseline_slices: int = Field(20, ge=1)
    # A window is scored only once its baseline has seen events over this share of its length
    # (a pool's first minutes have no history to compare with).
    min_baseline_share: float = Field(0.5, ge=0, le=1)
    # Events this late (event time) still update their windows: covers the publisher's
    # confirmation wait and reorg retractions.
    allowed_lateness_s: int = Field(600, ge=0)
    # Live reads: an event whose block time is further ahead of the reading clock than this
    # is dead-lettered, and never moves the watermark (replays and backfills do not check).
    max_event_ahead_s: int = Field(15, ge=0)
    # During a migration of alert subscribers to the alert contract's version 2: until this
    # time (UTC), each opening one-pool alert is also published as version 1 (attribute
    # v1_copy=1), for subscribers filtering on schema_version = "1".
    alert_v1_until: datetime | None = None
    # An anomaly within this much event time of one of its pool's alert threads, or
    # overlapping it (an hourly row), joins that thread; otherwise it opens one (an alert).
    alert_cooldown_s: int = Field(300, ge=0)
    # The hourly branch: reads pool-hourly and scores it with the hourly model (needs one,
    # see `dexwatch model bootstrap-hourly`). Off, the pipeline reads pool-events only.
    hourly: bool = False
    # Hours this much older than a pool's newest hour still recompute the hours after them;
    # older ones are dropped (their history is gone from state).
    hourly_allowed_lateness_h: int = Field(24, ge=0)


class ModelSettings(StrictModel):
    # local: the scikit-learn model file; vertex: a Vertex AI endpoint (production); http:
    # the prediction server (`dexwatch serve`) at http_url, the same contract as Vertex.
    serving: Literal["local", "vertex", "http"] = "local"
    # Empty means <local.state_dir>/models/chain-window/current.joblib
    path: Path | None = None
    # The hourly model (pipeline.hourly). Empty means
    # <local.state_dir>/models/pool-hour/current.joblib
    hourly_path: Path | None = None
    vertex_endpoint_id: str = ""
    # The Vertex endpoint serving the hourly model (the earlier design's 13-number requests).
    hourly_vertex_endpoint_id: str = ""
    vertex_project: str = ""
    vertex_location: str = "us-central1"
    # Rows per RunInference call: a call costs about 0.8 ms plus 6 us a row (200 trees,
    # bench/scoring.py), so rows are scored in batches.
    max_batch_size: int = Field(512, ge=1)
    # `dexwatch run` trains a first model on this many simulated hours when there is none.
    bootstrap_hours: float = Field(2.0, gt=0)
    # `dexwatch model bootstrap-hourly` mines this many simulated hours: of each pool's
    # whole hours (H - 2 at worst), the first 6 are history only, the rest training rows;
    # the four pools the subgraphs index need H >= 21 for the 50 rows training takes.
    hourly_bootstrap_hours: int = Field(24, ge=21)
    # serving: http. The predict route of a prediction server; requests are retried on 5xx,
    # connection errors and timeouts with capped exponential backoff.
    http_url: str = "http://127.0.0.1:8080/predict"
    http_timeout_s: float = Field(10.0, gt=0)
    http_max_retries: int = Field(4, ge=0)
    http_backoff_base_s: float = Field(0.2, gt=0)
    http_backoff_max_s: float = Field(5.0, gt=0)
    # The prediction server (`dexwatch serve`, the Vertex custom container): instances per
    # request above this are refused with a 400 (Vertex caps a request at 1.5 MB anyway).
    server_max_instances: int = Field(1000, ge=1)
    # `dexwatch model promote` with GCP configured (vertex_project set): the artifact
    # directory goes to {vertex_staging_uri}/<model>/<version>/, the Model Registry gets a
    # new version served by serving_image_uri (the Dockerfile's image), and it is deployed
    # to the model's endpoint: chain-window to vertex_endpoint_id, pool-hour to
    # hourly_vertex_endpoint_id.
    vertex_staging_uri: str = ""
    serving_image_uri: str = ""
    vertex_machine_type: str = "n1-standard-2"

    @field_validator("http_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"must be an http(s) URL: {redact_url(url)}")
        return url

    @field_validator("vertex_staging_uri")
    @classmethod
    def _gcs_uri(cls, uri: str) -> str:
        if uri and not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?", uri):
            raise ValueError(f"must be a gs://bucket[/prefix] URI: {uri!r}")
        return uri.rstrip("/")

    @property
    def gcp_configured(self) -> bool:
        return bool(self.vertex_project)


class MonitoringSettings(StrictModel):
    """Training schedule, feature drift and metrics (`dexwatch train`, `drift check`,
    `metrics serve`)."""

    # `dexwatch train --schedule` without a value, and the production schedule: weekly.
    training_schedule: str = "0 3 * * 1"
    # A feature whose PSI (production's training data vs the recent rows) passes this
    # raises a feature-drift alert.
    psi_threshold: float = Field(0.25, gt=0)
    # Drift compares the training data with the rows of the last drift_hours.
    drift_hours: float = Field(24.0, gt=0)
    # The live anomaly rate is over the rows of the last anomaly_rate_hours.
    anomaly_rate_hours: float = Field(1.0, gt=0)
    metrics_port: int = Field(9464, ge=0, le=65535)
    # Set: `dexwatch metrics export` writes the same values to Cloud Monitoring (production).
    cloud_monitoring_project: str = ""

    @field_validator("training_schedule")
    @classmethod
    def _cron(cls, expression: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(expression):
            raise ValueError(f"not a cron expression: {expression!r}")
        return expression


class SubgraphSource(StrictModel):
    """One subgraph the subgraph publisher reads: which dex it indexes, its entity schema,
    and its id on The Graph's network (a subgraph id, or a deployment id)."""

    dex: Dex
    # v3: Uniswap V3's PoolHourData; v2: PairHourData of Uniswap V2 and SushiSwap subgraphs.
    protocol: Protocol
    subgraph_id: str | None = None
    deployment_id: str | None = None
    # Pool (pair) addresses; empty means the subgraph's top subgraph.top_n pools by TVL.
    pools: list[str] = Field(default_factory=list)
    # V2 only: the pair's swap fee, for fees_usd (PairHourData has no fee figure).
    swap_fee: float = Field(0.003, ge=0, lt=1)

    @field_validator("pools")
    @classmethod
    def _addresses(cls, pools: list[str]) -> list[str]:
        return [normalize_address(pool) for pool in pools]

    @model_validator(mode="after")
    def _one_id(self) -> SubgraphSource:
        if (self.subgraph_id is None) == (self.deployment_id is None):
            raise ValueError("give exactly one of subgraph_id and deployment_id")
        for value in (self.subgraph_id, self.deployment_id):
            if value is not None and not re.fullmatch(r"[A-Za-z0-9]{10,100}", value):
                raise ValueError(f"not a subgraph or deployment id: {value!r}")
        return self

    @property
    def path(self) -> str:
        """The subgraph's path below the gateway (or a graph-node style endpoint)."""
        if self.subgraph_id is not None:
            return f"subgraphs/id/{self.subgraph_id}"
        return f"deployments/id/{self.deployment_id}"


def _default_subgraph_sources() -> list[SubgraphSource]:
    return [
        # Uniswap's documented Ethereum mainnet subgraph.
        SubgraphSource(
            dex="uniswap_v3",
            protocol="v3",
            subgraph_id="5zvR82QoaXYFyDEKLZ9t6v9adgnptxYpKpSbxtgVENFV",
        ),
        # SushiSwap V2 on mainnet, known only by its deployment id.
        SubgraphSource(
            dex="sushiswap",
            protocol="v2",
            deployment_id="QmQ2h69a3vnE6N3TN7Ys9K1vpjYiJSi8fexnj1pWpRc6uY",
        ),
    ]


class SubgraphSettings(StrictModel):
    """`dexwatch publish subgraph`: hourly pool statistics from The Graph to pool-hourly."""

    # Queries go to {gateway_url}/{api_key}/{subgraphs|deployments}/id/{id}.
    gateway_url: str = "https://gateway.thegraph.com/api"
    # From DEXWATCH_SUBGRAPH__API_KEY; never logged.
    api_key: SecretStr | None = None
    # Or a Secret Manager version holding it: projects/P/secrets/S/versions/V.
    api_key_secret: str | None = None
    # A graph-node style endpoint without API key, {endpoint_url}/subgraphs/id/{id}, used
    # instead of the gateway when set: the local stand-in by default; null in production.
    endpoint_url: str | None = "http://127.0.0.1:8000"
    sources: list[SubgraphSource] = Field(default_factory=_default_subgraph_sources, min_length=1)
    top_n: int = Field(20, ge=1, le=1000)
    # Cron expression (UTC) of the passes when running on its own.
    schedule: str = "0 * * * *"
    # Rows per query; The Graph refuses more than 1000.
    page_size: int = Field(1000, ge=1, le=1000)
    # Hours fetched, published and checkpointed together when catching up.
    hours_per_batch: int = Field(24, ge=1)
    # A first run (no checkpoint) starts this many complete hours back.
    first_run_hours: int = Field(24, ge=1)
    # After a scheduled time, while the subgraphs have not indexed past the hour that ended,
    # look again this often; `--once` gives up after catch_up_wait_s.
    lag_poll_s: float = Field(30.0, gt=0)
    catch_up_wait_s: float = Field(300.0, ge=0)
    request_timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    # Empty means <local.state_dir>/checkpoints/subgraph-<chain_id>.json
    checkpoint_path: Path | None = None

    @field_validator("gateway_url", "endpoint_url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"must be an http(s) URL: {redact_url(url)}")
        return url.rstrip("/") if url else url

    @field_validator("api_key_secret")
    @classmethod
    def _secret_version(cls, name: str | None) -> str | None:
        if name is not None and not _SECRET_VERSION.fullmatch(name):
            raise ValueError("must look like projects/P/secrets/S/versions/V")
        return name

    @field_validator("schedule")
    @classmethod
    def _cron(cls, expression: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(expression):
            raise ValueError(f"not a cron expression: {expression!r}")
        return expression

    @model_validator(mode="after")
    def _key_for_the_gateway(self) -> SubgraphSettings:
        if self.endpoint_url is None and self.api_key is None and self.api_key_secret is None:
            raise ValueError(
                "the gateway needs an API key: set DEXWATCH_SUBGRAPH__API_KEY or "
                "subgraph.api_key_secret (or subgraph.endpoint_url for a keyless endpoint)"
            )
        return self


class LoggingSettings(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["console", "json"] = "console"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEXWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    chain: ChainSettings = ChainSettings()
    pubsub: PubSubSettings = PubSubSettings()
    local: LocalStackSettings = LocalStackSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    pipeline: PipelineSettings = PipelineSettings()
    model: ModelSettings = ModelSettings()
    subgraph: SubgraphSettings = SubgraphSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    logging: LoggingSettings = LoggingSettings()

    # Set on a subclass by load_settings: pydantic-settings reads sources per class.
    config_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls.config_file))
        return tuple(sources)

    @property
    def checkpoint_path(self) -> Path:
        return self.chain.checkpoint_path or (
            self.local.state_dir / "checkpoints" / f"chain-{self.chain.chain_id}.json"
        )

    @property
    def subgraph_checkpoint_path(self) -> Path:
        return self.subgraph.checkpoint_path or (
            self.local.state_dir / "checkpoints" / f"subgraph-{self.chain.chain_id}.json"
        )

    @property
    def model_path(self) -> Path:
        return (
            self.model.path or self.local.state_dir / "models" / "chain-window" / "current.joblib"
        )

    @property
    def registry_dir(self) -> Path:
        """The local model registry (model/registry.py); its chain-window production link
        is the default model_path."""
        return self.local.state_dir / "models"

    @property
    def hourly_model_path(self) -> Path:
        return (
            self.model.hourly_path
            or self.local.state_dir / "models" / "pool-hour" / "current.joblib"
        )

    @property
    def warehouse_path(self) -> Path:
        return self.warehouse.path or self.local.state_dir / "warehouse.duckdb"


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for err in error.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting '{key}' in {source}")
        else:
            lines.append(f"invalid setting '{key}' in {source}: {err['msg']}")
    return "; ".join(lines)


def config_file_from_env(explicit: Path | None = None) -> Path | None:
    if explicit is not None:
        return explicit
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


def _secrets(value: Any) -> Iterator[str]:
    """Every SecretStr value, and the secret parts of every http(s) URL, in ``value``."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets(item)
    elif isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str) and value.startswith(("http://", "https://")):
        yield from logs.url_secrets(value)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from the config file, the environment and ``overrides``, and register
    their secrets (SecretStr values, keys in URLs) with the scrubber of dexwatch.logs: every
    process loads its settings here, so none prints them.

    Raises SettingsError with one line naming each bad key.
    """
    unknown_env = sorted(
        name
        for name in os.environ
        if name.startswith("DEXWATCH_")
        and name != CONFIG_ENV
        and name.removeprefix("DEXWATCH_").split("__")[0].lower() not in Settings.model_fields
    )
    if unknown_env:
        raise SettingsError(f"unknown setting in environment: {', '.join(unknown_env)}")
    path = config_file_from_env(config_file)
    if path is not None and not path.is_file():
        raise SettingsError(f"config file not found: {path}")
    source = f"{path} / DEXWATCH_* environment" if path else "DEXWATCH_* environment"

    class _FromFile(Settings):
        config_file: ClassVar[Path | None] = path

    try:
        loaded = _FromFile(**overrides)
    except ValidationError as err:
        raise SettingsError(_describe(err, source)) from None
    except Exception as err:  # malformed YAML and the like
        raise SettingsError(f"cannot read {source}: {err}") from None
    for secret in _secrets(loaded):
        logs.register_secret(secret)
    return loaded
