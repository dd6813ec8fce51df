"""Saving converted PyTorch models, chosen by the output suffix, each checked after writing.

- ``.pt2``: ``torch.export`` (a module is exported with example inputs of ``input_shapes``; a program is
  saved as is), then reloaded with ``torch.export.load`` and run.
- ``.onnx``: ``torch.onnx.export`` (dynamo exporter), weights embedded unless over 2 GB; then
  ``onnx.checker`` (full check, by path), strict shape inference and an onnxruntime run whose outputs must match the torch
  model's to a relative L2 error of ``ONNX_TOLERANCE``.
- ``.pt`` / ``.pth``: the state_dict (``torch.save``); rebuild with ``modules.apply_manifest``.

``input_shapes`` maps input names (``None``: the only input) to shapes (ints, or strings for symbolic dims: those become dynamic
dims with example size ``SYMBOLIC_EXAMPLE``); ``None`` for a program means "its own example inputs".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sepconv_cli.backends.torch.runtime import output_names, quiet, run_native
from sepconv_cli.errors import OutputError, RewriteError, UsageError

# Relative L2 error allowed between the torch model and its ONNX export (float32 kernels differ).
ONNX_TOLERANCE = 1e-4
# Example size for a symbolic dim: 2, because torch.export specialises sizes 0 and 1.
SYMBOLIC_EXAMPLE = 2


def _is_program(native: Any) -> bool:
    import torch

    return isinstance(native, torch.export.ExportedProgram)


def _float_dtype(native: Any) -> Any:
    import torch

    params = native.state_dict.values() if _is_program(native) else native.parameters()
    for tensor in params:
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def program_examples(program: Any) -> tuple[list[str], tuple, tuple | None]:
    """A program's user input names, its example args, and ``Dim.AUTO`` on the dims it has as symbols."""
    import torch

    names = list(program.graph_signature.user_inputs)
    if not program.example_inputs:
        raise UsageError("the exported program carries no example inputs: pass --input-shape")
    args, kwargs = program.example_inputs
    if kwargs:
        raise RewriteError("programs exported with keyword inputs are not supported")
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in names:
        shape = getattr(placeholders[name].meta.get("val"), "shape", ())
        dynamic = {i: torch.export.Dim.AUTO for i, d in enumerate(shape) if not isinstance(d, int)}
        specs.append(dynamic or None)
    return names, tuple(args), (tuple(specs) if any(specs) else None)


def _sole_input_name(native: Any) -> str:
    """The name of a single-input model's input (for an unnamed ``--input-shape``)."""
    import inspect

    if _is_program(native):
        names = list(native.graph_signature.user_inputs)
    else:
        names = [p.name for p in inspect.signature(native.forward).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names[0] if names else "input"


def shape_examples(native: Any, input_shapes: Mapping[str, Any]) -> tuple[list[str], tuple, tuple | None]:
    """Names, seeded random example args and a dynamic-shape spec built from ``input_shapes``."""
    import torch

    generator = torch.Generator().manual_seed(0)
    dtype = _float_dtype(native)
    names, args, specs = [], [], []
    for key, shape in input_shapes.items():
        name = key if key is not None else _sole_input_name(native)
        if shape is None:
            raise UsageError(f"the shape of input {name!r} is unknown: pass --input-shape")
        concrete = [d if isinstance(d, int) else SYMBOLIC_EXAMPLE for d in shape]
        names.append(name)
        args.append(torch.randn(concrete, generator=generator, dtype=dtype))
        dynamic = {i: torch.export.Dim.AUTO for i, d in enumerate(shape) if not isinstance(d, int)}
        specs.append(dynamic or None)
    return names, tuple(args), (tuple(specs) if any(specs) else None)


def examples(native: Any, input_shapes: Mapping[str, Any] | None) -> tuple[list[str], tuple, tuple | None]:
    """Example inputs for exporting ``native``: from ``input_shapes``, else from the program itself."""
    if input_shapes:
        return shape_examples(native, input_shapes)
    if _is_program(native):
        return program_examples(native)
    raise UsageError("saving a .pt2 or .onnx file needs the input shape: pass --input-shape")


def _as_arrays(names: list[str], args: tuple) -> dict[str, np.ndarray]:
    return {name: arg.detach().cpu().numpy() for name, arg in zip(names, args)}


def relative_l2(reference: np.ndarray, other: np.ndarray) -> float:
    """||reference - other|| / ||reference|| (0 when both are zero)."""
    ref = np.asarray(reference, np.float64)
    diff = np.linalg.norm(ref - np.asarray(other, np.float64))
    norm = np.linalg.norm(ref)
    return float(diff / norm) if norm > 0 else float(diff)


def _check_close(expected: dict, actual: dict, what: str, tolerance: float) -> None:
    if list(expected) != list(actual):
        raise RewriteError(f"{what}: outputs {list(actual)} differ from the model's {list(expected)}")
    for name, ref in expected.items():
        err = relative_l2(ref, actual[name])
        if not np.isfinite(err) or err > tolerance:
            raise RewriteError(f"{what}: output {name!r} differs from the torch model (relative L2 {err:.3g})")


def save_pt2(native: Any, path: str, input_shapes: Mapping[str, Any] | None = None) -> None:
    """Export (modules) and save a ``.pt2``; then reload it and check it reproduces the model's outputs."""
    import torch

    names, args, dynamic = examples(native, input_shapes)
    with quiet():
        program = native if _is_program(native) else torch.export.export(native, args, dynamic_shapes=dynamic)
        torch.export.save(program, path)
        reloaded = torch.export.load(path)
        inputs = _as_arrays(names, args)
        _check_close(run_native(native, inputs), run_native(reloaded, inputs), f"{path}: reloaded program",
                     ONNX_TOLERANCE)


def save_onnx(native: Any, path: str, input_shapes: Mapping[str, Any] | None = None) -> None:
    """Export to ONNX (dynamo), check the file in full, and compare onnxruntime with torch outputs."""
    import onnx
    import onnxruntime
    import torch

    names, args, dynamic = examples(native, input_shapes)
    inputs = _as_arrays(names, args)
    expected = run_native(native, inputs)
    try:
        with quiet():
            program = torch.onnx.export(native, args, dynamo=True, input_names=names,
                                        output_names=output_names(len(expected)), dynamic_shapes=dynamic,
                                        verbose=False)
    except Exception as exc:  # noqa: BLE001 - exporter failures are many and varied; report the first line
        raise RewriteError(f"{path}: ONNX export failed: {str(exc).splitlines()[0] if str(exc) else exc}") from exc
    program.save(path, external_data=False)
    onnx.checker.check_model(path, full_check=True)
    # Strict shape inference needs the graph only, not the weight bytes.
    onnx.shape_inference.infer_shapes(onnx.load(path, load_external_data=False), check_type=True, strict_mode=True)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # fatal only: its C++ error lines would reach stderr (as the onnx backend's)
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)
    actual = dict(zip([o.name for o in session.get_outputs()], got))
    _check_close(expected, actual, f"{path}: onnxruntime", ONNX_TOLERANCE)


def save_state_dict(native: Any, path: str, input_shapes: Mapping[str, Any] | None = None) -> None:
    """Save the converted weights as a state_dict (``torch.save``); input shapes are not needed."""
    import torch

    state = dict(native.state_dict) if _is_program(native) else native.state_dict()
    torch.save(state, path)


SAVERS: dict[str, Callable[[Any, str, Mapping[str, Any] | None], None]] = {
    ".pt2": save_pt2,
    ".onnx": save_onnx,
    ".pt": save_state_dict,
    ".pth": save_state_dict,
}


def save_native(native: Any, path: str, input_shapes: Mapping[str, Any] | None = None) -> None:
    """Write ``native`` to ``path`` in the format its suffix names (OutputError for other suffixes)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SAVERS:
        raise OutputError(f"{path}: unsupported output suffix {suffix or '(none)'!r}; use one of "
                          f"{', '.join(SAVERS)}")
    SAVERS[suffix](native, path, input_shapes)


__all__ = ["ONNX_TOLERANCE", "SAVERS", "examples", "relative_l2", "save_native", "save_onnx", "save_pt2",
           "save_state_dict"]
