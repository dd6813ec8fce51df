"""Read a report back from `sepconv analyze --format json` output, so that `diff` compares a recorded
report (a baseline from the main branch) with a model or another report.

Only what a comparison needs comes back: the model (path, format, file size, inputs, outputs), totals
(params, buffers, weight bytes) and every layer (name, op, shapes, params, MACs, path, conv geometry).
Units as recorded: elements, MACs, bytes. A file that is not such a report is a ``InputError`` naming it.
"""

from __future__ import annotations

import json
from typing import Any

from sepconv_cli.core.records import SCHEMA_VERSION, ConvSpec, Layer, ModelInfo, Report, TensorInfo
from sepconv_cli.errors import InputError


def is_report_file(path: str) -> bool:
    """True when ``path`` starts like a JSON object (a recorded report, not a model)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(64).lstrip()[:1] == b"{"
    except OSError:
        return False


def _shape(value: Any) -> tuple | None:
    return None if value is None else tuple(value)


def _conv(data: dict | None) -> ConvSpec | None:
    if not data:
        return None
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                              if k in ConvSpec.__dataclass_fields__}
    return ConvSpec(**fields)


def _layer(row: dict) -> Layer:
    return Layer(name=str(row["name"]), op=str(row["op"]),
                 input_shapes=tuple(_shape(s) for s in row.get("input_shapes", [])),
                 output_shapes=tuple(_shape(s) for s in row.get("output_shapes", [])),
                 params=int(row.get("params") or 0), buffers=int(row.get("buffers") or 0), macs=row.get("macs"),
                 note=str(row.get("note", "")), path=tuple(row.get("path", [])), conv=_conv(row.get("conv")),
                 weight_constant=bool(row.get("weight_constant", True)), bn_follows=row.get("bn_follows"))


def _tensor(row: dict) -> TensorInfo:
    return TensorInfo(str(row["name"]), _shape(row.get("shape")), str(row.get("dtype", "float32")))


def report_from_dict(data: dict, source: str) -> Report:
    """The ``Report`` a JSON report describes (``source`` names the file in errors)."""
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION or "layers" not in data:
        raise InputError(f"{source}: not a sepconv report (expected `sepconv analyze --format json` output "
                         f"with schema_version {SCHEMA_VERSION})")
    try:
        model, totals = data["model"], data["totals"]
        info = ModelInfo(path=str(model["path"]), format=str(model["format"]),
                         file_size=int(model.get("file_size") or 0),
                         inputs=tuple(_tensor(t) for t in model.get("inputs", [])),
                         outputs=tuple(_tensor(t) for t in model.get("outputs", [])))
        weight_bytes = tuple((str(k), int(v)) for k, v in (totals.get("weight_bytes") or {}).items())
        return Report(model=info, layers=tuple(_layer(row) for row in data["layers"]), params=int(totals["params"]),
                      buffers=int(totals.get("buffers") or 0), weight_bytes=weight_bytes)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{source}: malformed sepconv report ({type(exc).__name__}: {exc})") from None


def read_json(path: str, what: str = "") -> Any:
    """The JSON document at ``path``; an InputError naming the file (and ``what`` it should be) when it
    cannot be read or is not JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise InputError(f"{path}: cannot read{' ' + what if what else ''} ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {what + ' is not' if what else 'not'} JSON ({exc})") from None


def read_report(path: str) -> Report:
    """Read the JSON report at ``path``."""
    return report_from_dict(read_json(path), path)
