"""The training run's report: one self-contained HTML file with inline SVG charts, written
beside the version (``versions/<version>/report.html``); opens offline in any browser."""

from __future__ import annotations

from collections import defaultdict
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dexwatch.core.files import write_atomically
from model import svg
from model.evaluation import ScoredRows, top_feature_counts
from model.feedback import ACKNOWLEDGED, CONFIRMED, FEEDBACK, NOT_INCIDENT

if TYPE_CHECKING:
    from model.train_run import TrainingRun

_STYLE = """
body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;border-bottom:1px solid #eee;
text-align:left}td.n{text-align:right}.muted{color:#777}
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, str) else _num(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(chart: str, caption: str) -> str:
    return f'<figure>{chart}<figcaption class="muted">{escape(caption)}</figcaption></figure>'


def _all_rows(run: TrainingRun) -> ScoredRows:
    parts = [run.train, run.evaluated]
    return ScoredRows(
        np.concatenate([p.pools for p in parts]),
        np.concatenate([p.window_start for p in parts]),
        np.concatenate([p.window_end for p in parts]),
        np.concatenate([p.x for p in parts]),
    )


def anomaly_rate_over_time(
    run: TrainingRun, buckets: int = 30, max_pools: int = 8
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per pool (the busiest ones): % of its rows flagged in each time bucket."""
    rows = _all_rows(run)
    if len(rows) == 0:
        return {}
    flagged = run.detector.anomaly_score(rows.x) < 0
    ends = np.array([e.timestamp() for e in rows.window_end])
    edges = np.linspace(ends.min(), ends.max() + 1, buckets + 1)
    index = np.clip(np.searchsorted(edges, ends, side="right") - 1, 0, buckets - 1)
    counts: dict[str, int] = defaultdict(int)
    for pool in rows.pools:
        counts[pool] += 1
    series = {}
    for pool in sorted(counts, key=lambda p: -counts[p])[:max_pools]:
        mine = rows.pools == pool
        totals = np.bincount(index[mine], minlength=buckets)
        hits = np.bincount(index[mine], weights=flagged[mine], minlength=buckets)
        present = totals > 0
        centres = ((edges[:-1] + edges[1:]) / 2)[present]
        series[_short(pool)] = (centres, 100 * hits[present] / totals[present])
    return series


def _short(pool: str) -> str:
    return pool if len(pool) <= 14 else f"{pool[:8]}…{pool[-4:]}"


def _time_ticks(run: TrainingRun) -> list[tuple[float, str]]:
    rows = _all_rows(run)
    ends = np.array([e.timestamp() for e in rows.window_end])
    if len(ends) == 0:
        return []
    from datetime import UTC, datetime

    span = ends.max() - ends.min()
    fmt = "%m-%d %H:%M" if span > 86400 else "%H:%M"
    return [
        (float(t), datetime.fromtimestamp(float(t), UTC).strftime(fmt))
        for t in np.linspace(ends.min(), ends.max(), 5)
    ]


def render_report(run: TrainingRun) -> str:
    ev = run.evaluation
    meta = run.metadata
    start, end = run.data_range
    sections = [
        f"<h1>{escape(run.spec.model_name)} {escape(run.version)}</h1>",
        '<p class="muted">Registered, not promoted: <code>dexwatch model promote '
        f"{escape(run.version)}</code> puts it in production.</p>",
        _table(
            ["", ""],
            [
                ["path", f"{run.params.path} (pool_scores source {run.spec.source})"],
                ["data window", f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC"],
                [
                    "rows",
                    f"{len(run.train):,} training, {len(run.held_out):,} held out, "
                    f"{meta['training_range']['excluded_incident_rows']:,} incident rows "
                    "(injected or operator-confirmed) excluded from training",
                ],
                [
                    "features",
                    f"{len(run.spec.feature_names)} (definitions v{run.spec.features_version})",
                ],
                [
                    "forest",
                    f"{run.params.n_estimators} trees, {run.params.max_samples} samples "
                    f"each, seed {run.params.seed}",
                ],
                ["threshold rule", _threshold_rule(run)],
                ["code", escape(str(meta.get("code_version")))],
            ],
        ),  # fmt: skip
        "<h2>1. Score distribution</h2>",
        _figure(
            svg.histogram(
                {"training": ev.train_scores, "held out": ev.held_out_scores},
                "score (below 0: anomaly)",
                vline=0.0,
                vline_label="threshold",
            ),
            f"Flagged: {_pct(ev.train_anomaly_rate)} of training rows, "
            f"{_pct(ev.held_out_anomaly_rate)} of held-out rows.",
        ),
        "<h2>2. Anomaly rate over time, per pool</h2>",
        _figure(
            svg.lines(
                anomaly_rate_over_time(run),
                "window end (UTC)",
                "% of windows flagged",
                _time_ticks(run),
            ),
            "All rows of the window (training and evaluation) scored by this version; the "
            "busiest pools.",
        ),  # fmt: skip
        "<h2>3. What drives the anomalies</h2>",
        _feature_section(run),
        "<h2>4. Labelled incidents</h2>",
        _incident_section(run),
        "<h2>5. Operator feedback</h2>",
        _feedback_section(run),
        "<h2>6. Against the production version</h2>",
        _comparison_section(run),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>dexwatch {escape(run.spec.model_name)} {escape(run.version)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>"
    )


def _threshold_rule(run: TrainingRun) -> str:
    p = run.params
    if p.threshold_rule == "contamination":
        rule = f"flag {_pct(p.contamination)} of training rows"
    else:
        rule = (
            f"training score quantile {p.threshold_quantile:g} minus margin {p.threshold_margin:g}"
        )
    return f"{rule} (forest score threshold {run.detector.threshold:.4f})"


def _feature_section(run: TrainingRun) -> str:
    counts = top_feature_counts(run.detector, run.evaluated)
    train_counts = top_feature_counts(run.detector, run.train)
    combined = {
        name: counts.get(name, 0) + train_counts.get(name, 0)
        for name in sorted(
            set(counts) | set(train_counts), key=lambda n: -(counts[n] + train_counts[n])
        )
    }  # noqa: E501
    return _figure(
        svg.bars({k: float(v) for k, v in combined.items()}, "flagged rows"),
        "Top feature (largest deviation from training, in robust SDs) of each flagged row; "
        f"{sum(combined.values()):,} flagged rows in all.",
    )


def _incident_section(run: TrainingRun) -> str:
    ev = run.evaluation
    if not ev.incidents:
        note = (
            "No labelled incident falls in the evaluation rows."
            if run.incidents
            else "No labelled incidents in the data window."
        )
        return _figure(svg.empty("no labelled incidents"), note)
    by_kind = ev.recall_by_kind()
    chart = svg.bars({k: 100 * v["recall"] for k, v in by_kind.items()}, "recall (%)")
    summary = _table(
        ["kind", "incidents", "detected", "recall", "median delay"],
        [
            [k, v["incidents"], v["detected"], _pct(v["recall"]),
             "–" if v["median_delay_s"] is None else f"{v['median_delay_s']:.0f} s"]
            for k, v in by_kind.items()
        ],
    )  # fmt: skip
    detail = _table(
        ["incident", "from", "kind", "pool", "detected", "delay"],
        [
            [escape(_short_id(o.label_id)),
             "operator-confirmed alert" if o.origin == FEEDBACK else "injected label", o.kind,
             escape(_short(o.pool)), "yes" if o.detected else "no",
             "–" if o.delay_s is None else f"{o.delay_s:.0f} s"]
            for o in ev.incidents
        ],
    )  # fmt: skip
    return (
        _figure(
            chart,
            f"Recall {_pct(ev.recall)} over {len(ev.incidents)} incidents; "
            f"precision {_pct(ev.precision)} (flagged evaluation rows inside an "
            "incident).",
        )  # fmt: skip
        + summary
        + detail
    )


def _short_id(alert_id: str) -> str:
    """An id (``chain_id:pool:window_end``, ``chain_id:asset:<address>:...``) with its
    addresses shortened."""
    return ":".join(_short(part) if part.startswith("0x") else part for part in alert_id.split(":"))


def _yes_no(value: bool | None) -> str:
    return "–" if value is None else "yes" if value else "no"


def _feedback_section(run: TrainingRun) -> str:
    review = run.feedback
    if not review.given:
        return '<p class="muted">No operator feedback was given on alerts in the data window.</p>'
    clicks = sum(review.clicks.values())
    counts = (
        f"<p>{clicks} button clicks on {sum(review.alerts.values())} alerts: "
        f"{review.alerts.get(CONFIRMED, 0)} confirmed incidents, "
        f"{review.alerts.get(NOT_INCIDENT, 0)} not an incident, "
        f"{review.alerts.get(ACKNOWLEDGED, 0)} acknowledged only (no verdict). "
        + ", ".join(f"{n} {escape(v)}" for v, n in sorted(review.clicks.items()))
        + ' clicks.</p><p class="muted">An alert\'s verdict is its latest confirmed or '
        "not-an-incident click; acknowledging does not change it. Confirmed alerts are "
        "labelled incidents (section 4) and stay out of training.</p>"
    )
    confirmed = (
        "<h3>Confirmed incidents</h3>"
        + _table(
            ["alert", "kind", "pools", "confirmed by", "caught by the new version"],
            [
                [
                    escape(_short_id(c.alert_id)),
                    escape(c.kind),
                    escape(", ".join(_short(p) for p in c.pools)),
                    escape(c.decided_by),
                    "– (no evaluation window of this path)"
                    if c.caught is None
                    else _yes_no(c.caught),
                ]
                for c in review.confirmed
            ],
        )
        if review.confirmed
        else ""
    )
    windows = review.false_alert_windows
    false_alerts = f"<h3>Marked not an incident</h3><p>{escape(review.summary())}</p>" + (
        _table(
            [
                "alert",
                "pool",
                "window (UTC)",
                "production score at the time",
                f"new {run.version} score",
                "new version flags it",
                "in its training rows",
            ],
            [
                [
                    escape(_short_id(w.alert_id)),
                    escape(_short(w.pool)),
                    f"{w.window_start:%m-%d %H:%M}–{w.window_end:%H:%M}",
                    _num(w.production_score)
                    + (
                        f' <span class="muted">({escape(w.production_version)})</span>'
                        if w.production_version
                        else ""
                    ),
                    _num(w.new_score),
                    _yes_no(w.new_flags),
                    _yes_no(w.trained_on),
                ]
                for w in windows
            ],
        )
        if windows
        else ""
    )
    return f'<div id="feedback">{counts}{confirmed}{false_alerts}</div>'


def _comparison_section(run: TrainingRun) -> str:
    if run.previous is None or run.previous_evaluation is None:
        return '<p class="muted">No production version with the same features to compare with.</p>'
    new, old = run.evaluation, run.previous_evaluation
    correlation = (
        float(np.corrcoef(new.evaluated_scores, old.evaluated_scores)[0, 1])
        if len(new.evaluated_scores) > 1
        else None
    )

    def delta(a: float | None, b: float | None) -> str:
        return "–" if a is None or b is None else f"{100 * (a - b):+.2f} pts"

    table = _table(
        ["metric", f"production {run.previous.version}", f"new {run.version}", "change"],
        [
            ["held-out anomaly rate", _pct(old.held_out_anomaly_rate),
             _pct(new.held_out_anomaly_rate),
             delta(new.held_out_anomaly_rate, old.held_out_anomaly_rate)],
            ["training anomaly rate", _pct(old.train_anomaly_rate), _pct(new.train_anomaly_rate),
             delta(new.train_anomaly_rate, old.train_anomaly_rate)],
            ["incident recall", _pct(old.recall), _pct(new.recall), delta(new.recall, old.recall)],
            ["precision", _pct(old.precision), _pct(new.precision),
             delta(new.precision, old.precision)],
            ["score correlation (evaluation rows)", "", _num(correlation), ""],
        ],
    )  # fmt: skip
    return (
        '<div id="comparison">'
        + table
        + _figure(
            svg.scatter(
                old.evaluated_scores,
                new.evaluated_scores,
                f"production {run.previous.version}",
                f"new {run.version}",
            ),
            "Same evaluation rows scored by both versions; red lines: each one's threshold.",
        )  # fmt: skip
        + "</div>"
    )


def write_report(run: TrainingRun, path: Path) -> Path:
    write_atomically(path, render_report(run).encode())
    return path
