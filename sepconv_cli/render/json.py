"""JSON renderer: the stable, machine-readable report (never through rich: no wrapping, no colour).

Keys fixed by the design (scripts read them; add, never rename): ``schema_version``; ``model`` {path,
format}; ``totals`` {params, macs, flops, buffers}; ``layers`` [{name, op, params, macs, input_shapes,
output_shapes}]; ``uncounted`` [{op, count}]; ``candidates`` [{name, params, macs, params_separable,
macs_separable, energy_t1, rank, convertible}]; ``excluded`` [{name, reason}]. Added by the exact-counts
work: ``model.assumed_dims`` ({symbol: size} taken by default: a dynamic batch is N=1),
``model.external_data_size`` (bytes, included in ``totals.file_size``), ``model.shape_source`` (null, or how
shapes inference could not resolve were found), ``totals.macs_symbolic`` (null, or {expression,
valid_when, terms [{coefficient, denominator, powers {symbol: int}}], checked_at}: MACs as an exact
polynomial in the dims left symbolic), and per layer ``formula`` (the MACs spelled out with operands),
``macs_symbolic`` (the row's polynomial, or null) and ``operands`` [{name, shape, kind, role, elements}]
(what each input counts as: param, buffer, config, literal, constant or activation).
Every count is an int (elements, MACs, FLOPs, bytes); floats appear only for energies, shares and ratios.
``layers`` always lists every layer in model order and ``candidates`` every candidate, whatever the view;
``--depth``/``--sort``/``--top`` add a ``view`` object: the options (``depth``, ``sort``, ``top``), the
view's ``rows`` (name, op, level, layers, params, macs, unknown, share: as the table shows them, the N
heaviest with ``--top``) and ``candidates`` (the names of the candidates the view keeps).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from sepconv_cli.core.records import (
    SCHEMA_VERSION,
    Candidate,
    Layer,
    Report,
    Shape,
    SymbolicMacs,
    TensorInfo,
)
from sepconv_cli.render import CONVENTIONS, RenderOptions
from sepconv_cli.render.candidates import candidate_views, excluded_by_reason, summary, top_candidates
from sepconv_cli.render.views import ViewOptions, layer_view


def _shape(shape: Shape | None) -> list | None:
    return None if shape is None else list(shape)


def _shapes(values: tuple[Shape | None, ...]) -> list:
    return [_shape(s) for s in values]


def _tensor(info: TensorInfo) -> dict:
    return {"name": info.name, "shape": _shape(info.shape), "dtype": info.dtype}


def _layer(layer: Layer) -> dict:
    conv = None
    if layer.conv is not None:
        conv = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(layer.conv).items()}
    return {
        "name": layer.name, "op": layer.op, "params": layer.params, "buffers": layer.buffers,
        "macs": layer.macs, "flops": layer.flops,
        "input_shapes": _shapes(layer.input_shapes), "output_shapes": _shapes(layer.output_shapes),
        "path": list(layer.path), "note": layer.note, "conv": conv,
        "weight_constant": layer.weight_constant, "bn_follows": layer.bn_follows,
        "formula": layer.formula, "macs_symbolic": layer.macs_symbolic or None,
        "operands": [{"name": o.name, "shape": _shape(o.shape), "kind": o.kind, "role": o.role,
                      "elements": o.elements} for o in layer.operands],
    }


def _candidate(cand: Candidate, shares: dict) -> dict:
    fields = asdict(cand)
    fields["macs_saved"] = cand.macs_saved
    fields["params_saved"] = cand.params_saved
    fields.update(shares)
    return fields


def _candidates(report: Report) -> list[dict]:
    return [_candidate(v.cand, {"macs_share_saved": v.macs_share_t1, "params_share_saved": v.params_share_t1,
                                "macs_share_saved_at_rank": v.macs_share_rank,
                                "params_share_saved_at_rank": v.params_share_rank})
            for v in candidate_views(report)]


def _summary(report: Report) -> list[dict]:
    out = []
    for outcome in summary(report):
        params_ratio, macs_ratio = outcome.ratios(report)
        out.append({"label": outcome.label, "converted": outcome.converted, "params": outcome.params,
                    "macs": outcome.macs, "flops": 2 * outcome.macs,
                    "params_ratio": params_ratio, "macs_ratio": macs_ratio})
    return out


def _totals(report: Report) -> dict:
    return {
        "params": report.params, "macs": report.macs, "flops": report.flops, "buffers": report.buffers,
        "weight_bytes": dict(report.weight_bytes), "weight_bytes_total": report.total_weight_bytes,
        "file_size": report.model.file_size, "layers": len(report.layers),
        "unknown_rows": len(report.unknown_rows), "macs_symbolic": _symbolic(report.macs_symbolic),
    }


def _symbolic(macs: SymbolicMacs | None) -> dict | None:
    """``{"expression", "valid_when", "terms": [{"coefficient", "denominator", "powers"}], "checked_at"}``."""
    if macs is None:
        return None
    return {"expression": macs.expression, "valid_when": macs.valid_when,
            "terms": [{"coefficient": t.coefficient, "denominator": t.denominator, "powers": dict(t.powers)}
                      for t in macs.terms],
            "checked_at": dict(macs.checked_at)}


def _view(report: Report, view: ViewOptions) -> dict | None:
    if view == ViewOptions():
        return None
    rows = [{"name": r.name, "op": r.op, "level": r.level, "layers": r.count, "params": r.params,
             "macs": r.macs, "unknown": r.unknown, "share": r.share} for r in layer_view(report, view)]
    return {"depth": view.depth, "sort": view.sort.value, "top": view.top, "rows": rows,
            "candidates": [c.name for c in top_candidates(report, view.top)]}


def report_dict(report: Report, view: ViewOptions | None = None) -> dict:
    """The report as plain JSON-ready data (see module docstring for the fixed keys)."""
    model = report.model
    data = {
        "schema_version": SCHEMA_VERSION,
        "conventions": dict(CONVENTIONS),
        "model": {"path": model.path, "format": model.format, "file_size": model.file_size,
                  "inputs": [_tensor(t) for t in model.inputs], "outputs": [_tensor(t) for t in model.outputs],
                  **({"device": model.device} if model.device else {}),
                  "assumed_dims": dict(model.assumed_dims), "external_data_size": model.external_data_size,
                  "shape_source": model.shape_source or None},
        "totals": _totals(report),
        "extra": dict(report.extra),
        "layers": [_layer(layer) for layer in report.layers],
        "uncounted": [{"op": u.op, "count": u.count, "names": list(u.names)} for u in report.uncounted],
        "unknown_rows": [{"name": x.name, "op": x.op, "note": x.note} for x in report.unknown_rows],
        "energy_target": report.energy_target,
        "candidates": _candidates(report),
        "excluded": [{"name": e.name, "reason": e.reason} for e in report.excluded],
        "excluded_by_reason": [{"reason": r, "names": list(n)} for r, n in excluded_by_reason(report)],
        "summary": _summary(report),
        "warnings": list(report.warnings),
        "notes": list(report.notes),
    }
    rows = _view(report, view or ViewOptions())
    if rows is not None:
        data["view"] = rows
    return data


def render_json(report: Report, options: RenderOptions) -> str:
    """Indented JSON text with a trailing newline; key order is stable."""
    return json.dumps(report_dict(report, options.view), indent=2, ensure_ascii=False) + "\n"
