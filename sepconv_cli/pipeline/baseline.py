"""Read a baseline: a report written by ``sepconv analyze --format json`` (DESIGN §3 keys).

Only the figures baseline growth compares are kept: ``params``, ``macs`` (elements, MACs) and, when the
report carries them, ``file-size`` and ``weight-bytes`` (bytes). Anything that is not such a report, or
has another ``schema_version``, is a ``ConfigError`` naming the file and the key.

A baseline is untrusted input (a pull request can edit it): it is read only when it is a regular file of
at most 16 MiB; ``NaN``, ``Infinity`` and numbers too large for a float (``1e400``) are refused, since an
infinite baseline would let any growth pass; and a baseline recorded from a model of another file name
is refused (``check_recorded_model``) unless ``--baseline-any``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from sepconv_cli.core.budget import not_counted
from sepconv_cli.core.records import SCHEMA_VERSION
from sepconv_cli.errors import ConfigError
from sepconv_cli.files import read_bounded

# DESIGN §3: keys every analyze JSON report carries, with the type each must have.
REQUIRED_TOP: dict[str, type] = {
    "schema_version": int, "model": dict, "totals": dict, "layers": list,
    "uncounted": list, "candidates": list, "excluded": list,
}
REQUIRED_MODEL = ("path", "format")
REQUIRED_TOTALS = ("params", "macs", "flops", "buffers")


@dataclass(frozen=True)
class Baseline:
    """A recorded report: where it was read from, which model it describes, and its figures.

    ``unknown`` maps a figure to why the recorded value is incomplete (MACs of rows it could not count).
    """

    source: str
    model_path: str
    figures: dict[str, float] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)

    def missing(self, names) -> tuple[str, ...]:
        """The growth figures in ``names`` this baseline does not record."""
        return tuple(n for n in names if n not in self.figures)

    def describes(self, path: str) -> bool:
        """Whether the recorded model is the file at ``path``, whatever folder either was named from.

        An absolute recorded path must be the same file. A relative one was relative to an unknown
        folder, so it matches when ``path``'s trailing components are the recorded ones (leading ``..``
        dropped): ``models/a.onnx`` describes ``/repo/models/a.onnx`` from the repo or below it.
        """
        if os.path.isabs(self.model_path):
            both = os.path.exists(path) and os.path.exists(self.model_path)
            return os.path.samefile(path, self.model_path) if both else os.path.abspath(path) == self.model_path
        recorded = [p for p in os.path.normpath(self.model_path).split(os.sep) if p != ".."]
        actual = os.path.abspath(path).split(os.sep)
        return bool(recorded) and actual[-len(recorded):] == recorded


class _NotFinite(ValueError):
    """A JSON number that is not a finite float (``NaN``, ``Infinity``, ``1e400``)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


def _no_constant(text: str) -> float:
    raise _NotFinite(text)


def _read_json(path: str) -> Any:
    data = read_bounded(path, what="baseline", error=ConfigError)
    try:
        return json.loads(data.decode("utf-8"), parse_float=_finite, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read baseline ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: baseline is not JSON (line {exc.lineno}: {exc.msg})") from None
    except _NotFinite as exc:
        raise ConfigError(f"{path}: baseline holds the number {exc}, which is not finite") from None
    except RecursionError:
        raise ConfigError(f"{path}: baseline is not a sepconv report (JSON nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: baseline is not a sepconv report ({str(exc).splitlines()[0]})") from None


def _check_keys(path: str, data: Any) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a sepconv report (expected a JSON object from `sepconv analyze --format json`)")
    if "schema_version" not in data:
        raise ConfigError(f"{path}: not a sepconv report (key 'schema_version' missing)")
    if data["schema_version"] != SCHEMA_VERSION:
        raise ConfigError(f"{path}: key 'schema_version' is {data['schema_version']!r}, "
                          f"this sepconv reads {SCHEMA_VERSION}")
    for key, kind in REQUIRED_TOP.items():
        if not isinstance(data.get(key), kind):
            raise ConfigError(f"{path}: not a sepconv report (key {key!r} missing or not a {kind.__name__})")
    for section, keys in (("model", REQUIRED_MODEL), ("totals", REQUIRED_TOTALS)):
        for key in keys:
            if key not in data[section]:
                raise ConfigError(f"{path}: not a sepconv report (key '{section}.{key}' missing)")


def _number(path: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dict):  # weight bytes by dtype
        return sum(_number(path, f"{key}.{k}", v) or 0.0 for k, v in value.items())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{path}: key {key!r} is {value!r}, expected a non-negative number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{path}: key {key!r} is too large to be a count")
    return number


def _first(data: dict, *paths: str) -> tuple[str, Any]:
    """The first ``section.key`` path present in ``data`` and its value."""
    for dotted in paths:
        node: Any = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return dotted, node
    return paths[0], None


def _figures(path: str, data: dict) -> dict[str, float]:
    sources = {
        "params": ("totals.params",),
        "macs": ("totals.macs",),
        "file-size": ("model.file_size", "totals.file_size"),
        "weight-bytes": ("totals.weight_bytes", "weight_bytes", "totals.weight_bytes_total"),
    }
    figures: dict[str, float] = {}
    for name, paths in sources.items():
        key, raw = _first(data, *paths)
        value = _number(path, key, raw)
        if value is not None:
            figures[name] = value
    return figures


def _unknown(path: str, data: dict) -> dict[str, str]:
    rows = data["totals"].get("unknown_rows")
    reason = not_counted(rows) if isinstance(rows, int) and not isinstance(rows, bool) else ""
    return {"macs": f"baseline {path}: {reason}"} if reason else {}


def load_baseline(path: str, origin: str | None = None) -> Baseline:
    """Read and validate the baseline report at ``path``; ``origin`` (the config file and key that named
    it) starts the message when the file is missing."""
    try:
        data = _read_json(path)
    except ConfigError as exc:
        if origin and not os.path.lexists(path):
            raise ConfigError(f"{origin}: {path}: baseline not found") from None
        raise exc
    _check_keys(path, data)
    return Baseline(source=path, model_path=str(data["model"]["path"]), figures=_figures(path, data),
                    unknown=_unknown(path, data))


def check_recorded_model(base: Baseline, model: str) -> None:
    """``ConfigError`` when ``base`` was recorded from a model of another file name than ``model`` (a
    baseline of another model would compare unrelated figures); ``--baseline-any`` skips this check."""
    recorded = os.path.basename(os.path.normpath(base.model_path)) if base.model_path else ""
    if recorded and recorded != os.path.basename(os.path.normpath(model)):
        raise ConfigError(f"{base.source}: recorded from {base.model_path}, not {model}; pass --baseline-any to "
                          "compare with it anyway")
