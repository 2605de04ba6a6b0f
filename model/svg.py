"""Small inline SVG charts for the training report: histogram, lines, bars, scatter.

Hand-written SVG instead of a plotting library: the report must render offline in one
file, and these four chart kinds are all it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 60, 150, 16, 40
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.3g}"


class _Frame:
    """Maps data coordinates onto the plot area and draws axes with ticks."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x0, self.x1 = x_range if x_range[1] > x_range[0] else (x_range[0], x_range[0] + 1)
        self.y0, self.y1 = y_range if y_range[1] > y_range[0] else (y_range[0], y_range[0] + 1)
        self.parts: list[str] = []

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return HEIGHT - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)

    def axes(self, x_label: str, y_label: str, x_ticks: Sequence[tuple[float, str]] = ()) -> None:
        bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
        self.parts.append(
            f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>'
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#333"/>'
        )
        for y in np.linspace(self.y0, self.y1, 5):
            self.parts.append(
                f'<text x="{LEFT - 4}" y="{self.py(y) + 4:.1f}" text-anchor="end">'
                f"{_fmt(float(y))}</text>"
            )
        ticks = x_ticks or [(float(x), _fmt(float(x))) for x in np.linspace(self.x0, self.x1, 5)]
        for x, label in ticks:
            self.parts.append(
                f'<text x="{self.px(x):.1f}" y="{bottom + 14}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
        self.parts.append(
            f'<text x="{(LEFT + right) / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
            f"{escape(x_label)}</text>"
            f'<text x="12" y="{(TOP + bottom) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 12 {(TOP + bottom) / 2})">{escape(y_label)}</text>'
        )

    def legend(self, names: Sequence[str]) -> None:
        for i, name in enumerate(names):
            y = TOP + 14 * i + 6
            x = WIDTH - RIGHT + 10
            self.parts.append(
                f'<rect x="{x}" y="{y - 8}" width="10" height="10" fill="{COLORS[i % 10]}"/>'
                f'<text x="{x + 14}" y="{y + 1}">{escape(name[:20])}</text>'
            )

    def svg(self, title: str) -> str:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" '
            f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" '
            f'font-size="11"><title>{escape(title)}</title>{"".join(self.parts)}</svg>'
        )


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
    shares = {n: np.histogram(v, edges)[0] / max(len(v), 1) for n, v in series.items()}
    frame = _Frame((edges[0], edges[-1]), (0, max(float(s.max()) for s in shares.values())))
    frame.axes(x_label, "share of rows")
    for i, (_, share) in enumerate(shares.items()):
        for left, right, h in zip(edges[:-1], edges[1:], share, strict=True):
            if h <= 0:
                continue
            frame.parts.append(
                f'<rect x="{frame.px(left):.1f}" y="{frame.py(h):.1f}" '
                f'width="{max(frame.px(right) - frame.px(left) - 0.5, 0.5):.1f}" '
                f'height="{frame.py(0) - frame.py(h):.1f}" fill="{COLORS[i]}" '
                'fill-opacity="0.55"/>'
            )
    if vline is not None:
        x = frame.px(vline)
        frame.parts.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" stroke="#d62728" '
            f'stroke-width="2" stroke-dasharray="5,3"/><text x="{x + 4:.1f}" y="{TOP + 10}" '
            f'fill="#d62728">{escape(vline_label)}</text>'
        )
    frame.legend(list(series))
    return frame.svg("histogram")


def lines(
    series: dict[str, tuple[np.ndarray, np.ndarray]], x_label: str, y_label: str,
    x_ticks: Sequence[tuple[float, str]] = (),
) -> str:  # fmt: skip
    """One polyline per series of (x, y)."""
    points = [(x, y) for x, y in series.values() if len(x)]
    if not points:
        return empty("no rows")
    frame = _Frame(
        (min(float(x.min()) for x, _ in points), max(float(x.max()) for x, _ in points)),
        (0, max(max(float(y.max()) for _, y in points), 1e-9)),
    )
    frame.axes(x_label, y_label, x_ticks)
    for i, (x, y) in enumerate(series.values()):
        path = " ".join(f"{frame.px(a):.1f},{frame.py(b):.1f}" for a, b in zip(x, y, strict=True))
        frame.parts.append(
            f'<polyline points="{path}" fill="none" stroke="{COLORS[i % 10]}" stroke-width="1.5"/>'
        )
    frame.legend(list(series))
    return frame.svg("lines")


def bars(values: dict[str, float], x_label: str) -> str:
    """Horizontal bars, one per named value (names in full on the left)."""
    if not values:
        return empty("nothing to show")
    names = list(values)
    label_width, row = 170, 22
    height = TOP + BOTTOM + row * len(names)
    longest = max(max(values.values()), 1e-9)
    span = WIDTH - label_width - 60
    parts = []
    for i, name in enumerate(names):
        y = TOP + i * row
        w = values[name] / longest * span
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
            f'fill="{COLORS[i % 10]}"/>'
            f'<text x="{label_width + w + 4:.1f}" y="{y + 15}">{_fmt(values[name])}</text>'
        )
    parts.append(
        f'<text x="{label_width + span / 2}" y="{height - 10}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">'
        f"<title>bars</title>{''.join(parts)}</svg>"
    )


def scatter(x: np.ndarray, y: np.ndarray, x_label: str, y_label: str) -> str:
    """Points with the y = x diagonal and both zero lines (the anomaly thresholds)."""
    if len(x) == 0:
        return empty("no rows")
    lo = float(min(x.min(), y.min(), 0))
    hi = float(max(x.max(), y.max(), 0))
    frame = _Frame((lo, hi), (lo, hi))
    frame.axes(x_label, y_label)
    frame.parts.append(
        f'<line x1="{frame.px(lo):.1f}" y1="{frame.py(lo):.1f}" x2="{frame.px(hi):.1f}" '
        f'y2="{frame.py(hi):.1f}" stroke="#aaa" stroke-dasharray="4,3"/>'
        f'<line x1="{frame.px(0):.1f}" y1="{TOP}" x2="{frame.px(0):.1f}" y2="{HEIGHT - BOTTOM}" '
        f'stroke="#d62728" stroke-dasharray="5,3"/>'
        f'<line x1="{LEFT}" y1="{frame.py(0):.1f}" x2="{WIDTH - RIGHT}" y2="{frame.py(0):.1f}" '
        f'stroke="#d62728" stroke-dasharray="5,3"/>'
    )
    # At most 2,000 points: the file stays small and the picture the same.
    step = max(1, len(x) // 2000)
    frame.parts.extend(
        f'<circle cx="{frame.px(a):.1f}" cy="{frame.py(b):.1f}" r="2" fill="#1f77b4" '
        'fill-opacity="0.5"/>'
        for a, b in zip(x[::step], y[::step], strict=True)
    )
    return frame.svg("scatter")


def empty(message: str) -> str:
    frame = _Frame((0, 1), (0, 1))
    frame.parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">{escape(message)}</text>'
    )
    return frame.svg(message)
