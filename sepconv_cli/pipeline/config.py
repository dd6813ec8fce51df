"""Budget configuration: discovery, parsing and precedence for ``sepconv check``.

Where the configuration comes from, first match wins:

1. ``--config PATH`` (a ``pyproject.toml`` with ``[tool.sepconv]`` or a ``sepconv.toml``);
2. walking up from the current directory: ``sepconv.toml``, then a ``pyproject.toml`` that has a
   ``[tool.sepconv]`` table, in each folder (as ruff and mypy look for theirs).

Layout (``sepconv.toml`` holds the same keys at top level)::

    [tool.sepconv]                      # defaults for every model
    max-params = "5M"
    max-growth = "5%"

    [tool.sepconv.models."samples/*.onnx"]   # a path or a glob, relative to the config file
    max-macs = "200M"
    input-shape = "1x3x32x32"
    baseline = "baselines/vgg.json"

Keys are the ``check`` flag names without the dashes. Precedence: command-line flags, then every model
table whose pattern matches (in file order), then the defaults. Unknown keys (with the nearest known one
suggested), malformed TOML, bad values and globs that match no file are ``ConfigError`` naming the file
and the key.

The file is untrusted input (a pull request can change it): it is read only when it is a regular file
of at most 16 MiB, ``**`` globs never follow symlinked folders (so a symlink cycle cannot make them
endless), and a table naming an entry point (``"pkg.mod:build"``, Python code to import and run) is
refused unless the command line opts in with ``--trust-code``.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from sepconv_cli.backends.detect import is_entrypoint
from sepconv_cli.core.budget import METRICS, budgets_from_mapping
from sepconv_cli.core.checks import Budget
from sepconv_cli.core.units import UnitError, parse_fraction
from sepconv_cli.errors import ConfigError, UsageError
from sepconv_cli.files import read_bounded
from sepconv_cli.pipeline.globs import GLOB_CHARS, expand_glob

SETTING_KEYS = ("input-shape", "baseline", "max-growth")
DEDICATED_FILE = "sepconv.toml"


@dataclass(frozen=True)
class Settings:
    """What applies to one model: budgets by metric, input shapes (``--input-shape`` texts), a baseline
    path and the allowed growth over it (a fraction; None = not given). ``origins`` names, for the
    settings a config file gave, the file and key (``"sepconv.toml: key 'baseline' in the top level"``)."""

    budgets: dict[str, Budget] = field(default_factory=dict)
    input_shapes: tuple[str, ...] = ()
    baseline: str | None = None
    max_growth: float | None = None
    origins: dict[str, str] = field(default_factory=dict)

    def merged(self, over: Settings) -> Settings:
        """These settings with every value ``over`` gives taking precedence."""
        return Settings(
            budgets={**self.budgets, **over.budgets},
            input_shapes=over.input_shapes or self.input_shapes,
            baseline=over.baseline or self.baseline,
            max_growth=self.max_growth if over.max_growth is None else over.max_growth,
            origins=_merged_origins(self, over),
        )


def _merged_origins(under: Settings, over: Settings) -> dict[str, str]:
    """Origins of the merged settings: a value ``over`` gives brings its origin (none from flags)."""
    given = {"baseline": over.baseline is not None, "max-growth": over.max_growth is not None}
    kept = {k: v for k, v in under.origins.items() if not given.get(k)}
    return {**kept, **over.origins}


@dataclass(frozen=True)
class ModelEntry:
    """One ``models."<pattern>"`` table: a path or glob relative to ``base_dir`` and its settings."""

    pattern: str
    base_dir: str
    settings: Settings


@dataclass(frozen=True)
class Config:
    """A parsed configuration (``path`` None when none was found)."""

    path: str | None = None
    defaults: Settings = field(default_factory=Settings)
    models: tuple[ModelEntry, ...] = ()


@dataclass(frozen=True)
class Target:
    """A model to check and the settings that apply to it."""

    path: str
    settings: Settings


def _read_toml(path: str) -> dict[str, Any]:
    data = read_bounded(path, what="config file", error=ConfigError)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed TOML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed TOML (tables or arrays nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: malformed TOML ({str(exc).splitlines()[0]})") from None


def _table_of(path: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The sepconv table of a parsed file: ``[tool.sepconv]`` in pyproject.toml, the whole sepconv.toml."""
    if os.path.basename(path) == "pyproject.toml":
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise ConfigError(f"{path}: key 'tool' must be a table, got {type(tool).__name__}")
        table = tool.get("sepconv")
        if table is not None and not isinstance(table, dict):
            raise ConfigError(f"{path}: key 'tool.sepconv' must be a table, got {type(table).__name__}")
        return table
    return data


def find_config(start: str) -> str | None:
    """The nearest ``sepconv.toml`` or ``pyproject.toml`` with ``[tool.sepconv]`` at or above ``start``."""
    folder = os.path.abspath(start)
    while True:
        dedicated = os.path.join(folder, DEDICATED_FILE)
        if os.path.lexists(dedicated):  # a FIFO or a dangling link is refused by name, never skipped
            return dedicated
        pyproject = os.path.join(folder, "pyproject.toml")
        if os.path.lexists(pyproject) and _table_of(pyproject, _read_toml(pyproject)) is not None:
            return pyproject
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _shapes(path: str, where: str, raw: Any) -> tuple[str, ...]:
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{path}: key 'input-shape' in {where} must be a string or a list of strings")
    return tuple(values)


def _baseline(path: str, where: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{path}: key 'baseline' in {where} must be a path string")
    return os.path.join(os.path.dirname(path), raw)


def settings_from_table(table: dict[str, Any], path: str, where: str) -> Settings:
    """Settings from one TOML table; ``where`` names the table in errors (``[tool.sepconv]``)."""
    unknown = [k for k in table if k not in METRICS and k not in SETTING_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} in {where}{did_you_mean(unknown[0])}")
    budgets = budgets_from_mapping({k: v for k, v in table.items() if k in METRICS}, f"{path} {where}")
    settings = Settings(budgets=budgets, origins={key: f"{path}: key '{key}' in {where}"
                                                  for key in ("baseline", "max-growth") if key in table})
    if "input-shape" in table:
        settings = replace(settings, input_shapes=_shapes(path, where, table["input-shape"]))
    if "baseline" in table:
        settings = replace(settings, baseline=_baseline(path, where, table["baseline"]))
    if "max-growth" in table:
        settings = replace(settings, max_growth=parse_growth(table["max-growth"], f"{path}: key 'max-growth' in {where}"))
    return settings


def did_you_mean(key: str) -> str:
    """``" (did you mean 'max-params'?)"`` for a near miss of a known key, else the list of known keys."""
    known = (*METRICS, *SETTING_KEYS)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def parse_growth(raw: Any, where: str) -> float:
    """``"5%"`` -> 0.05; errors start with ``where`` (a flag or a file and key)."""
    try:
        return parse_fraction(raw)
    except UnitError as exc:
        error = UsageError if where.startswith("--") else ConfigError
        raise error(f"{where}: {exc}") from None


def load_config(path: str) -> Config:
    """Parse the config file at ``path`` (a missing ``[tool.sepconv]`` in a pyproject is an error)."""
    table = _table_of(path, _read_toml(path))
    top = "[tool.sepconv]" if os.path.basename(path) == "pyproject.toml" else "the top level"
    if table is None:
        raise ConfigError(f"{path}: no [tool.sepconv] table")
    models = table.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ConfigError(f"{path}: key 'models' must hold one table per model path or glob")
    defaults = settings_from_table({k: v for k, v in table.items() if k != "models"}, path, top)
    base = os.path.dirname(os.path.abspath(path))
    entries = tuple(ModelEntry(pattern, base, settings_from_table(t, path, f'models."{pattern}"'))
                    for pattern, t in models.items())
    return Config(path=path, defaults=defaults, models=entries)


def discover(explicit: str | None, cwd: str) -> Config:
    """The config from ``--config`` or found by walking up from ``cwd``; an empty Config if none."""
    path = explicit or find_config(cwd)
    return load_config(path) if path else Config()


def _display(path: str) -> str:
    """A path relative to the current directory when it lies below it (shorter in reports)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _expand(entry: ModelEntry) -> list[str]:
    pattern = os.path.join(entry.base_dir, entry.pattern)
    if os.path.exists(pattern):  # before globbing: a literal name may contain [ ]
        found = [pattern]
    elif GLOB_CHARS & set(entry.pattern):
        found = expand_glob(pattern)
    else:
        return [entry.pattern] if is_entrypoint(entry.pattern) else []
    return [_display(p) for p in found]


def _matches(entry: ModelEntry, model: str) -> bool:
    if not os.path.exists(model):
        return entry.pattern == model
    full = os.path.abspath(model)
    return fnmatch.fnmatch(full, os.path.join(entry.base_dir, entry.pattern)) or full == os.path.abspath(
        os.path.join(entry.base_dir, entry.pattern))


def resolve_targets(config: Config, models: Sequence[str], cli: Settings,
                    trust_code: bool = False) -> tuple[Target, ...]:
    """Models to check with their merged settings: ``models`` from the command line (matched against
    the config's model tables) or, when none is given, every file the config's tables name. A table
    naming an entry point is refused unless ``trust_code`` (``--trust-code``): the config file alone
    must not make ``check`` import and run Python code."""
    expanded = _expand_all(config)  # a table matching no file is an error even when MODELs are given
    if not models and not trust_code:
        _refuse_entrypoints(config)
    if models:
        return tuple(Target(m, _settings_for(config, m).merged(cli)) for m in models)
    if not config.models:
        where = f" and {config.path} lists no models" if config.path else " and no sepconv config was found"
        raise UsageError(f"no MODEL given{where}")
    ordered: dict[str, Settings] = {}
    for entry, found in expanded:
        for path in found:
            ordered[path] = ordered.get(path, config.defaults).merged(entry.settings)
    return tuple(Target(path, settings.merged(cli)) for path, settings in ordered.items())


def _refuse_entrypoints(config: Config) -> None:
    for entry in config.models:
        pattern = os.path.join(entry.base_dir, entry.pattern)
        if not os.path.lexists(pattern) and not GLOB_CHARS & set(entry.pattern) and is_entrypoint(entry.pattern):
            raise ConfigError(f'{config.path}: key models."{entry.pattern}" names an entry point, which imports and '
                              "runs Python code; add --trust-code to the command line to allow it (or give it as "
                              "a MODEL argument)")


def _expand_all(config: Config) -> list[tuple[ModelEntry, list[str]]]:
    """Every model table with the files it names; ``ConfigError`` for a table that names none."""
    out = []
    for entry in config.models:
        found = _expand(entry)
        if not found:
            raise ConfigError(f'{config.path}: key models."{entry.pattern}" matches no file')
        out.append((entry, found))
    return out


def _settings_for(config: Config, model: str) -> Settings:
    settings = config.defaults
    for entry in config.models:
        if _matches(entry, model):
            settings = settings.merged(entry.settings)
    return settings
