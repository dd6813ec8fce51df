"""The backend registry: format -> loader, rewrite backend, or the reason it is refused.

Loaders turn a model path or entry point into a ``LoadedModel`` (a ``Report`` plus a weights handle).

Formats are detected by content (never by extension alone) in ``detect.py``; each format maps to a
loader function named by a ``"module:function"`` string, imported lazily so that reading an ONNX file
never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

from sepconv_cli.backends.base import (
    Backend,
    Converted,
    ConvertOptions,
    LoadedModel,
    LoadOptions,
)
from sepconv_cli.backends.detect import detect_format
from sepconv_cli.errors import InputError, UsageError
from sepconv_cli.lazy import resolve

# format name -> "module:function" taking (source: str, options: LoadOptions) -> LoadedModel
LOADERS: dict[str, str] = {
    "onnx": "sepconv_cli.backends.onnx.loader:load_onnx",
    "pt2": "sepconv_cli.backends.torch.loader:load_pt2",
    "torchscript": "sepconv_cli.backends.torch.loader:load_torchscript",
    "state_dict": "sepconv_cli.backends.torch.loader:load_state_dict",
    "pickle": "sepconv_cli.backends.torch.loader:load_pickle",
    "entrypoint": "sepconv_cli.backends.torch.loader:load_entrypoint",
}


def loader_for(fmt: str) -> Callable[[str, LoadOptions], LoadedModel]:
    """The loader function registered for ``fmt``."""
    try:
        target = LOADERS[fmt]
    except KeyError:
        raise InputError(f"no loader for format {fmt!r}") from None
    return resolve(target)


def load(source: str, options: LoadOptions | None = None) -> LoadedModel:
    """Detect the format of ``source`` and load it."""
    options = options or LoadOptions()
    fmt = detect_format(source, options)
    return loader_for(fmt)(source, options)


BACKENDS: dict[str, str] = {
    "onnx": "sepconv_cli.backends.onnx.rewriter:BACKEND",
    "pt2": "sepconv_cli.backends.torch.rewriter:PT2_BACKEND",
    "state_dict": "sepconv_cli.backends.torch.rewriter:MODULE_BACKEND",
    "pickle": "sepconv_cli.backends.torch.rewriter:MODULE_BACKEND",
    "entrypoint": "sepconv_cli.backends.torch.rewriter:MODULE_BACKEND",
}

REFUSED: dict[str, str] = {
    "torchscript": (
        "TorchScript models cannot be rewritten in place; export the model to ONNX "
        "(torch.onnx.export) or .pt2 (torch.export) and convert that file"
    ),
}


def backend_for(fmt: str) -> Backend:
    """The rewrite backend for a loaded model's format (UsageError with the supported route if none)."""
    if fmt in REFUSED:
        raise UsageError(REFUSED[fmt])
    try:
        target = BACKENDS[fmt]
    except KeyError:
        raise UsageError(f"cannot convert models of format {fmt!r}") from None
    return resolve(target)


__all__ = ["BACKENDS", "LOADERS", "REFUSED", "Backend", "ConvertOptions", "Converted", "LoadOptions", "LoadedModel",
           "backend_for", "detect_format", "load", "loader_for"]
