"""Charts as inline SVG, drawn on the server: no chart library, no script, nothing from a CDN.

Each function takes plain numbers and labels and returns SVG markup sized by its ``viewBox``
(it scales to its container's width). Every bar and point carries a ``<title>`` (a tooltip,
and what a screen reader says) and ``data-value``, which the browser tests read.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final

from markupsafe import Markup

#: Series colours, distinguishable with the common colour-vision deficiencies (Okabe-Ito).
PALETTE: Final = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")

WIDTH: Final = 720
LEFT: Final = 48
BOTTOM: Final = 28
TOP: Final = 10


def _nice_max(value: float) -> float:
    """The axis' top: four equal steps of 1, 2 or 5 times a power of ten (whole numbers when
    the values are counts), at or above ``value``."""
    if value <= 0:
        return 4
    quarter = value / 4
    step = 1.0
    while step * 10 <= quarter:
        step *= 10
    while step > quarter:
        step /= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= quarter:
            step *= factor
            break
    if float(value).is_integer():
        step = max(step, 1.0)
    return step * 4


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _frame(height: int, top: float, label: str) -> list[str]:
    """The SVG's opening tag, the y axis' gridlines and their numbers."""
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">'
    ]
    plot = height - BOTTOM - TOP
    for i in range(5):
        y = TOP + plot - plot * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_number(top * i / 4)}</text>"
        )
    return parts


def _x_labels(labels: Sequence[str], step: float, every: int, height: int) -> list[str]:
    parts = []
    for i, text in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            x = LEFT + step * i + step / 2
            anchor = "end" if x + 20 > WIDTH else "middle"  # the last label stays inside
            parts.append(
                f'<text class="axis" x="{min(x, WIDTH - 2):.1f}" y="{height - 8}" '
                f'text-anchor="{anchor}">{escape(text)}</text>'
            )
    return parts


def bar_chart(
    labels: Sequence[str], values: Sequence[float | None], *, label: str, height: int = 240
) -> Markup:
    """One bar per label; ``None`` (nothing to divide by) draws no bar."""
    top = _nice_max(max((v for v in values if v is not None), default=0))
    plot = height - BOTTOM - TOP
    step = (WIDTH - LEFT) / max(len(values), 1)
    parts = _frame(height, top, label)
    for i, (text, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            continue
        h = plot * value / top
        x = LEFT + step * i + step * 0.15
        parts.append(
            f'<rect class="bar" data-label="{escape(text)}" data-value="{value}" x="{x:.1f}" '
            f'y="{TOP + plot - h:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" fill="{PALETTE[0]}">'
            f"<title>{escape(text)}: {_number(value)}</title></rect>"
        )
    parts += _x_labels(labels, step, max(1, len(labels) // 8), height)
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    labels: Sequence[str], values: Sequence[float | None], *, label: str, height: int = 240
) -> Markup:
    """A line through the values; ``None`` breaks the line."""
    top = _nice_max(max((v for v in values if v is not None), default=0))
    plot = height - BOTTOM - TOP
    step = (WIDTH - LEFT) / max(len(values), 1)
    parts = _frame(height, top, label)
    runs: list[list[str]] = [[]]
    points = []
    for i, (text, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            runs.append([])
            continue
        x, y = LEFT + step * i + step / 2, TOP + plot - plot * value / top
        runs[-1].append(f"{x:.1f},{y:.1f}")
        points.append(
            f'<circle class="point" data-label="{escape(text)}" data-value="{value}" '
            f'cx="{x:.1f}" cy="{y:.1f}" '
            f'r="3.5" fill="{PALETTE[0]}"><title>{escape(text)}: {_number(value)}</title></circle>'
        )
    for run in runs:
        if run:
            parts.append(
                f'<polyline class="line" fill="none" stroke="{PALETTE[0]}" stroke-width="2" '
                f'points="{" ".join(run)}"/>'
            )
    parts += points
    parts += _x_labels(labels, step, max(1, len(labels) // 8), height)
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_bars(
    labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], *, label: str, height: int = 220
) -> Markup:
    """Bars per label, each stacked by series (a source): ``series`` is ``[(name, counts)]``."""
    totals = [sum(counts[i] for _, counts in series) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    plot = height - BOTTOM - TOP
    step = (WIDTH - LEFT) / max(len(labels), 1)
    parts = _frame(height, top, label)
    for i, text in enumerate(labels):
        base = TOP + plot
        for n, (name, counts) in enumerate(series):
            if not counts[i]:
                continue
            h = plot * counts[i] / top
            base -= h
            parts.append(
                f'<rect class="bar" data-label="{escape(text)}" data-series="{escape(name)}" '
                f'data-value="{counts[i]}" x="{LEFT + step * i + step * 0.1:.1f}" y="{base:.1f}" '
                f'width="{step * 0.8:.1f}" height="{h:.1f}" fill="{PALETTE[n % len(PALETTE)]}">'
                f"<title>{escape(text)} {escape(name)}: {counts[i]}</title></rect>"
            )
    parts += _x_labels(labels, step, max(1, len(labels) // 6), height)
    parts.append("</svg>")
    return Markup("".join(parts))


def funnel_bars(steps: Sequence[tuple[str, int, float | None]], *, label: str) -> Markup:
    """A horizontal bar per step, ``(event, people, conversion from the first)``, widest first."""
    row, gap, name_width = 34, 10, 180
    height = len(steps) * (row + gap) + gap
    first = max((people for _, people, _ in steps), default=0) or 1
    parts = [
        f'<svg class="chart funnel" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}">'
    ]
    room = WIDTH - name_width - 150
    for i, (event, people, conversion) in enumerate(steps):
        y = gap + i * (row + gap)
        w = max(room * people / first, 1 if people else 0)
        percent = "" if conversion is None else f"{conversion * 100:.1f} %"
        parts.append(
            f'<text class="axis" x="{name_width - 8}" y="{y + row / 2 + 4}" text-anchor="end">'
            f"{escape(event[:28])}</text>"
            f'<rect class="bar" data-label="{escape(event)}" data-value="{people}" x="{name_width}" y="{y}" '
            f'width="{w:.1f}" height="{row}" fill="{PALETTE[0]}"><title>{escape(event)}: {people} people'
            f"{', ' + percent if percent else ''}</title></rect>"
            f'<text class="value" x="{name_width + w + 8:.1f}" y="{y + row / 2 + 4}">'
            f"{people} · {percent}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(labels: Sequence[str], values: Sequence[float | None], *, label: str) -> Markup:
    """A small histogram without axes, for a dashboard card."""
    width, height = 140, 36
    top = max((v for v in values if v is not None), default=0) or 1
    step = width / max(len(values), 1)
    parts = [
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}">'
    ]
    parts.append(f'<line class="grid" x1="0" x2="{width}" y1="{height - 0.5}" y2="{height - 0.5}"/>')
    for i, (text, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            continue
        h = max((height - 2) * value / top, 1 if value else 0)
        parts.append(
            f'<rect class="bar" data-label="{escape(text)}" data-value="{value}" x="{step * i + 1:.1f}" '
            f'y="{height - h:.1f}" width="{step - 2:.1f}" height="{h:.1f}" fill="{PALETTE[0]}">'
            f"<title>{escape(text)}: {_number(value)}</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
