"""Loaders: a model path or entry point -> ``LoadedModel`` (a ``Report`` plus a weights handle).

Formats are detected by content (never by extension alone) in ``detect.py``; each format maps to a
loader function named by a ``"module:function"`` string, imported lazily so that reading an ONNX file
never imports torch.
"""

from __future__ import annotations

from sepconv_cli.lazy import resolve
from typing import Callable

from sepconv_cli.errors import InputError
from sepconv_cli.loaders.base import LoadedModel, LoadOptions
from sepconv_cli.loaders.detect import detect_format

# format name -> "module:function" taking (source: str, options: LoadOptions) -> LoadedModel
LOADERS: dict[str, str] = {
    "onnx": "sepconv_cli.loaders.onnx_loader:load_onnx",
    "pt2": "sepconv_cli.loaders.torch_loader:load_pt2",
    "torchscript": "sepconv_cli.loaders.torch_loader:load_torchscript",
    "state_dict": "sepconv_cli.loaders.torch_loader:load_state_dict",
    "pickle": "sepconv_cli.loaders.torch_loader:load_pickle",
    "entrypoint": "sepconv_cli.loaders.torch_loader:load_entrypoint",
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


__all__ = ["LOADERS", "LoadOptions", "LoadedModel", "detect_format", "load", "loader_for"]
