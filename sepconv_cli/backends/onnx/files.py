"""ONNX files in and out for the rewriter: 2 GB limit, what onnxruntime opens, validation by path."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import onnx

from sepconv_cli.backends.onnx import edit as g
from sepconv_cli.errors import RewriteError

TWO_GB = 2**31 - 1


def too_big(model: onnx.ModelProto) -> bool:
    """True when the model cannot be serialised as one protobuf (2 GB limit)."""
    try:
        return model.ByteSize() > TWO_GB
    except ValueError:
        return True


def session_source(model: Any, folder: str) -> Any:
    """What onnxruntime should open: a path as is, small models as bytes, large ones saved in ``folder``."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    if not too_big(model) and not g.has_external_data(model):
        return model.SerializeToString()
    path = os.path.join(folder, "model.onnx")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save_model(copy, path, save_as_external_data=True, location="model.onnx.data")
    return path


def validate_path(path: str) -> None:
    """Full ``onnx.checker`` check and strict shape inference of the file at ``path`` (RewriteError)."""
    try:
        onnx.checker.check_model(path, full_check=True)
        with tempfile.TemporaryDirectory(prefix="sepconv-infer-") as tmp:
            onnx.shape_inference.infer_shapes_path(path, os.path.join(tmp, "inferred.onnx"), strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RewriteError(f"{path}: converted model fails ONNX validation: {first}") from None


def is_valid(path: str) -> bool:
    """True when the file at ``path`` passes :func:`validate_path` (a source that already fails is not
    held against its conversion)."""
    try:
        validate_path(path)
    except RewriteError:
        return False
    return True
