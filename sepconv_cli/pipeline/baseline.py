"""Read a baseline: a report written by ``sepconv analyze --format json`` (DESIGN §3 keys).

Only the figures baseline growth compares are kept: ``params``, ``macs`` (elements, MACs) and, when the
report carries them, ``file-size`` and ``weight-bytes`` (bytes). Anything that is not such a report, or
has another ``schema_version``, is a ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from sepconv_cli.core.budget import not_counted
from sepconv_cli.core.records import SCHEMA_VERSION
from sepconv_cli.errors import ConfigError

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


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: baseline not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read baseline ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: baseline is not JSON (line {exc.lineno}: {exc.msg})") from None


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
    return float(value)


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
