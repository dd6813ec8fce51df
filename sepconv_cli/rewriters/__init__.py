"""Rewriters: (LoadedModel, Plan) -> converted model, per source format.

Each format maps to a ``Backend`` object named by a ``"module:attribute"`` string, imported lazily
(the ONNX backend never imports torch).
"""

from __future__ import annotations

from sepconv_cli.lazy import resolve

from sepconv_cli.errors import UsageError
from sepconv_cli.rewriters.base import Backend, Converted, ConvertOptions

BACKENDS: dict[str, str] = {
    "onnx": "sepconv_cli.rewriters.onnx_rewriter:BACKEND",
    "pt2": "sepconv_cli.rewriters.torch_rewriter:PT2_BACKEND",
    "state_dict": "sepconv_cli.rewriters.torch_rewriter:MODULE_BACKEND",
    "pickle": "sepconv_cli.rewriters.torch_rewriter:MODULE_BACKEND",
    "entrypoint": "sepconv_cli.rewriters.torch_rewriter:MODULE_BACKEND",
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


__all__ = ["BACKENDS", "Backend", "ConvertOptions", "Converted", "backend_for"]
