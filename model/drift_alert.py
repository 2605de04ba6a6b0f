"""A feature-drift alert: the Alert contract, one per drifted production model.

Drift is per model, not per pool: the alert's scope is ``model``, its one pool entry ``*``
on dex ``*``, and the top features carry the drifted features with their PSI (as value and
as deviation).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dexwatch.core.schemas.alert import Alert, PoolRef, TopFeature
from model.drift import drifted
from model.monitoring import ModelDrift

FEATURE_DRIFT = "feature-drift"


def drift_alerts(
    models: list[ModelDrift],
    threshold: float,
    chain_id: int,
    drift_hours: float,
    now: datetime | None = None,
) -> list[Alert]:
    now = now or datetime.now(UTC)
    alerts = []
    for model in models:
        over = drifted(model.psi, threshold)
        if not over:
            continue
        worst = next(iter(over.values()))
        # Keyed by model, version and day: a check repeated within a day is the same alert.
        day = now.strftime("%Y-%m-%d")
        alerts.append(
            Alert(
                alert_id=f"{chain_id}:{FEATURE_DRIFT}:{model.model_name}:{model.version}:{day}",
                window_id=f"{chain_id}:{FEATURE_DRIFT}:{model.model_name}:{int(now.timestamp())}",
                chain_id=chain_id,
                scope="model",
                pools=[PoolRef(dex="*", pool="*")],
                source="subgraph" if model.source == "subgraph" else "chain",
                severity="high" if worst > 2 * threshold else "medium",
                kind=FEATURE_DRIFT,
                confidence=1.0,
                evidence=[f"PSI of {name} = {value:.3f}" for name, value in over.items()],
                score=-worst,
                window_start=now - timedelta(hours=drift_hours),
                window_end=now,
                top_features=[
                    TopFeature(name=n, value=round(v, 4), deviation=round(v, 4))
                    for n, v in list(over.items())[:3]
                ],
                model_version=model.version,
                detected_at=now,
            )
        )
    return alerts
