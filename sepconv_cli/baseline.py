"""Read a baseline: a report written by ``sepconv analyze --format json`` (DESIGN §3 keys).

Only the figures baseline growth compares are kept: ``params``, ``macs`` (elements, MACs) and, when the
report carries them, ``file-size`` and ``weight-bytes`` (bytes). Anything that is not such a report, or
has another ``schema_version``, is a ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sepconv_cli.errors import ConfigError
from sepconv_cli.records import SCHEMA_VERSION

# DESIGN §3: keys every analyze JSON report carries, with the type each must have.
REQUIRED_TOP: dict[str, type] = {
    "schema_version": int, "model": dict, "totals": dict, "layers": list,
    "uncounted": list, "candidates": list, "excluded": list,
}
REQUIRED_MODEL = ("path", "format")
REQUIRED_TOTALS = ("params", "macs", "flops", "buffers")


@dataclass(frozen=True)
class Baseline:
    """A recorded report: where it was read from, which model it describes, and its figures."""

    source: str
    model_path: str
    figures: dict[str, float] = field(default_factory=dict)

    def missing(self, names) -> tuple[str, ...]:
        """The growth figures in ``names`` this baseline does not record."""
        return tuple(n for n in names if n not in self.figures)


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


def load_baseline(path: str) -> Baseline:
    """Read and validate the baseline report at ``path``."""
    data = _read_json(path)
    _check_keys(path, data)
    return Baseline(source=path, model_path=str(data["model"]["path"]), figures=_figures(path, data))
