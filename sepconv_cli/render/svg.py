"""Inline SVG charts for the HTML reports: plain strings, no JavaScript, no external resources.

``bar`` (a share as a filled bar, an optional limit mark), ``hbars`` (labelled horizontal bars),
``energy_curve`` (cumulative energy kept versus rank T, break-even T* and the chosen T marked) and
``scatter`` (the accuracy/speed frontier, the chosen point marked). Coordinates are SVG user units
(pixels at 100% zoom); every text is XML-escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

ACCENT = "#3b6fb6"
AFTER = "#2e9e6b"
WARN = "#c0392b"
MUTED = "#8a8f98"


def _num(value: float) -> str:
    """Short coordinate text (2 decimals, trailing zeros dropped)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def bar(share: float, width: int = 120, height: int = 10, color: str = ACCENT, limit: float | None = None,
        label: str = "") -> str:
    """A bar filled to ``share`` (0..1, clipped; shown past 1 as full, in the warning colour); ``limit``
    marks a share with a dark tick (e.g. a budget's limit). ``label`` becomes the SVG's title."""
    clipped = max(0.0, min(1.0, share))
    fill = WARN if share > 1.0 else color
    title = f"<title>{escape(label)}</title>" if label else ""
    parts = [f'<svg class="bar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             title, f'<rect width="{width}" height="{height}" fill="#eef0f3"/>',
             f'<rect width="{_num(clipped * width)}" height="{height}" fill="{fill}"/>']
    if limit is not None:
        x = _num(max(0.0, min(1.0, limit)) * width - 1)
        parts.append(f'<rect x="{x}" width="2" height="{height}" fill="#222"/>')
    return "".join(parts) + "</svg>"


def hbars(items: Sequence[tuple[str, float, str]], width: int = 640, row: int = 18, label_width: int = 200) -> str:
    """Labelled horizontal bars: ``items`` are (label, share 0..1, value text), one row each."""
    height = row * len(items) + 4
    span = width - label_width - 90
    out = [f'<svg class="hbars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (label, share, value) in enumerate(items):
        y = i * row + 2
        w = max(0.0, min(1.0, share)) * span
        out.append(f'<text x="{label_width - 6}" y="{y + row - 6}" text-anchor="end">{escape(label)}</text>'
                   f'<rect x="{label_width}" y="{y + 2}" width="{_num(w)}" height="{row - 6}" fill="{ACCENT}"/>'
                   f'<text x="{_num(label_width + w + 4)}" y="{y + row - 6}">{escape(value)}</text>')
    return "".join(out) + "</svg>"


@dataclass(frozen=True)
class Frame:
    """A chart's plotting area inside its SVG: size and margins (left, top, right, bottom)."""

    width: int = 260
    height: int = 170
    margin: tuple[int, int, int, int] = (38, 12, 10, 30)

    def x(self, fraction: float) -> float:
        left, _, right, _ = self.margin
        return left + fraction * (self.width - left - right)

    def y(self, fraction: float) -> float:
        _, top, _, bottom = self.margin
        return self.height - bottom - fraction * (self.height - top - bottom)


def _axes(frame: Frame, x_label: str, y_label: str, y_ticks: Sequence[tuple[float, str]],
          x_ticks: Sequence[tuple[float, str]]) -> list[str]:
    out = [f'<line class="axis" x1="{_num(frame.x(0))}" y1="{_num(frame.y(0))}" x2="{_num(frame.x(1))}" '
           f'y2="{_num(frame.y(0))}"/>',
           f'<line class="axis" x1="{_num(frame.x(0))}" y1="{_num(frame.y(0))}" x2="{_num(frame.x(0))}" '
           f'y2="{_num(frame.y(1))}"/>']
    for fraction, text in y_ticks:
        out.append(f'<text class="tick" x="{_num(frame.x(0) - 4)}" y="{_num(frame.y(fraction) + 3)}" '
                   f'text-anchor="end">{escape(text)}</text>')
    for fraction, text in x_ticks:
        out.append(f'<text class="tick" x="{_num(frame.x(fraction))}" y="{_num(frame.y(0) + 12)}" '
                   f'text-anchor="middle">{escape(text)}</text>')
    out.append(f'<text class="label" x="{_num(frame.x(0.5))}" y="{frame.height - 3}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    out.append(f'<text class="label" x="10" y="{_num(frame.y(0.5))}" text-anchor="middle" '
               f'transform="rotate(-90 10 {_num(frame.y(0.5))})">{escape(y_label)}</text>')
    return out


def _rank_ticks(max_rank: int) -> list[tuple[float, str]]:
    step = max(1, -(-max_rank // 6))
    ranks = sorted({1, *range(step, max_rank + 1, step), max_rank})
    return [((t - 1) / max(max_rank - 1, 1), str(t)) for t in ranks]


def energy_curve(energies: Sequence[float], break_even: float, rank: int | None, target: float | None,
                 title: str = "") -> str:
    """Cumulative energy kept (0..1) versus rank T = 1..R: the curve, a dashed vertical line at the
    break-even rank T* (no saving at or past it), a dotted line at the ``target`` energy and a dot at the
    chosen ``rank``."""
    frame = Frame()
    count = len(energies)
    span = max(count - 1, 1)

    def at(t: float) -> float:
        return frame.x((t - 1) / span)

    parts = [f'<svg class="chart energy" width="{frame.width}" height="{frame.height}" '
             f'viewBox="0 0 {frame.width} {frame.height}" role="img">',
             f"<title>{escape(title or 'energy kept versus rank')}</title>"]
    parts += _axes(frame, "rank T", "energy kept", [(0, "0"), (0.5, "0.5"), (1, "1")], _rank_ticks(count))
    if break_even <= count:
        xv = at(max(1.0, break_even))
        x, right = _num(xv), frame.x(1)
        anchor, dx = ("end", -3) if xv > frame.x(0.6) else ("start", 3)
        parts.append(f'<rect class="nosave" x="{x}" y="{_num(frame.y(1))}" width="{_num(max(0.0, right - xv))}" '
                     f'height="{_num(frame.y(0) - frame.y(1))}"><title>no saving at or past T*</title></rect>'
                     f'<line class="tstar" x1="{x}" y1="{_num(frame.y(0))}" x2="{x}" y2="{_num(frame.y(1))}"/>'
                     f'<text class="tick" x="{x}" y="{_num(frame.y(0) - 6)}" dx="{dx}" text-anchor="{anchor}">'
                     f'T*={break_even:.3g}</text>')
    if target is not None:
        y = _num(frame.y(target))
        parts.append(f'<line class="target" x1="{_num(frame.x(0))}" y1="{y}" x2="{_num(frame.x(1))}" y2="{y}"/>')
    points = " ".join(f"{_num(at(t))},{_num(frame.y(e))}" for t, e in enumerate(energies, start=1))
    parts.append(f'<polyline class="curve" points="{points}"/>')
    if rank is not None and 1 <= rank <= count:
        parts.append(f'<circle class="chosen" cx="{_num(at(rank))}" cy="{_num(frame.y(energies[rank - 1]))}" '
                     f'r="4"><title>T={rank}: energy {energies[rank - 1]:.3f}</title></circle>')
    return "".join(parts) + "</svg>"


@dataclass(frozen=True)
class Point:
    """One point of a scatter chart: position in data units, its label, and whether it is the chosen one."""

    x: float
    y: float
    label: str = ""
    chosen: bool = False


def _ticks(low: float, high: float, fmt) -> list[tuple[float, str]]:
    if high <= low:
        return [(0.0, fmt(low))]
    return [(f, fmt(low + f * (high - low))) for f in (0.0, 0.5, 1.0)]


def scatter(points: Sequence[Point], x_label: str, y_label: str, x_fmt=_num, y_fmt=_num) -> str:
    """Points joined in x order (a frontier), the chosen ones drawn larger in the accent colour."""
    frame = Frame(width=420, height=240, margin=(50, 14, 14, 32))
    xs, ys = [p.x for p in points], [p.y for p in points]
    x0, x1 = min(xs, default=0.0), max(xs, default=1.0)
    y0, y1 = min(0.0, min(ys, default=0.0)), max(ys, default=1.0)

    def fx(v: float) -> float:
        return frame.x((v - x0) / (x1 - x0) if x1 > x0 else 0.5)

    def fy(v: float) -> float:
        return frame.y((v - y0) / (y1 - y0) if y1 > y0 else 0.5)

    parts = [f'<svg class="chart frontier" width="{frame.width}" height="{frame.height}" '
             f'viewBox="0 0 {frame.width} {frame.height}" role="img"><title>{escape(y_label)} versus '
             f'{escape(x_label)}</title>']
    parts += _axes(frame, x_label, y_label, _ticks(y0, y1, y_fmt), _ticks(x0, x1, x_fmt))
    ordered = sorted(points, key=lambda p: p.x)
    parts.append('<polyline class="curve" points="' + " ".join(f"{_num(fx(p.x))},{_num(fy(p.y))}" for p in ordered)
                 + '"/>')
    for p in ordered:
        cls, radius = ("chosen", 6) if p.chosen else ("point", 3)
        parts.append(f'<circle class="{cls}" cx="{_num(fx(p.x))}" cy="{_num(fy(p.y))}" r="{radius}">'
                     f"<title>{escape(p.label)}</title></circle>")
    return "".join(parts) + "</svg>"
