"""Lazy lookup of registry targets written as ``"package.module:attribute"``.

Registries name their implementations by string so that heavy backends (torch, onnxruntime) are
imported only when chosen.
"""

from __future__ import annotations

import importlib
from typing import Any


def resolve(target: str) -> Any:
    """Import ``package.module`` of ``"package.module:attribute"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
