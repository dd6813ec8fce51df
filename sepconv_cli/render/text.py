"""Text pieces every human-facing renderer shares: compact numbers, shapes, conv geometry, shares.

Units: counts are elements or MACs (``1.19M``), sizes are bytes (``4.5 MiB``), shares are fractions
shown as percentages. Long layer names are cut in the middle and report lines broken between their
parts, so that reports fit an 80-column terminal. Pure string functions; no rich import.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

from sepconv_cli.core.records import (
    Candidate,
    ConvSpec,
    ModelInfo,
    Report,
    Shape,
    TensorInfo,
    format_shape,
    rows_not_counted,
)
from sepconv_cli.core.units import format_bytes
from sepconv_cli.render.candidates import has_energy
from sepconv_cli.render.views import NO_FORMULA, Row

_SUFFIXES = ("", "k", "M", "G", "T", "P")
_BLOCKS = " ▏▎▍▌▋▊▉█"


def compact(n: int | None) -> str:
    """``1186378`` -> ``"1.19M"``; three significant digits; ``None`` -> ``"?"``."""
    if n is None:
        return "?"
    value, index = float(n), 0
    while abs(value) >= 999.5 and index < len(_SUFFIXES) - 1:
        value /= 1000.0
        index += 1
    if index == 0:
        return str(n)
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f}{_SUFFIXES[index]}"


def exact(n: int) -> str:
    """``1186378`` -> ``"1,186,378"``."""
    return f"{n:,}"


def exact_compact(n: int) -> str:
    """``"1,186,378 (1.19M)"``; small numbers stay bare."""
    return exact(n) if abs(n) < 1000 else f"{exact(n)} ({compact(n)})"


def size(n: int) -> str:
    """Bytes in binary units: ``4745512`` -> ``"4.53 MiB"`` (``units.format_bytes``, shared by every command)."""
    return format_bytes(n)


NO_FILE = "n/a"
"""How the size of a model that has no file (an entry point, an in-memory model) reads."""


def file_size(info: ModelInfo) -> str:
    """The model's file size in binary units, ``"n/a"`` when it was not read from a file;
    ``"5.08 KiB + 4.53 MiB external"`` when part of it is external data."""
    if not info.file_size:
        return NO_FILE
    if info.external_data_size:
        return f"{size(info.file_size - info.external_data_size)} + {size(info.external_data_size)} external"
    return size(info.file_size)


def size_change(before: ModelInfo, after: ModelInfo) -> str:
    """``"4.54 MiB -> 688 KiB (6.77x)"``; a side without a file reads ``n/a`` and no ratio is given."""
    ratio_text = f" ({before.file_size / after.file_size:.2f}x)" if before.file_size and after.file_size else ""
    return f"{file_size(before)} -> {file_size(after)}{ratio_text}"


def tensor_signature(info: TensorInfo) -> str:
    """``"input float32[1x3x32x32]"``."""
    return f"{info.name} {info.dtype}[{format_shape(info.shape)}]"


def signature(info: ModelInfo) -> str:
    """The model's inputs (name, dtype, shape), comma separated; ``""`` when none are known."""
    return ", ".join(tensor_signature(t) for t in info.inputs)


def source_text(info: ModelInfo) -> str:
    """``"onnx"``, or ``"entrypoint, built on cpu"`` for a module built to be counted."""
    return info.format + (f", built on {info.device}" if info.device else "")


def percent(share: float | None) -> str:
    """``0.1234`` -> ``"12.3%"``; unknown -> ``"?"``."""
    return "?" if share is None else f"{100.0 * share:.1f}%"


def ratio(value: float | None) -> str:
    """``6.786`` -> ``"6.79x"``; unknown -> ``"?"``."""
    return "?" if value is None else f"{value:.2f}x"


def not_counted(report: Report) -> str:
    """``" + 3 rows not counted"`` when some rows' MACs are unknown (rows in a symbolic formula aside),
    else empty."""
    if report.macs_symbolic is not None:
        missing = sum(1 for row in report.unknown_rows if not row.macs_symbolic)
        return f" + {rows_not_counted(missing)}" if missing else ""
    return f" + {report.not_counted}" if report.not_counted else ""


def total_macs(report: Report) -> str:
    """The model's MACs, flagged when some rows could not be counted (so a partial sum never reads as whole);
    the exact formula when dims stay symbolic (``"81,456·H·W + 2,048,000"``)."""
    if report.macs_symbolic is not None:
        return report.macs_symbolic.expression + not_counted(report)
    return exact_compact(report.macs) + not_counted(report)


def total_flops(report: Report) -> str:
    """FLOPs = 2 x MACs, as a number or (dims symbolic) as twice the formula."""
    if report.macs_symbolic is not None:
        return f"2·({report.macs_symbolic.expression}){not_counted(report)}"
    return exact_compact(report.flops) + not_counted(report)


def assumed_text(info: ModelInfo) -> str:
    """``"per sample: N=1"`` when symbolic dims were taken at a default size, else empty."""
    return "per sample: " + ", ".join(f"{k}={v}" for k, v in info.assumed_dims) if info.assumed_dims else ""


def symbolic_where(report: Report) -> str:
    """``"exact for H and W multiples of 32, at least 32 (checked at H=96, W=128)"``; empty without a formula."""
    sym = report.macs_symbolic
    if sym is None:
        return ""
    checked = ", ".join(f"{k}={v}" for k, v in sym.checked_at)
    return f"exact for {sym.valid_when}" + (f" (checked at {checked})" if checked else "")


def bar(share: float, width: int = 6) -> str:
    """A horizontal bar of ``width`` cells filled to ``share`` (eighth-cell resolution)."""
    eighths = round(max(0.0, min(1.0, share)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_BLOCKS[part] if part else "")
    return text.ljust(width)


def shapes(values: tuple[Shape | None, ...]) -> str:
    """Several shapes: ``"1x64x32x32"``, ``"1x3, 3x4"``; none -> ``""``."""
    return ", ".join(format_shape(s) for s in values)


def _per_dim(values: tuple[int, ...]) -> str:
    """One number when every spatial dim agrees (``2``), else all of them in order (``2x1``)."""
    if not values:
        return "1"
    return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)


def conv_geometry(spec: ConvSpec) -> str:
    """Compact conv description: ``"3x3 s2"``, ``"3x3 s1 g32"``, ``"3x3 s1 dw"``, ``"5 s1 d2 tr"``."""
    parts = ["x".join(str(k) for k in spec.kernel), "s" + _per_dim(spec.stride)]
    if spec.groups > 1:
        parts.append("dw" if spec.is_depthwise else f"g{spec.groups}")
    if any(d > 1 for d in spec.dilation):
        parts.append("d" + _per_dim(spec.dilation))
    if spec.transposed:
        parts.append("tr")
    return " ".join(parts)


CONV_LEGEND = "Conv: kernel, s stride, g groups (dw: depthwise), d dilation, tr: transposed."


def op_text(row: Row) -> str:
    """Op name, followed by the conv geometry for conv rows."""
    return f"{row.op} {conv_geometry(row.conv)}" if row.conv is not None else row.op


def macs_text(row: Row) -> str:
    """MACs of a row: compact number; ``"-"`` for ops without a formula; ``"?"`` (or ``"12.3M+?"``) where
    some shapes were unknown, so an uncounted row never reads as 0."""
    if row.macs is None:
        return "-" if row.unknown == 0 and row.note == NO_FORMULA else "?"
    return compact(row.macs) + ("+?" if row.unknown else "")


def arrow(before: int | None, after: int | None) -> str:
    """``"36.9k→4.74k"``."""
    return f"{compact(before)}→{compact(after)}"


def energy(value: float | None) -> str:
    """Energy kept, two decimals, ``"-"`` without weights."""
    return "-" if value is None else f"{value:.2f}"


def rank_text(cand: Candidate) -> str:
    """The energy-chosen rank ``T``, or why there is none."""
    if cand.rank is not None:
        return str(cand.rank)
    return "-" if cand.energy_t1 is None else "≥T*"


def risk_text(cand: Candidate) -> str:
    """The planner's risk word, ``"-"`` when it could not judge (no weights)."""
    return cand.risk or "-"


def energy_notes(report: Report) -> list[str]:
    """Why energy or rank columns are empty: no weights at all, or ranks past break-even."""
    if not has_energy(report):
        return ["Energy kept needs weights; this model has none (e.g. meta device): savings only."]
    if any(c.rank is None for c in report.candidates):
        return ["≥T*: that energy needs a rank past break-even, so the layer saves nothing there."]
    return []


def shorten(name: str, width: int) -> str:
    """``name`` cut to ``width`` characters in the middle (``…``), keeping its start and, mostly, its end."""
    if len(name) <= width:
        return name
    keep = max(width - 1, 2)
    head = keep // 3
    return name[:head] + "…" + name[len(name) - (keep - head):]


def fit_names(names: Sequence[str], width: int) -> list[str]:
    """Layer names cut to ``width`` characters so that they stay told apart: a prefix shared by all the
    names goes first (``…``), then the middle of what is left (see ``shorten``). Names that fit stay whole."""
    prefix = os.path.commonprefix(list(names)) if len(names) > 1 else ""
    out = []
    for name in names:
        rest = name[len(prefix):]
        if len(name) <= width or not prefix or not rest:
            out.append(shorten(name, width))
        else:
            out.append("…" + shorten(rest, width - 1))
    return out


def wrap_parts(head: str, parts: Sequence[str], width: int, sep: str = ", ", indent: str = "    ") -> list[str]:
    """``head`` then ``parts`` joined by ``sep``, broken into lines of at most ``width`` characters between
    parts, never inside one (a phrase such as ``top-1 agreement 100.0%`` stays whole); continuation
    lines start with ``indent``."""
    tokens = [p + sep.rstrip() for p in parts[:-1]] + list(parts[-1:])
    lines, line = [], head
    for token in tokens:
        if line in (head, indent):
            line += token
        elif len(line) + 1 + len(token) <= width:
            line += " " + token
        else:
            lines.append(line)
            line = indent + token
    return lines + [line]


def wrap_lines(lines: Sequence[str], width: int) -> list[str]:
    """Each line broken between words to ``width`` characters; continuation lines are indented two
    spaces past the line's own indentation. A word longer than the width stays whole."""
    out: list[str] = []
    for line in lines:
        indent = line[:len(line) - len(line.lstrip(" "))]
        wrapped = textwrap.wrap(line, max(width, 20), initial_indent="", subsequent_indent=indent + "  ",
                                break_long_words=False, break_on_hyphens=False, drop_whitespace=True)
        out.extend([indent + w.lstrip(" ") if i == 0 else w for i, w in enumerate(wrapped)] or [""])
    return out
