"""One training run (`dexwatch train`): the parameters, the feature rows from the warehouse,
the fit, the evaluation, the registered version (not promoted) and its report.

A run reads the scored rows of one path from ``pool_scores`` (their feature columns), keeps
the latest ``holdout_share`` of the data window for evaluation, trains on the rest minus
the rows that overlap a labelled incident (the detector learns normal traffic), and
evaluates on what it never saw: the held-out slice and the incident rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dexwatch.core.detector import Detector
from dexwatch.core.features.chain import (
    BENIGN_RISES,
    CHAIN_CONTEXT_FEATURES,
    FEATURE_NAMES,
    FEATURES_VERSION,
    INCIDENT_FLOORS,
    LIMITS_AT_FLOOR,
)
from dexwatch.core.features.hourly import (
    CONTEXT_FEATURES,
    HOURLY_FEATURE_NAMES,
    HOURLY_FEATURES_VERSION,
)
from dexwatch.core.schemas.tables import INCIDENT_LABELS, POOL_SCORES
from model.drift import feature_bins
from model.evaluation import Evaluation, LabelledIncident, ScoredRows, evaluate
from model.feedback import FeedbackReview, read_feedback, review_feedback
from model.registry import CHAIN_WINDOW, POOL_HOUR, ModelRegistry, RegistryError
from model.training import DEFAULT_PARAMS, TrainingParams, fit_detector
from model.warehouse_sql import rows_if_tables_exist, sql_time, utc

TrainingPath = Literal["chain", "hourly"]


@dataclasses.dataclass(frozen=True)
class PathSpec:
    """What distinguishes the two paths' models: rows, features, registry name."""

    source: str  # pool_scores.source
    model_name: str
    feature_names: tuple[str, ...]
    features_version: int
    context_features: tuple[str, ...] = ()
    # Values always anomalous, whatever training saw (model.training.fit_detector).
    floors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    benign_rises: tuple[str, ...] = ()
    limits_at_floor: tuple[str, ...] = ()


PATHS: dict[str, PathSpec] = {
    "chain": PathSpec(
        "chain",
        CHAIN_WINDOW,
        FEATURE_NAMES,
        FEATURES_VERSION,
        CHAIN_CONTEXT_FEATURES,
        floors=INCIDENT_FLOORS,
        benign_rises=BENIGN_RISES,
        limits_at_floor=LIMITS_AT_FLOOR,
    ),
    "hourly": PathSpec(
        "subgraph", POOL_HOUR, HOURLY_FEATURE_NAMES, HOURLY_FEATURES_VERSION, CONTEXT_FEATURES
    ),
}


class TrainingRunParams(BaseModel):
    """Everything that decides what a run trains; from a YAML file, then CLI flags."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    path: TrainingPath = "chain"
    # The data window: [start, end) of window_end, or the `days` before `end` (default now).
    start: datetime | None = Field(None, alias="from")
    end: datetime | None = Field(None, alias="to")
    days: float | None = Field(None, gt=0)
    # Defaults: the bootstrap's (model.training.DEFAULT_PARAMS, where each is chosen).
    n_estimators: int = Field(DEFAULT_PARAMS.n_estimators, ge=1)
    max_samples: int = Field(DEFAULT_PARAMS.max_samples, ge=2)
    # quantile: the threshold_quantile of training scores minus threshold_margin (the
    # bootstrap's rule); contamination: flag that share of the training rows, no margin.
    threshold_rule: Literal["quantile", "contamination"] = "quantile"
    threshold_quantile: float = Field(DEFAULT_PARAMS.threshold_quantile, gt=0, lt=1)
    threshold_margin: float = Field(DEFAULT_PARAMS.threshold_margin, ge=0)
    contamination: float = Field(0.01, gt=0, lt=0.5)
    seed: int = DEFAULT_PARAMS.seed
    # Train on normal traffic only: drop rows overlapping a labelled incident (padded).
    exclude_incidents: bool = True
    incident_padding_s: float = Field(300, ge=0)
    # The latest share of the window (by time) is held out for evaluation.
    holdout_share: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_window(self) -> TrainingRunParams:
        if self.start is not None and self.days is not None:
            raise ValueError("give either from (with to) or days, not both")
        if self.start and self.end and self.start >= self.end:
            raise ValueError("from must be before to")
        return self

    def data_range(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        end = utc(self.end or now or datetime.now(UTC))
        if self.start is not None:
            return utc(self.start), end
        return end - timedelta(days=self.days if self.days is not None else 7), end

    def training_params(self) -> TrainingParams:
        if self.threshold_rule == "contamination":
            quantile, margin = self.contamination, 0.0
        else:
            quantile, margin = self.threshold_quantile, self.threshold_margin
        return TrainingParams(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            threshold_quantile=quantile,
            threshold_margin=margin,
            seed=self.seed,
        )

    def cli_args(self) -> list[str]:
        """The same run as `dexwatch train` flags (what a Vertex job runs)."""
        args = ["--path", self.path]
        if self.start is not None:
            args += ["--from", utc(self.start).isoformat()]
        if self.end is not None:
            args += ["--to", utc(self.end).isoformat()]
        if self.days is not None:
            args += ["--days", f"{self.days:g}"]
        args += [
            "--n-estimators", str(self.n_estimators),
            "--max-samples", str(self.max_samples),
            "--threshold-rule", self.threshold_rule,
            "--threshold-quantile", f"{self.threshold_quantile:g}",
            "--threshold-margin", f"{self.threshold_margin:g}",
            "--contamination", f"{self.contamination:g}",
            "--seed", str(self.seed),
            "--holdout-share", f"{self.holdout_share:g}",
        ]  # fmt: skip
        if not self.exclude_incidents:
            args.append("--include-incidents")
        return args


def load_run_params(
    params_file: Path | None, overrides: Mapping[str, Any] | None = None
) -> TrainingRunParams:
    """The parameter file's values, with the given (non-None) overrides on top."""
    values: dict[str, Any] = {}
    if params_file is not None:
        values = yaml.safe_load(params_file.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{params_file}: expected a mapping of parameters")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    # A window given on the command line replaces the file's.
    if overrides and overrides.get("days") is not None:
        values.pop("from", None)
        values.pop("start", None)
    if overrides and (overrides.get("from") or overrides.get("start")):
        values.pop("days", None)
    return TrainingRunParams.model_validate(values)


def read_feature_rows(warehouse: Any, spec: PathSpec, start: datetime, end: datetime) -> ScoredRows:
    """The path's scored rows with every feature present, window_end in [start, end)."""
    # Feature names are plain identifiers: unquoted, the SQL reads the same in BigQuery.
    columns = ", ".join(spec.feature_names)
    present = " and ".join(f"{name} is not null" for name in spec.feature_names)
    result = warehouse.query(
        f"select pool, window_start, window_end, {columns} from {POOL_SCORES.name} "
        f"where source = '{spec.source}' and {present} "
        f"and window_end >= {sql_time(start)} and window_end < {sql_time(end)} "
        "order by window_end, pool"
    )
    rows = result.rows
    return ScoredRows(
        pools=np.array([r[0] for r in rows], dtype=object),
        window_start=np.array([utc(r[1]) for r in rows], dtype=object),
        window_end=np.array([utc(r[2]) for r in rows], dtype=object),
        x=np.array([r[3:] for r in rows], dtype=np.float64).reshape(len(rows), -1),
    )


def read_incidents(warehouse: Any, start: datetime, end: datetime) -> list[LabelledIncident]:
    """The labels in [start, end); none when nothing was ever injected (no table)."""
    rows = rows_if_tables_exist(
        warehouse,
        f"select label_id, pool, kind, first_timestamp, last_timestamp "
        f"from {INCIDENT_LABELS.name} where last_timestamp >= {sql_time(start)} "
        f"and first_timestamp < {sql_time(end)} order by first_timestamp",
    )
    return [
        LabelledIncident(label_id, pool, kind, utc(first), utc(last))
        for label_id, pool, kind, first, last in rows
    ]


@dataclasses.dataclass
class TrainingRun:
    """What a run produced: the registered version and what its report shows."""

    params: TrainingRunParams
    spec: PathSpec
    version: str
    directory: Path
    detector: Detector
    data_range: tuple[datetime, datetime]
    train: ScoredRows
    held_out: ScoredRows
    evaluated: ScoredRows  # held out + incident rows never trained on
    incidents: list[LabelledIncident]  # injected labels and operator-confirmed alerts
    evaluation: Evaluation
    previous: Detector | None
    previous_evaluation: Evaluation | None
    metadata: dict[str, Any]
    feedback: FeedbackReview  # operators' verdicts on alerts (model.feedback)


def split_rows(
    rows: ScoredRows,
    incidents: list[LabelledIncident],
    params: TrainingRunParams,
) -> tuple[ScoredRows, ScoredRows, ScoredRows]:
    """(training rows, held-out slice, evaluation rows): time split, incidents out of training."""
    if len(rows) == 0:
        raise ValueError("no feature rows in the data window")
    ends = np.array([e.timestamp() for e in rows.window_end])
    cut = ends.min() + (ends.max() - ends.min()) * (1 - params.holdout_share)
    later = ends > cut
    in_incident = rows.overlapping(incidents, params.incident_padding_s)
    train_mask = ~later & ~(in_incident if params.exclude_incidents else False)
    evaluated_mask = later | (in_incident & ~train_mask)
    return rows.subset(train_mask), rows.subset(later), rows.subset(evaluated_mask)


def run_training(
    warehouse: Any,
    registry_dir: Path,
    params: TrainingRunParams,
    now: datetime | None = None,
) -> TrainingRun:
    """Train, evaluate, register (not promote) and write the report beside the version."""
    from model.report import write_report

    spec = PATHS[params.path]
    start, end = params.data_range(now)
    rows = read_feature_rows(warehouse, spec, start, end)
    labels = read_incidents(warehouse, start, end)
    feedback = read_feedback(warehouse, spec, start, end)
    incidents = labels + feedback.new_incidents(labels)
    train, held_out, evaluated = split_rows(rows, incidents, params)
    detector = fit_detector(
        train.x,
        spec.feature_names,
        spec.features_version,
        params.training_params(),
        context_features=spec.context_features,
        floors=spec.floors,
        benign_rises=spec.benign_rises,
        limits_at_floor=spec.limits_at_floor,
    )
    padding = params.incident_padding_s
    evaluation = evaluate(detector, train, held_out, evaluated, incidents, padding)
    review = review_feedback(feedback, incidents, evaluation, detector, train)

    registry = ModelRegistry(registry_dir, spec.model_name)
    previous = _production_detector(registry, spec)
    previous_evaluation = (
        evaluate(previous, train, held_out, evaluated, incidents, padding) if previous else None
    )
    metadata = {
        "training_range": {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "first_window_end": min(train.window_end).isoformat(),
            "last_window_end": max(train.window_end).isoformat(),
            "rows": len(train),
            "held_out_rows": len(held_out),
            "excluded_incident_rows": int(len(rows) - len(train) - len(held_out))
            if params.exclude_incidents
            else 0,
        },
        "run_params": params.model_dump(mode="json", by_alias=True),
        "metrics": evaluation.as_metrics(),
        "feedback": review.as_metrics(),
        "feature_definitions_version": spec.features_version,
        "feature_bins": feature_bins(train.x, spec.feature_names),
        "previous_production": previous.version if previous else None,
        "report": "report.html",
    }
    version = registry.register(detector, metadata)
    model_version = registry.get(version)
    run = TrainingRun(
        params=params,
        spec=spec,
        version=version,
        directory=model_version.directory,
        detector=detector,
        data_range=(start, end),
        train=train,
        held_out=held_out,
        evaluated=evaluated,
        incidents=incidents,
        evaluation=evaluation,
        previous=previous,
        previous_evaluation=previous_evaluation,
        metadata=model_version.metadata,
        feedback=review,
    )
    write_report(run, model_version.directory / "report.html")
    return run


def _production_detector(registry: ModelRegistry, spec: PathSpec) -> Detector | None:
    """The version in production, if it takes the same features (else not comparable)."""
    try:
        production = registry.aliases().production
        if production is None:
            return None
        detector = Detector.load(registry.get(production).model_file)
    except (RegistryError, FileNotFoundError):
        return None
    return detector if tuple(detector.feature_names) == spec.feature_names else None
