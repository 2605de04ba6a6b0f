"""The production configuration of dexwatch: one strict model per component's section.

Every model rejects unknown keys, so a typo is an error that names the key instead of a
silently ignored value. Where the values come from (file, environment, arguments) is
``dexwatch.core.config``; the local stack's own sections are ``infra.local.settings``.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from dexwatch.core.chain_settings import (
    ChainSettings,
    Dex,
    FactoryConfig,
    PoolFilter,
    Protocol,
)
from dexwatch.core.market_settings import Markets, MarketSettings
from dexwatch.core.retry import RetryPolicy, over_field_default
from dexwatch.core.schemas.topics import chain_subscription
from dexwatch.core.settings_base import (
    SettingsError,
    StrictModel,
    cron_expression,
    normalize_address,
    redact_url,
)
from dexwatch.core.slack_settings import SlackSettings
from dexwatch.core.subgraph_settings import SubgraphSettings, SubgraphSource

__all__ = [
    "ChainSettings",
    "Dex",
    "FactoryConfig",
    "MarketSettings",
    "PoolFilter",
    "Protocol",
    "SettingsError",
    "StrictModel",
    "SubgraphSettings",
    "SubgraphSource",
    "normalize_address",
    "redact_url",
]


class PubSubSettings(StrictModel):
    project: str = "dexwatch-local"
    # host:port of the Pub/Sub emulator; null in production.
    emulator_host: str | None = "127.0.0.1:8085"
    publish_timeout_s: float = Field(60.0, gt=0)


class WarehouseSettings(StrictModel):
    # duckdb: the local file; bigquery: the production dataset (tables created by Terraform).
    backend: Literal["duckdb", "bigquery"] = "duckdb"
    # Empty means <state_dir>/warehouse.duckdb
    path: Path | None = None
    bigquery_project: str = ""
    bigquery_dataset: str = "dexwatch"


class PipelineSettings(StrictModel):
    """The streaming pipeline: event-time slices, windows, triggers (dexwatch.core.features)."""

    # Events are summarised per pool in fixed slices of this many seconds of event time.
    slice_s: int = Field(15, ge=1)
    # The window under test: the last current_slices slices; its baseline: the ones before.
    current_slices: int = Field(4, ge=1)
    baseline_slices: int = Field(20, ge=1)
    # Until a pool's history covers this share of a baseline, its windows are young: scored
    # on what needs no history (beam_pipelines/transforms/pool_windows.YOUNG_POOL_NEUTRAL).
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
    # Empty means <state_dir>/models/chain-window/current.joblib
    path: Path | None = None
    # The hourly model (pipeline.hourly). Empty means
    # <state_dir>/models/pool-hour/current.joblib
    hourly_path: Path | None = None
    vertex_endpoint_id: str = ""
    # The Vertex endpoint serving the hourly model (the earlier design's 13-number requests).
    hourly_vertex_endpoint_id: str = ""
    vertex_project: str = ""
    vertex_location: str = "us-central1"
    # Where the Vertex AI API is reached. Empty: Google's regional endpoint. A host[:port]:
    # that host, e.g. a Private Service Connect endpoint for Google APIs (checkable on GCP
    # only). An http:// URL: a local stand-in (infra/local/vertex_standin), then called
    # over REST with anonymous credentials; never a production value.
    vertex_api_endpoint: str = ""
    # Rows per RunInference call: a call costs about 0.8 ms plus 6 us a row (200 trees,
    # bench/scoring.py), so rows are scored in batches.
    max_batch_size: int = Field(512, ge=1)
    # `dexwatch run` trains a first model on this many simulated hours when there is none.
    bootstrap_hours: float = Field(2.0, gt=0)
    # `dexwatch model bootstrap-hourly` mines this many simulated hours: of each pool's
    # whole hours (H - 2 at worst), the first 24 are history only (training takes the hours
    # whose day before is known); the four pools the subgraphs index need H >= 39 for the
    # 50 rows training takes.
    hourly_bootstrap_hours: int = Field(40, ge=39)
    # serving: http. The predict route of a prediction server; requests are retried on 5xx,
    # connection errors and timeouts with capped exponential backoff.
    http_url: str = "http://127.0.0.1:8080/predict"
    http_retry: RetryPolicy = RetryPolicy(
        timeout_s=10.0, max_retries=4, backoff_base_s=0.2, backoff_max_s=5.0
    )
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
    # Replicas of a deployed version (Vertex scales between them on load), and the service
    # account it runs as (Terraform's serving_service_account; empty: Vertex's default).
    vertex_min_replicas: int = Field(1, ge=1)
    vertex_max_replicas: int = Field(1, ge=1)
    vertex_service_account: str = ""

    _http_retry = field_validator("http_retry", mode="before")(over_field_default)

    @field_validator("http_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"must be an http(s) URL: {redact_url(url)}")
        return url

    @field_validator("vertex_api_endpoint")
    @classmethod
    def _api_endpoint(cls, value: str) -> str:
        if "://" not in value:
            if not value or re.fullmatch(r"([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+(:\d{1,5})?", value):
                return value
            shown = repr(value)
        else:
            url, shown = urlsplit(value), redact_url(value)
            if (
                url.scheme == "http"
                and url.hostname
                and not (url.username or url.path.strip("/") or url.query)
            ):
                return value.rstrip("/")
        raise ValueError(
            "must be empty, a host[:port] (e.g. europe-west1-aiplatform.googleapis.com) or "
            f"the http://host:port of a local stand-in: {shown}"
        )

    @field_validator("vertex_staging_uri")
    @classmethod
    def _gcs_uri(cls, uri: str) -> str:
        if uri and not re.fullmatch(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?", uri):
            raise ValueError(f"must be a gs://bucket[/prefix] URI: {uri!r}")
        return uri.rstrip("/")

    @model_validator(mode="after")
    def _replicas(self) -> ModelSettings:
        if self.vertex_max_replicas < self.vertex_min_replicas:
            raise ValueError("vertex_max_replicas must not be below vertex_min_replicas")
        return self

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

    _cron = field_validator("training_schedule")(cron_expression)


class LoggingSettings(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["console", "json"] = "console"


class OneChainEnvironment(PydanticBaseSettingsSource):
    """``DEXWATCH_CHAIN`` (JSON) and ``DEXWATCH_CHAIN__<KEY>[__<KEY>]`` variables, the
    one-chain form, as a ``chain`` section (there is no such field for the environment
    source to read them by)."""

    PREFIX = "DEXWATCH_CHAIN"

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        section: dict[str, Any] = {}
        for name, text in os.environ.items():
            if name == self.PREFIX:
                section = {**_json_or_text(text), **section}
            elif name.startswith(self.PREFIX + "__"):
                *parents, key = name.removeprefix(self.PREFIX + "__").lower().split("__")
                target = section
                for parent in parents:
                    target = target.setdefault(parent, {})
                target[key] = _json_or_text(text)
        return {"chain": section} if section else {}


def _json_or_text(text: str) -> Any:
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEXWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Where checkpoints, models, the local warehouse and the local stack's files live.
    state_dir: Path = Path(".dexwatch")
    # The chains watched, each with its own publisher and checkpoint. The one-chain form,
    # ``chain:`` (a section, as before chains were a list), is read as a list of one.
    chains: list[ChainSettings] = Field(default_factory=lambda: [ChainSettings()], min_length=1)
    pubsub: PubSubSettings = PubSubSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    pipeline: PipelineSettings = PipelineSettings()
    market: MarketSettings = MarketSettings()
    model: ModelSettings = ModelSettings()
    subgraph: SubgraphSettings = SubgraphSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    slack: SlackSettings = SlackSettings()
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
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            OneChainEnvironment(settings_cls),
        ]
        if cls.config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls.config_file))
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _one_chain_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and "chain" in data:
            if "chains" in data:
                raise ValueError("give chain (one chain) or chains (a list of them), not both")
            data = {**data, "chains": [data["chain"]]}
            del data["chain"]
        return data

    @model_validator(mode="after")
    def _chains_apart(self) -> Settings:
        for what in ("chain_id", "name"):
            values = [getattr(chain, what) for chain in self.chains]
            twice = sorted({str(v) for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"chains: {what} {', '.join(twice)} is given to two chains")
        return self

    @model_validator(mode="after")
    def _slices_of_whole_blocks(self) -> Settings:
        slice_s = self.pipeline.slice_s
        for chain in self.chains:
            block_s = chain.block_time_s
            if block_s and slice_s % block_s:
                whole = ", ".join(str(block_s * n) for n in range(1, 4))
                raise ValueError(
                    f"pipeline.slice_s {slice_s} is not a whole number of {chain.name}'s "
                    f"{block_s} s blocks (block_time_s): slices would hold uneven counts of "
                    f"blocks; use {whole} ..."
                )
        return self

    @model_validator(mode="after")
    def _subgraphs_of_the_one_chain(self) -> Settings:
        """One chain with subgraph_sources of its own: they are the subgraph section's
        sources, which the subgraph publisher and the pool lists read."""
        own = self.chains[0].subgraph_sources if len(self.chains) == 1 else None
        if own is None:
            return self
        if "sources" in self.subgraph.model_fields_set and self.subgraph.sources != own:
            raise ValueError(
                "give subgraph.sources or the chain's subgraph_sources, not both: they differ"
            )
        # Validation runs once, on a fresh model: filling its own section here is safe.
        object.__setattr__(self, "subgraph", self.subgraph.model_copy(update={"sources": own}))
        return self

    @model_validator(mode="after")
    def _pool_list_has_subgraphs(self) -> Settings:
        for chain in self.chains:
            sources = self.subgraph_sources_of(chain)
            problem = chain.pool_filter.missing_subgraphs(chain.factories, sources)
            if problem:
                raise ValueError(problem)
        return self

    def subgraph_sources_of(self, chain: ChainSettings) -> list[SubgraphSource]:
        """The subgraphs of one chain: its own, or subgraph.sources."""
        return chain.subgraph_sources or self.subgraph.sources

    @property
    def chain(self) -> ChainSettings:
        """The chain of a one-chain setting: what a publisher, a backfill or a bootstrap
        works on (``for_chain`` picks one of several)."""
        if len(self.chains) > 1:
            names = ", ".join(chain.name for chain in self.chains)
            raise SettingsError(f"{len(self.chains)} chains are configured ({names}): name one")
        return self.chains[0]

    def for_chain(self, key: str | int) -> Self:
        """These settings with only the chain named ``key`` (its name or chain id)."""
        for chain in self.chains:
            if key in (chain.name, chain.chain_id) or str(key) == str(chain.chain_id):
                subgraph = self.subgraph.model_copy(
                    update={"sources": self.subgraph_sources_of(chain)}
                )
                return self.model_copy(update={"chains": [chain], "subgraph": subgraph})
        names = ", ".join(f"{chain.name} ({chain.chain_id})" for chain in self.chains)
        raise SettingsError(f"no chain {key!r} is configured; the chains are {names}")

    @property
    def own_topics(self) -> tuple[str, ...]:
        """The chains with a pool-events topic of their own (``chain.own_topic``)."""
        return tuple(chain.name for chain in self.chains if chain.own_topic)

    def event_subscriptions(self, subscription: str) -> list[str]:
        """A pool-events subscription (the pipeline's, the monitor's) and its namesakes on
        the chains' own topics: what a reader of every chain's events reads."""
        return [subscription, *(chain_subscription(c, subscription) for c in self.own_topics)]

    def event_subscription(self, chain_id: int, subscription: str) -> str:
        """The namesake of a pool-events subscription that carries one chain's events."""
        for chain in self.chains:
            if chain.chain_id == chain_id and chain.own_topic:
                return chain_subscription(chain.name, subscription)
        return subscription

    @property
    def markets(self) -> Markets:
        """Each chain's market section: its own assets where it names them."""
        by_chain = {
            chain.chain_id: self.market.model_copy(update={"assets": chain.assets})
            for chain in self.chains
            if chain.assets is not None
        }
        return Markets(self.market, by_chain)

    def explorer(self, chain_id: int) -> str | None:
        """A chain's block explorer: Slack's setting for it, else the chain's own."""
        return self.slack.explorer(chain_id, self.chains)

    @property
    def checkpoint_path(self) -> Path:
        return self.chain.checkpoint_path or (
            self.state_dir / "checkpoints" / f"chain-{self.chain.chain_id}.json"
        )

    @property
    def subgraph_checkpoint_path(self) -> Path:
        return self.subgraph.checkpoint_path or (
            self.state_dir / "checkpoints" / f"subgraph-{self.chain.chain_id}.json"
        )

    @property
    def model_path(self) -> Path:
        return self.model.path or self.state_dir / "models" / "chain-window" / "current.joblib"

    @property
    def registry_dir(self) -> Path:
        """The local model registry (model/registry.py); its chain-window production link
        is the default model_path."""
        return self.state_dir / "models"

    @property
    def hourly_model_path(self) -> Path:
        return self.model.hourly_path or self.state_dir / "models" / "pool-hour" / "current.joblib"

    @property
    def slack_ledger_path(self) -> Path:
        return self.slack.ledger_path or self.state_dir / "slack" / "posts.sqlite"

    @property
    def warehouse_path(self) -> Path:
        return self.warehouse.path or self.state_dir / "warehouse.duckdb"

    def with_sections(self, **changes: Any) -> Self:
        """A copy with fields replaced: a dict for a section replaces those of its fields
        (``with_sections(chain={"confirmations": 0})``), anything else a top-level field.
        Like ``model_copy``, it does not validate again: the changes are the caller's."""
        update = {}
        for name, value in changes.items():
            # ``chain`` is the one chain of a one-chain setting.
            section = self.chain if name == "chain" else getattr(self, name)
            if isinstance(section, BaseModel) and isinstance(value, dict):
                unknown = set(value) - set(type(section).model_fields)
                if unknown:
                    raise SettingsError(f"{name} has no setting {', '.join(sorted(unknown))}")
                value = section.model_copy(update=value)
            if name == "chain":
                name, value = "chains", [value]
            update[name] = value
        return self.model_copy(update=update)
