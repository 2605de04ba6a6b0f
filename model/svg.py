"""Small inline SVG charts for the training report: histogram, lines, bars, scatter.

Drawn by matplotlib (its object-oriented ``Figure`` API and SVG canvas: no pyplot, no GUI
backend; the style is set per chart with ``rc_context``) and returned as SVG text for the
report to inline, so the report still renders offline in one file, without JavaScript.
Text stays text (``svg.fonttype`` none): axis labels, legends and feature names are
searchable in the HTML.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from html import escape

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

# The chart's size in CSS pixels (matplotlib's SVG is in points: 96 px = 72 pt = 1 inch).
WIDTH, HEIGHT = 640, 260
_PX = 1 / 96
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
THRESHOLD_COLOR = "#d62728"
_DASHED = (0, (5, 3))

_STYLE = {
    "svg.fonttype": "none",  # <text> elements, not glyph outlines
    "svg.hashsalt": None,  # random ids: several charts inlined in one page never clash
    "font.family": "sans-serif",
    "font.size": 8.5,
    "axes.prop_cycle": matplotlib.cycler(color=COLORS),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
}
# No <metadata> block (creator, date, licence): the report has no use for it.
_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
_GROUP_ID = re.compile(r'<g id="[\w.]+_\d+">')


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _text(value: str) -> str:
    """Literal text: a ``$`` in a pool or feature name must not start mathtext."""
    return value.replace("$", r"\$")


def _figure(height: float = HEIGHT) -> Figure:
    figure = Figure(figsize=(WIDTH * _PX, height * _PX), layout="constrained")
    FigureCanvasSVG(figure)
    return figure


def _svg(figure: Figure, title: str) -> str:
    """The figure as an ``<svg>`` element to inline in HTML: no XML prolog or doctype, its
    title as the accessible ``<title>``, and without matplotlib's numbered group ids
    (figure_1, axes_1...), which would repeat from one chart to the next in the page."""
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata=_METADATA)
    text = out.getvalue()
    text = _GROUP_ID.sub("<g>", text[text.index("<svg") :].strip())
    return text.replace(">", f' role="img">\n <title>{escape(title)}</title>', 1)


def _legend(axes: Axes) -> None:
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


@matplotlib.rc_context(_STYLE)
def histogram(
    series: dict[str, np.ndarray], x_label: str, vline: float | None = None,
    vline_label: str = "", bins: int = 40,
) -> str:  # fmt: skip
    """Overlaid histograms (share of each series' rows per bin), with a vertical line."""
    values = [v for v in series.values() if len(v)]
    if not values:
        return empty("no rows")
    lo = min(float(v.min()) for v in values)
    hi = max(float(v.max()) for v in values)
    if vline is not None:
        lo, hi = min(lo, vline), max(hi, vline)
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    figure = _figure()
    axes = figure.add_subplot()
    for name, v in series.items():
        share = np.histogram(v, edges)[0] / max(len(v), 1)
        axes.stairs(share, edges, fill=True, alpha=0.55, label=_text(name[:20]))
    if vline is not None:
        axes.axvline(vline, color=THRESHOLD_COLOR, linewidth=2, linestyle=_DASHED)
        axes.annotate(
            _text(vline_label), (vline, 1), xycoords=("data", "axes fraction"),
            xytext=(4, -10), textcoords="offset points", color=THRESHOLD_COLOR,
        )  # fmt: skip
    axes.set_xlim(edges[0], edges[-1])
    axes.set_ylim(bottom=0)
    axes.set_xlabel(_text(x_label))
    axes.set_ylabel("share of rows")
    _legend(axes)
    return _svg(figure, "histogram")


@matplotlib.rc_context(_STYLE)
def lines(
    series: dict[str, tuple[np.ndarray, np.ndarray]], x_label: str, y_label: str,
    x_ticks: Sequence[tuple[float, str]] = (),
) -> str:  # fmt: skip
    """One line per series of (x, y)."""
    if not any(len(x) for x, _ in series.values()):
        return empty("no rows")
    figure = _figure()
    axes = figure.add_subplot()
    for name, (x, y) in series.items():
        axes.plot(x, y, linewidth=1.5, label=_text(name[:20]))
    if x_ticks:
        axes.set_xticks([t for t, _ in x_ticks], [_text(label) for _, label in x_ticks])
    axes.set_ylim(bottom=0)
    axes.set_xlabel(_text(x_label))
    axes.set_ylabel(_text(y_label))
    _legend(axes)
    return _svg(figure, "lines")


@matplotlib.rc_context(_STYLE)
def bars(values: dict[str, float], x_label: str) -> str:
    """Horizontal bars, one per named value (names in full on the left, first on top)."""
    if not values:
        return empty("nothing to show")
    names = list(values)
    row = 22
    figure = _figure(16 + 48 + row * len(names))
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    drawn = axes.barh(
        positions, [values[n] for n in names], height=0.64,
        color=[COLORS[i % 10] for i in range(len(names))],
    )  # fmt: skip
    axes.bar_label(drawn, [_fmt(values[n]) for n in names], padding=3)
    axes.set_yticks(positions, [_text(n) for n in names])
    axes.set_ylim(len(names) - 0.5, -0.5)  # first name on top
    axes.set_xlim(0, max(max(values.values()), 1e-9) * 1.12)  # room for the value labels
    axes.set_xlabel(_text(x_label))
    return _svg(figure, "bars")


@matplotlib.rc_context(_STYLE)
def scatter(x: np.ndarray, y: np.ndarray, x_label: str, y_label: str) -> str:
    """Points with the y = x diagonal and both zero lines (the anomaly thresholds)."""
    if len(x) == 0:
        return empty("no rows")
    lo = float(min(x.min(), y.min(), 0))
    hi = float(max(x.max(), y.max(), 0))
    hi = hi if hi > lo else lo + 1
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot([lo, hi], [lo, hi], color="#aaa", linewidth=1, linestyle=(0, (4, 3)))
    axes.axvline(0, color=THRESHOLD_COLOR, linewidth=1, linestyle=_DASHED)
    axes.axhline(0, color=THRESHOLD_COLOR, linewidth=1, linestyle=_DASHED)
    # At most 2,000 points: the file stays small and the picture the same.
    step = max(1, len(x) // 2000)
    axes.scatter(x[::step], y[::step], s=7, color=COLORS[0], alpha=0.5, linewidths=0)
    axes.set_xlim(lo, hi)
    axes.set_ylim(lo, hi)
    axes.set_xlabel(_text(x_label))
    axes.set_ylabel(_text(y_label))
    return _svg(figure, "scatter")


@matplotlib.rc_context(_STYLE)
def empty(message: str) -> str:
    figure = _figure()
    figure.text(0.5, 0.5, _text(message), ha="center", va="center")
    return _svg(figure, message)
