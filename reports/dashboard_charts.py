"""Server-rendered SVG charts for the dashboard: no JavaScript, no CDN, so the admin works offline.

Each chart is an inline `<svg role="img">` with a `<title>` and `<desc>` (what a screen reader says),
axes with tick labels, a legend, and a `<title>` tooltip on every bar and point. The elements are built
with ElementTree, so every label is escaped and the result is always well-formed XML. Coordinates
are floats (geometry, not money); every figure shown as text is formatted from the exact value.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 72, 16, 40, 44
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
MAX_X_LABELS = 12
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif"

Number = Decimal | int | None


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Number]
    colour: str
    # Optional extra words per point for its tooltip (e.g. "39 of 40 finished payouts").
    notes: Sequence[str] | None = None


def format_count(value: Number) -> str:
    return "—" if value is None else f"{int(value):,}"


def format_money(value: Number) -> str:
    """IDR with thousands separators and the cents, from the exact Decimal."""
    return "—" if value is None else f"IDR {Decimal(value):,.2f}"


def format_percent(value: Number) -> str:
    return "—" if value is None else f"{Decimal(value):.1f} %"


def _compact(value: float) -> str:
    """Tick labels: 2.5M, 750k, 40."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def nice_ticks(maximum: float, *, integers: bool = False, count: int = 5) -> list[float]:
    """Evenly spaced ticks from 0 to a round value at or above `maximum` (1, 2, 2.5 or 5 × 10ⁿ)."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integers else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw)
    if integers:
        step = max(1.0, math.ceil(step))
    n = math.ceil(maximum / step - 1e-9)
    return [i * step for i in range(n + 1)]


class _Canvas:
    """The frame every chart shares: the svg root, its accessible name, the y axis and the x labels."""

    def __init__(self, *, chart_id: str, title: str, description: str, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.svg = ET.Element(
            "svg",
            {
                "id": chart_id,
                "class": "dashboard-chart",
                "viewBox": f"0 0 {WIDTH} {HEIGHT}",
                "width": str(WIDTH),
                "height": str(HEIGHT),
                "role": "img",
                "aria-labelledby": f"{chart_id}-title {chart_id}-desc",
                "style": f"max-width:100%;height:auto;{FONT}",
            },
        )
        ET.SubElement(self.svg, "title", {"id": f"{chart_id}-title"}).text = title
        ET.SubElement(self.svg, "desc", {"id": f"{chart_id}-desc"}).text = description
        ET.SubElement(self.svg, "rect", {"x": "0", "y": "0", "width": str(WIDTH), "height": str(HEIGHT), "fill": "#ffffff"})
        self.top = 1.0

    @property
    def slot(self) -> float:
        return PLOT_W / max(1, len(self.labels))

    def y(self, value: float) -> float:
        return TOP + PLOT_H - (value / self.top) * PLOT_H

    def y_axis(self, ticks: list[float], tick_label: Callable[[float], str]) -> None:
        self.top = ticks[-1] or 1.0
        axis = ET.SubElement(self.svg, "g", {"class": "y-axis", "font-size": "11", "fill": "#555"})
        for tick in ticks:
            y = f"{self.y(tick):.1f}"
            ET.SubElement(axis, "line", {"x1": str(LEFT), "x2": str(LEFT + PLOT_W), "y1": y, "y2": y, "stroke": "#e3e3e3"})
            label = ET.SubElement(axis, "text", {"x": str(LEFT - 6), "y": y, "text-anchor": "end", "dominant-baseline": "middle"})
            label.text = tick_label(tick)
        ET.SubElement(
            self.svg, "line",
            {"x1": str(LEFT), "x2": str(LEFT + PLOT_W), "y1": str(TOP + PLOT_H), "y2": str(TOP + PLOT_H), "stroke": "#888"},
        )

    def x_labels(self) -> None:
        every = max(1, math.ceil(len(self.labels) / MAX_X_LABELS))
        axis = ET.SubElement(self.svg, "g", {"class": "x-axis", "font-size": "11", "fill": "#555"})
        for i, text in enumerate(self.labels):
            # Always label the last category (today, or the last provider); thin out the rest evenly.
            if (len(self.labels) - 1 - i) % every:
                continue
            x = LEFT + self.slot * (i + 0.5)
            ET.SubElement(axis, "line", {"x1": f"{x:.1f}", "x2": f"{x:.1f}", "y1": str(TOP + PLOT_H), "y2": str(TOP + PLOT_H + 4), "stroke": "#888"})
            label = ET.SubElement(axis, "text", {"x": f"{x:.1f}", "y": str(TOP + PLOT_H + 18), "text-anchor": "middle"})
            label.text = text

    def legend(self, series: Sequence[Series]) -> None:
        legend = ET.SubElement(self.svg, "g", {"class": "legend", "font-size": "12", "fill": "#333"})
        x = LEFT
        for s in series:
            ET.SubElement(legend, "rect", {"x": str(x), "y": "12", "width": "12", "height": "12", "rx": "2", "fill": s.colour})
            label = ET.SubElement(legend, "text", {"x": str(x + 17), "y": "18", "dominant-baseline": "middle"})
            label.text = s.name
            x += 17 + 7 * len(s.name) + 22

    def empty_note(self, text: str) -> None:
        note = ET.SubElement(
            self.svg, "text",
            {"x": str(LEFT + PLOT_W / 2), "y": str(TOP + PLOT_H / 2), "text-anchor": "middle", "font-size": "14", "fill": "#888"},
        )
        note.text = text

    def render(self) -> SafeString:
        return mark_safe(ET.tostring(self.svg, encoding="unicode", short_empty_elements=True))


def _tooltip(label: str, parts: list[str]) -> str:
    return f"{label}: " + "; ".join(parts)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    money: bool = False,
    stacked: bool = False,
    empty_text: str = "No data in this period",
) -> SafeString:
    """Bars per category, one per series side by side (or stacked), with a y axis from 0."""
    fmt = format_money if money else format_count
    canvas = _Canvas(chart_id=chart_id, title=title, description=description, labels=labels)
    n = len(canvas.labels)
    values = [[float(v or 0) for v in s.values] for s in series]
    if stacked:
        maximum = max((sum(col) for col in zip(*values)), default=0.0)
    else:
        maximum = max((v for row in values for v in row), default=0.0)
    canvas.y_axis(nice_ticks(maximum, integers=not money), _compact)

    bars = ET.SubElement(canvas.svg, "g", {"class": "bars"})
    group_w = canvas.slot * 0.8
    bar_w = group_w if stacked else group_w / max(1, len(series))
    for i in range(n):
        slot_x = LEFT + canvas.slot * i
        # The whole column answers a hover with every series' figure, zero days included.
        column = ET.SubElement(
            bars, "rect",
            {"x": f"{slot_x:.2f}", "y": str(TOP), "width": f"{canvas.slot:.2f}", "height": str(PLOT_H), "fill": "transparent"},
        )
        ET.SubElement(column, "title").text = _tooltip(canvas.labels[i], [f"{s.name} {fmt(s.values[i])}" for s in series])
        base = 0.0
        for k, s in enumerate(series):
            value = values[k][i]
            if value <= 0:
                continue
            x = slot_x + (canvas.slot - group_w) / 2 + (0 if stacked else k * bar_w)
            y_top = canvas.y(base + value)
            height = canvas.y(base) - y_top
            bar = ET.SubElement(
                bars, "rect",
                {
                    "x": f"{x:.2f}", "y": f"{y_top:.2f}", "width": f"{max(bar_w - 0.5, 0.5):.2f}",
                    "height": f"{max(height, 0.5):.2f}", "fill": s.colour,
                },
            )
            ET.SubElement(bar, "title").text = _tooltip(canvas.labels[i], [f"{s.name} {fmt(s.values[i])}"])
            if stacked:
                base += value
    canvas.x_labels()
    canvas.legend(series)
    if maximum <= 0:
        canvas.empty_note(empty_text)
    return canvas.render()


def line_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    percent: bool = True,
    empty_text: str = "No finished payouts in this period",
) -> SafeString:
    """Lines with a dot per point; a missing value (None) breaks the line. Percentages run 0–100."""
    fmt = format_percent if percent else format_count
    canvas = _Canvas(chart_id=chart_id, title=title, description=description, labels=labels)
    present = [float(v) for s in series for v in s.values if v is not None]
    ticks = [0.0, 25.0, 50.0, 75.0, 100.0] if percent else nice_ticks(max(present, default=0.0), integers=True)
    canvas.y_axis(ticks, (lambda t: f"{t:g} %") if percent else _compact)

    lines = ET.SubElement(canvas.svg, "g", {"class": "lines"})
    for s in series:
        points = [
            (LEFT + canvas.slot * (i + 0.5), canvas.y(float(v))) if v is not None else None for i, v in enumerate(s.values)
        ]
        path, pen_down = [], False
        for point in points:
            if point is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{point[0]:.2f},{point[1]:.2f}")
            pen_down = True
        if path:
            ET.SubElement(lines, "path", {"d": " ".join(path), "fill": "none", "stroke": s.colour, "stroke-width": "2"})
        for i, point in enumerate(points):
            if point is None:
                continue
            dot = ET.SubElement(
                lines, "circle", {"cx": f"{point[0]:.2f}", "cy": f"{point[1]:.2f}", "r": "3.5", "fill": s.colour}
            )
            words = f"{s.name} {fmt(s.values[i])}"
            if s.notes:
                words += f" ({s.notes[i]})"
            ET.SubElement(dot, "title").text = _tooltip(canvas.labels[i], [words])
    canvas.x_labels()
    canvas.legend(series)
    if not present:
        canvas.empty_note(empty_text)
    return canvas.render()
