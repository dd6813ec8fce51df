"""Resolve and call a model entry point: ``package.module:factory`` or ``path/to/file.py:factory``.

``factory`` may be a dotted attribute path (``models:Zoo.resnet``). ``--kwargs`` is a JSON object passed
as keyword arguments. Modules are looked up from the current directory first, as ``python -m`` does.
Every failure (module not found, attribute missing, bad JSON, the factory raising,
a non-``nn.Module`` result) becomes a one-line ``InputError``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from sepconv_cli.errors import InputError
from sepconv_cli.files import require_regular


def parse_kwargs(text: str, source: str) -> dict[str, Any]:
    """``'{"depth": 18}'`` -> ``{"depth": 18}``; empty -> ``{}``."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: --kwargs is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(value, dict):
        raise InputError(f"{source}: --kwargs must be a JSON object, got {type(value).__name__}")
    return value


def _import_file(path: str, source: str) -> Any:
    if not os.path.lexists(path):
        raise InputError(f"{source}: no such file {path!r}")
    require_regular(path, "Python file")  # a FIFO would block the import forever
    name = "sepconv_entry_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - user code: any failure is an input problem
        sys.modules.pop(name, None)
        raise InputError(f"{source}: importing {path} failed: {type(exc).__name__}: {_line(exc)}") from None
    return module


def cwd_importable() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m`` does, so modules next to the
    user (``models:resnet``, classes a trusted pickle names) import."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _import_module(name: str, source: str) -> Any:
    cwd_importable()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise InputError(f"{source}: module {exc.name or name!r} not found") from None
    except Exception as exc:  # noqa: BLE001 - user code: any failure is an input problem
        raise InputError(f"{source}: importing {name} failed: {type(exc).__name__}: {_line(exc)}") from None


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def resolve(source: str) -> Callable[..., Any]:
    """The callable named by ``source`` (``module:attr`` or ``file.py:attr``)."""
    target, sep, attr = source.rpartition(":")
    if not sep or not target or not attr:
        raise InputError(f"{source}: expected package.module:factory or path/to/file.py:factory")
    module = _import_file(target, source) if target.endswith(".py") else _import_module(target, source)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{source}: {target} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"{source}: {attr!r} is not callable")
    return obj


def build(source: str, kwargs_json: str = "", device: str | None = None) -> Any:
    """Call the factory (inside ``torch.device(device)`` when given) and check it returns an ``nn.Module``."""
    import torch

    factory = resolve(source)
    kwargs = parse_kwargs(kwargs_json, source)
    try:
        if device:
            with torch.device(device):
                model = factory(**kwargs)
        else:
            model = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the factory is user code
        raise InputError(f"{source}: factory raised {type(exc).__name__}: {_line(exc)}") from exc
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{source}: factory returned {type(model).__name__}, expected a torch.nn.Module")
    return model
