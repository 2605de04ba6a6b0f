"""Feature drift: the Population Stability Index of each feature between the production
version's training data and recent rows.

At training time each feature's deciles are stored in the version's metadata
(``feature_bins``: bin edges and the training share of each bin), so drift needs neither
the training rows nor the artifact. PSI = sum over bins of (recent - train) * ln(recent /
train); under 0.1 is usually read as stable, above 0.25 as a shift worth a look.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BINS = 10
# Empty bins would make the logarithm infinite; a floor keeps one empty bin finite.
_MIN_SHARE = 1e-4


def _bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Bin i holds values in (edges[i-1], edges[i]]; the outer bins are open-ended.
    index = np.searchsorted(edges, values, side="left")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.float64)
    return counts / max(len(values), 1)


def feature_bins(x: np.ndarray, feature_names: Sequence[str]) -> dict[str, dict[str, list]]:
    """Per feature: inner edges at the training deciles (ties merged) and training shares."""
    bins = {}
    for j, name in enumerate(feature_names):
        edges = np.unique(np.quantile(x[:, j], np.linspace(0, 1, BINS + 1)[1:-1]))
        bins[name] = {
            "edges": [float(e) for e in edges],
            "shares": [float(s) for s in _bin_shares(x[:, j], edges)],
        }
    return bins


def psi(expected_shares: Sequence[float], actual_shares: Sequence[float]) -> float:
    expected = np.maximum(np.asarray(expected_shares, dtype=np.float64), _MIN_SHARE)
    actual = np.maximum(np.asarray(actual_shares, dtype=np.float64), _MIN_SHARE)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_per_feature(bins: dict[str, dict[str, list]], recent: dict[str, np.ndarray]) -> dict:
    """PSI of each binned feature with recent values (features without values are left out)."""
    result = {}
    for name, spec in bins.items():
        values = recent.get(name)
        if values is None or len(values) == 0:
            continue
        edges = np.asarray(spec["edges"], dtype=np.float64)
        result[name] = psi(spec["shares"], _bin_shares(np.asarray(values), edges))
    return result


def drifted(psis: dict[str, float], threshold: float) -> dict[str, float]:
    """The features whose PSI passes ``threshold``, worst first."""
    return dict(sorted(((n, v) for n, v in psis.items() if v > threshold), key=lambda i: -i[1]))


def recent_feature_values(
    warehouse: Any, source: str, feature_names: Sequence[str], since_sql: str
) -> dict[str, np.ndarray]:
    """Each feature's values in ``pool_scores`` rows of ``source`` since a SQL timestamp."""
    columns = ", ".join(feature_names)  # plain identifiers: DuckDB and BigQuery alike
    result = warehouse.query(
        f"select {columns} from pool_scores where source = '{source}' and window_end >= {since_sql}"
    )
    x = np.array(
        [[np.nan if v is None else v for v in row] for row in result.rows], dtype=np.float64
    ).reshape(len(result.rows), len(feature_names))
    return {n: x[~np.isnan(x[:, j]), j] for j, n in enumerate(feature_names)}
