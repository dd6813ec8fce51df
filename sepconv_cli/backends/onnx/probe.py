"""Run parts of an ONNX graph in onnxruntime: prune it to the tensors wanted, and batch it when it can.

Calibration reads intermediate tensors (depthwise outputs, reference conv or BatchNorm outputs): each is
exposed as a graph output of a copy pruned to the nodes it needs. Exported models often fix the batch dim
at 1; the pruned copy gets a symbolic batch dim instead when the graph still computes per-sample results
with it (checked on a first run), else samples go through at the fixed batch size.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from sepconv_cli.backends.limits import RunRefused
from sepconv_cli.backends.limits import active as active_limits
from sepconv_cli.backends.onnx.session import SessionSettings, make_session
from sepconv_cli.backends.onnx.subgraphs import ancestors
from sepconv_cli.errors import RewriteError


def prune(model: onnx.ModelProto, outputs: list[str], elem_type: int) -> onnx.ModelProto:
    """A copy of ``model`` computing only ``outputs`` (exposed as graph outputs of ``elem_type``)."""
    graph = model.graph
    keep, wanted = ancestors(graph, set(outputs))
    inits = [t for t in graph.initializer if t.name in wanted]
    init_names = {t.name for t in inits}
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer} or i.name in init_names]
    outs = [helper.make_tensor_value_info(name, elem_type, None) for name in outputs]
    pruned = helper.make_graph(keep, graph.name or "calibration", inputs, outs, inits)
    return helper.make_model(pruned, opset_imports=model.opset_import, ir_version=model.ir_version)


def session(model: onnx.ModelProto, threads: int, arena: bool = True):
    """An onnxruntime CPU session for ``model`` (saved beside a temporary file when over 2 GB). Without
    ``arena`` its activations are freed after each run instead of kept in a growing pool: for the many
    sessions of a segmented walk, which would otherwise each hold their peak."""
    # Idle pool threads sleep instead of spinning: numpy's solves share the cores with them. The graph is
    # untrusted: runs obey the command's memory and time limits.
    settings = SessionSettings(threads=max(threads, 0), spinning=False, arena=arena)
    try:
        return make_session(model, settings, active_limits())
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RewriteError(f"onnxruntime cannot load the graph to run it for calibration ({first})") from None


def relax_batch(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy whose graph inputs and outputs have a symbolic batch dim (None when none was static)."""
    dims = [v.type.tensor_type.shape.dim for v in list(model.graph.input) + list(model.graph.output)]
    if not any(d and d[0].HasField("dim_value") for d in dims):
        return None
    relaxed = onnx.ModelProto()
    relaxed.CopyFrom(model)
    for value in list(relaxed.graph.input) + list(relaxed.graph.output):
        shape = value.type.tensor_type.shape.dim
        if shape and shape[0].HasField("dim_value"):
            shape[0].dim_param = "batch"
    return relaxed


def static_batch(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> int:
    """The fixed batch size of the data inputs (1 when symbolic: any size goes)."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in inputs and dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return int(dims[0].dim_value)
    return 1


class Runner:
    """Computes ``outputs`` (None: the graph's own) of ``model`` for sample indices of ``inputs``."""

    def __init__(self, model: onnx.ModelProto, outputs: list[str] | None, elem_type: int,
                 inputs: dict[str, np.ndarray], threads: int):
        self.inputs, self.step = inputs, None
        pruned = model if outputs is None else prune(model, outputs, elem_type)
        relaxed = relax_batch(pruned)
        if relaxed is not None and self._batches_freely(relaxed, threads):
            return
        self.session = session(pruned, threads)
        self.step = static_batch(pruned, inputs) if relaxed is not None else None

    def _batches_freely(self, relaxed: onnx.ModelProto, threads: int) -> bool:
        """True when the relaxed copy runs two samples at once and returns two per output."""
        try:
            self.session = session(relaxed, threads)
            probe = np.arange(min(2, len(next(iter(self.inputs.values())))))
            return all(len(o) == len(probe) for o in self._run(probe))
        except RunRefused:
            raise
        except Exception:  # noqa: BLE001 - any failure means: keep the graph's fixed batch size
            return False

    def _run(self, indices: np.ndarray) -> list[np.ndarray]:
        feeds = {i.name: self.inputs[i.name][indices] for i in self.session.get_inputs()}
        return self.session.run(None, feeds)

    def run(self, indices: np.ndarray) -> list[np.ndarray]:
        """Outputs for the samples ``indices``, in order."""
        if self.step is None:
            return self._run(indices)
        parts = [self._run(indices[i:i + self.step]) for i in range(0, len(indices), self.step)]
        return [np.concatenate(chunk) for chunk in zip(*parts)]
