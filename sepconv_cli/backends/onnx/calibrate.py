"""Calibrated refit for ONNX models: onnxruntime runs pruned copies of the original and converted graphs.

For converted layer ``N`` (naming contract of the ONNX rewriter: node ``N/depthwise`` producing
``Y/depthwise`` from weight ``N/depthwise.weight``, then node ``N/pointwise`` producing ``Y`` from
``N/pointwise.weight`` and ``N/pointwise.bias``), the depthwise output is read from the converted graph
(earlier layers already refit) and the target from the original graph: the conv's output ``Y``, or the
output of the BatchNorm folded into it. Each graph is pruned to the nodes those tensors need, which are
exposed as graph outputs; the refit pointwise weights go back as initializers (a bias is added if absent).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import onnx
from onnx import numpy_helper

from sepconv_cli.backends.onnx.edit import (
    attrs,
    load_missing_external_data,
    nodes_by_layer,
)
from sepconv_cli.backends.onnx.probe import Runner, static_batch
from sepconv_cli.calibration.loop import CalibResult, LayerTask, run_calibration
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.core.decompose import fold_batchnorm
from sepconv_cli.core.records import Plan
from sepconv_cli.core.weights import BatchNormParams, ConvWeights
from sepconv_cli.errors import InputError, RewriteError


def _constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of initializer or Constant output ``name`` (None if it is neither)."""
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


class OnnxDriver:
    """Runs and edits the models for the calibration loop (see ``calib_loop.Driver``)."""

    def __init__(self, original: onnx.ModelProto, converted: onnx.ModelProto, plan: Plan,
                 inputs: dict[str, np.ndarray], options: CalibOptions):
        self.original = original
        self.model = onnx.ModelProto()
        self.model.CopyFrom(converted)
        self.plan, self.inputs, self.threads = plan, inputs, options.threads
        self.orig_pos, self.conv_pos = nodes_by_layer(original.graph), nodes_by_layer(self.model.graph)
        self._full: dict[bool, Runner] = {}

    # -- reading the graphs ---------------------------------------------------------------------
    def _node(self, name: str) -> onnx.NodeProto:
        for node in self.model.graph.node:
            if node.name == name:
                return node
        raise RewriteError(f"{name}: not in the converted graph (expected the rewriter's naming)")

    def _init(self, name: str) -> onnx.TensorProto | None:
        return next((t for t in self.model.graph.initializer if t.name == name), None)

    def original_conv(self, name: str) -> onnx.NodeProto:
        if name not in self.orig_pos:
            raise RewriteError(f"{name}: not in the original graph")
        return self.original.graph.node[self.orig_pos[name]]

    def target_name(self, name: str) -> str:
        """The original tensor the converted layer must reproduce (the folded BN's output if any)."""
        planned = next(p for p in self.plan.layers if p.name == name)
        if planned.bn_folded:
            return self.original.graph.node[self.orig_pos[planned.bn_folded]].output[0]
        return self.original_conv(name).output[0]

    def elem_type(self, name: str) -> int:
        return self._init(f"{name}/pointwise.weight").data_type

    def folded_weight(self, name: str) -> tuple[np.ndarray, int, bool]:
        """(BN-folded float64 kernel, groups, transposed) of the original conv ``name``."""
        node = self.original_conv(name)
        graph = self.original.graph
        weight = _constant(graph, node.input[1])
        if weight is None:
            raise RewriteError(f"{name}: weight is not a constant of the model; it cannot be calibrated")
        bias = _constant(graph, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        groups, bn = int(attrs(node).get("group", 1)), None
        planned = next(p for p in self.plan.layers if p.name == name)
        if planned.bn_folded:
            bn_node = graph.node[self.orig_pos[planned.bn_folded]]
            scale, beta, mean, var = (_constant(graph, i) for i in bn_node.input[1:5])
            bn = BatchNormParams(planned.bn_folded, scale, beta, mean, var, float(attrs(bn_node).get("epsilon", 1e-5)))
        transposed = node.op_type == "ConvTranspose"
        w64, _ = fold_batchnorm(ConvWeights(weight, bias, bn), groups, transposed)
        return w64, groups, transposed

    # -- Driver protocol ------------------------------------------------------------------------
    def factors(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        bias = self._init(f"{name}/pointwise.bias")
        return (numpy_helper.to_array(self._init(f"{name}/depthwise.weight")),
                numpy_helper.to_array(self._init(f"{name}/pointwise.weight")),
                None if bias is None else numpy_helper.to_array(bias))

    def _set(self, name: str, value: np.ndarray, dtype: np.dtype) -> None:
        tensor = numpy_helper.from_array(np.ascontiguousarray(value.astype(dtype)), name)
        existing = self._init(name)
        if existing is None:
            self.model.graph.initializer.append(tensor)
        else:
            existing.CopyFrom(tensor)

    def install(self, name: str, depthwise: np.ndarray, pointwise: np.ndarray, bias: np.ndarray | None) -> None:
        dtype = numpy_helper.to_array(self._init(f"{name}/pointwise.weight")).dtype
        self._set(f"{name}/depthwise.weight", depthwise, dtype)
        self._set(f"{name}/pointwise.weight", pointwise, dtype)
        pw = self._node(f"{name}/pointwise")
        if bias is not None:
            self._set(f"{name}/pointwise.bias", bias, dtype)
            if len(pw.input) < 3:
                pw.input.append(f"{name}/pointwise.bias")
        dw_bias = self._init(f"{name}/depthwise.bias")
        transposed = self._node(f"{name}/depthwise").op_type == "ConvTranspose"
        channels = depthwise.shape[0] * (depthwise.shape[1] if transposed else 1)
        if dw_bias is not None and dw_bias.dims[0] != channels:
            self._set(f"{name}/depthwise.bias", np.zeros(channels), dtype)  # zero-initialised, as rewritten
        stale = self._node(f"{name}/depthwise").output[0]
        kept = [v for v in self.model.graph.value_info if v.name != stale]
        del self.model.graph.value_info[:]
        self.model.graph.value_info.extend(kept)
        self._full.pop(True, None)

    def _runner(self, model: onnx.ModelProto, outputs: list[str] | None, elem_type: int = 0) -> Runner:
        return Runner(model, outputs, elem_type, self.inputs, self.threads)

    def layer_batches(self, name: str, index_batches: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        kind = self.elem_type(name)
        conv = self._runner(self.model, [self._node(f"{name}/depthwise").output[0]], kind)
        orig = self._runner(self.original, [self.target_name(name)], kind)
        for indices in index_batches:
            yield conv.run(indices)[0], orig.run(indices)[0]

    def outputs(self, converted: bool, indices: np.ndarray) -> list[np.ndarray]:
        if converted not in self._full:
            self._full[converted] = self._runner(self.model if converted else self.original, None)
        return self._full[converted].run(indices)


def _fit_batch(model: onnx.ModelProto, inputs: dict[str, np.ndarray], options: CalibOptions
               ) -> tuple[dict[str, np.ndarray], CalibOptions]:
    """Inputs capped at ``options.samples``; with a static batch dim B > 1 the count and the batch size
    become multiples of B (a graph that cannot take other batch sizes is then fed exactly B at a time)."""
    count = min(options.samples, min(len(a) for a in inputs.values()))
    static = static_batch(model, inputs)
    if static > 1:
        if count < static:
            raise InputError(f"the model's batch dim is fixed at {static}; got only {count} calibration samples")
        count -= count % static
        options = replace(options, batch_size=static * max(1, options.batch_size // static))
    return {k: v[:count] for k, v in inputs.items()}, options


def calibrate_onnx(original: onnx.ModelProto | str, converted: onnx.ModelProto, plan: Plan,
                   inputs: dict[str, np.ndarray], options: CalibOptions = CalibOptions()) -> CalibResult:
    """Refit the pointwise factor of every planned layer of ``converted`` (a copy; the argument is left
    untouched). ``original`` may be a path (weights in external data are then read)."""
    if isinstance(original, str):
        path, original = original, onnx.load(original, load_external_data=False)
        load_missing_external_data(original, path)
    inputs, options = _fit_batch(original, inputs, options)
    driver = OnnxDriver(original, converted, plan, inputs, options)
    search = options.max_output_error is not None
    tasks = []
    for planned in sorted(plan.layers, key=lambda p: driver.conv_pos.get(f"{p.name}/depthwise", 0)):
        weight, groups, transposed = driver.folded_weight(planned.name)
        tasks.append(LayerTask(planned.name, groups, planned.rank, transposed, weight if search else None))
    report, ranks, energies = run_calibration(driver, tasks, len(next(iter(inputs.values()))), options)
    return CalibResult(model=driver.model, report=report, ranks=ranks, energies=energies)
