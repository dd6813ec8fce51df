"""``analyze --explain NAME|GLOB``: every matching row's MACs formula with its operands, and what each
input counts as (param, buffer, config, literal, activation) and why.

Pure string functions over a ``Report``; the CLI prints. Units: params and buffers in elements, MACs in
multiply-accumulates.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

from sepconv_cli.core.records import Layer, Operand, Report, format_shape

WHY = {
    "param": "learnable",
    "buffer": "statistics or quantisation metadata, not a param",
    "config": "says how the op runs, never a param",
    "literal": "a scalar constant of the code, not a param",
    "constant": "integer data, not a weight",
    "activation": "computed at run time",
}
"""What an operand kind means, in the words ``--explain`` prints."""


def matching(report: Report, pattern: str) -> tuple[Layer, ...]:
    """Rows named ``pattern`` exactly, else rows whose name matches it as a glob (``*conv1*``)."""
    exact = tuple(layer for layer in report.layers if layer.name == pattern)
    return exact or tuple(layer for layer in report.layers if fnmatchcase(layer.name, pattern))


def _operand(operand: Operand) -> str:
    """``"    w  64x64x3x3  param, 36,864 elements here (conv weight: learnable)"``."""
    counted = ""
    if operand.kind in ("param", "buffer"):
        counted = f", {operand.elements:,} elements here" if operand.elements else ", counted at its first reader"
    why = "; ".join(x for x in (operand.role, WHY.get(operand.kind, "")) if x)
    return f"    {operand.name}  {format_shape(operand.shape)}  {operand.kind}{counted} ({why})"


def _macs(layer: Layer) -> str:
    if layer.formula:
        return f"  {layer.formula}"
    if layer.macs is None:
        return f"  MACs unknown: {layer.note or 'no formula'}"
    return f"  MACs = {layer.macs:,}"


def explain_layer(layer: Layer) -> list[str]:
    """The lines for one row: header, MACs formula, operands, params and buffers credited here."""
    lines = [f"{layer.name} ({layer.op})", _macs(layer)]
    if layer.operands:
        lines.append("  inputs:")
        lines.extend(_operand(o) for o in layer.operands)
    lines.append(f"  params here {layer.params:,}, buffers here {layer.buffers:,}")
    return lines


def explain_text(report: Report, rows: tuple[Layer, ...]) -> str:
    """``rows`` explained, separated by blank lines, with the symbolic dims' note when there is one."""
    blocks = ["\n".join(explain_layer(layer)) for layer in rows]
    sym = report.macs_symbolic
    tail = [f"Dims {', '.join(sym.symbols)} stay symbolic: formulas hold for {sym.valid_when}."] if sym else []
    if report.model.assumed_dims:
        tail.append("Per sample: " + ", ".join(f"{k}={v}" for k, v in report.model.assumed_dims)
                    + " (a dynamic batch is taken as 1; --input-shape overrides).")
    return "\n\n".join(blocks + (["\n".join(tail)] if tail else [])) + "\n"


def explain_json(rows: tuple[Layer, ...]) -> str:
    """The rows' ``name``, ``op``, ``params``, ``buffers``, ``macs``, ``formula``, ``macs_symbolic`` and
    ``operands`` as a JSON list."""
    data = [{"name": r.name, "op": r.op, "params": r.params, "buffers": r.buffers, "macs": r.macs,
             "formula": r.formula, "macs_symbolic": r.macs_symbolic or None,
             "operands": [{"name": o.name, "shape": None if o.shape is None else list(o.shape), "kind": o.kind,
                           "role": o.role, "elements": o.elements} for o in r.operands]} for r in rows]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


__all__ = ["WHY", "explain_json", "explain_layer", "explain_text", "matching"]
