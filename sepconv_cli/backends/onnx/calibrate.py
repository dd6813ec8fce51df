"""Calibrated refit for ONNX models: both graphs are walked forward once, a segment at a time.

For converted layer ``N`` (naming contract of the ONNX rewriter: node ``N/depthwise`` producing
``Y/depthwise`` from weight ``N/depthwise.weight``, then node ``N/pointwise`` producing ``Y`` from
``N/pointwise.weight`` and ``N/pointwise.bias``), the depthwise output is computed from the converted
graph's live tensors at the cut just before ``N/depthwise`` (earlier layers already refit) and the target
read from the original graph, walked up to the conv's output ``Y`` or the output of the BatchNorm folded
into it. Neither graph ever reruns a prefix: see ``segments.Walker``. The refit weights go back as
initializers (a bias is added if absent) before the converted walk moves past the layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sepconv_cli.backends.onnx.edit import attrs, load_missing_external_data, nodes_by_layer
from sepconv_cli.backends.onnx.probe import Runner
from sepconv_cli.backends.onnx.segments import Walker
from sepconv_cli.calibration.loop import CalibResult, Chunks, LayerTask, run_calibration
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.core.decompose import fold_batchnorm
from sepconv_cli.core.plans import Plan
from sepconv_cli.core.weights import BatchNormParams, ConvWeights
from sepconv_cli.cpu import usable_cores
from sepconv_cli.errors import RewriteError

_KERNEL = "sepconv.calibration.kernel"


def constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of initializer or Constant output ``name`` (None if it is neither)."""
    for tensor in graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def folded_weight(graph: onnx.GraphProto, node: onnx.NodeProto, bn_node: onnx.NodeProto | None
                  ) -> tuple[np.ndarray, int, bool]:
    """(BN-folded float64 kernel, groups, transposed) of conv ``node`` (``bn_node``: the BN folded into it)."""
    weight = constant(graph, node.input[1])
    if weight is None:
        raise RewriteError(f"{node.name}: weight is not a constant of the model; it cannot be calibrated")
    bias = constant(graph, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    groups, bn = int(attrs(node).get("group", 1)), None
    if bn_node is not None:
        scale, beta, mean, var = (constant(graph, i) for i in bn_node.input[1:5])
        bn = BatchNormParams(bn_node.name, scale, beta, mean, var, float(attrs(bn_node).get("epsilon", 1e-5)))
    transposed = node.op_type == "ConvTranspose"
    w64, _ = fold_batchnorm(ConvWeights(weight, bias, bn), groups, transposed)
    return w64, groups, transposed


def relu_only_readers(graph: onnx.GraphProto, tensor: str) -> bool:
    """True when ``tensor`` is read, and read only by ``Relu`` nodes (and is no graph output)."""
    if tensor in {o.name for o in graph.output}:
        return False
    readers = [n for n in graph.node if tensor in n.input]
    return bool(readers) and all(n.op_type == "Relu" for n in readers)


class OnnxDriver:
    """Runs and edits the models for the calibration loop (see ``calibration.loop.Driver``)."""

    def __init__(self, original: onnx.ModelProto, converted: onnx.ModelProto, plan: Plan,
                 inputs: dict[str, np.ndarray], threads: int):
        self.original = original
        self.model = onnx.ModelProto()
        self.model.CopyFrom(converted)
        self.plan, self.inputs, self.threads = plan, inputs, threads
        self.orig_pos, self.conv_pos = nodes_by_layer(original.graph), nodes_by_layer(self.model.graph)
        self._full: dict[bool, Runner] = {}
        self._walk: dict[bool, Walker] = {}
        self._targets: dict[str, list[np.ndarray | None]] = {}
        self._done: set[str] = set()

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

    def _bn_node(self, name: str) -> onnx.NodeProto | None:
        planned = next(p for p in self.plan.layers if p.name == name)
        return self.original.graph.node[self.orig_pos[planned.bn_folded]] if planned.bn_folded else None

    def target_name(self, name: str) -> str:
        """The original tensor the converted layer must reproduce (the folded BN's output if any)."""
        bn = self._bn_node(name)
        return bn.output[0] if bn is not None else self.original_conv(name).output[0]

    def folded_weight(self, name: str) -> tuple[np.ndarray, int, bool]:
        """(BN-folded float64 kernel, groups, transposed) of the original conv ``name``."""
        return folded_weight(self.original.graph, self.original_conv(name), self._bn_node(name))

    # -- Driver protocol ------------------------------------------------------------------------
    def begin(self, chunks: Chunks) -> None:
        feeds = [{k: v[i] for k, v in self.inputs.items()} for i in chunks.indices]
        self._walk = {False: Walker(self.original, feeds, self.threads), True: Walker(self.model, feeds, self.threads)}
        self._targets, self._done = {}, set()

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

    def depthwise(self, name: str, kernel: np.ndarray | None = None) -> Iterator[np.ndarray]:
        walker, node = self._walk[True], self._node(f"{name}/depthwise")
        cut = walker.position_of(node.name)
        if kernel is None:
            kernel = numpy_helper.to_array(self._init(f"{name}/depthwise.weight"))
        dtype = numpy_helper.to_array(self._init(f"{name}/pointwise.weight")).dtype
        alone = helper.make_node(node.op_type, [node.input[0], _KERNEL], [node.output[0]], name=node.name)
        alone.attribute.extend(node.attribute)
        weight = numpy_helper.from_array(np.ascontiguousarray(np.asarray(kernel).astype(dtype)), _KERNEL)
        run = None
        for index in range(len(walker.live)):
            walker.advance_chunk(index, cut)  # a chunk reaches the layer's cut as its turn comes
            run = run or walker.run_nodes([alone], [node.output[0]], [weight])
            yield run(index)[0]

    def targets(self, name: str) -> Iterator[np.ndarray]:
        target, walker = self.target_name(name), self._walk[False]
        stop = walker.producer(target) + 1
        wanted = tuple(self.target_name(p.name) for p in self.plan.layers if p.name not in self._done)
        count = len(walker.live)
        for index in range(count):
            if self._targets.get(target, [None] * count)[index] is None:
                taken = walker.advance_chunk(index, max(stop, walker.at[index]), wanted)
                for tensor, value in taken.items():
                    stored = self._targets.setdefault(tensor, [None] * count)
                    stored[index] = value if stored[index] is None else stored[index]
            value = self._targets.get(target, [None] * count)[index]
            if value is None:
                raise RewriteError(f"{name}: its target {target!r} was not produced by the original graph")
            yield value

    def relu_follows(self, name: str) -> bool:
        return relu_only_readers(self.original.graph, self.target_name(name))

    def advance(self, name: str) -> None:
        self._done.add(name)
        self._targets.pop(self.target_name(name), None)

    def _runner(self, converted: bool) -> Runner:
        if converted not in self._full:
            model = self.model if converted else self.original
            self._full[converted] = Runner(model, None, 0, self.inputs, self.threads)
        return self._full[converted]

    def fixed_step(self) -> int:
        """1 when the original graph runs any number of samples at once, else its fixed batch size."""
        return self._runner(False).step or 1

    def outputs(self, converted: bool, indices: np.ndarray) -> list[np.ndarray]:
        return self._runner(converted).run(indices)


def calibrate_onnx(original: onnx.ModelProto | str, converted: onnx.ModelProto, plan: Plan,
                   inputs: dict[str, np.ndarray], options: CalibOptions = CalibOptions()) -> CalibResult:
    """Refit the pointwise factor of every planned layer of ``converted`` (a copy; the argument is left
    untouched). ``original`` may be a path (weights in external data are then read)."""
    if isinstance(original, str):
        path, original = original, onnx.load(original, load_external_data=False)
        load_missing_external_data(original, path)
    count = min(options.samples, min(len(a) for a in inputs.values()))
    inputs = {k: v[:count] for k, v in inputs.items()}
    threads = options.threads or usable_cores()
    driver = OnnxDriver(original, converted, plan, inputs, threads)
    step = driver.fixed_step() if count else 1
    search = options.max_output_error is not None
    tasks = []
    for planned in sorted(plan.layers, key=lambda p: driver.conv_pos.get(f"{p.name}/depthwise", 0)):
        weight, groups, transposed = driver.folded_weight(planned.name)
        tasks.append(LayerTask(planned.name, groups, planned.rank, transposed, weight if search else None))
    report, ranks, energies = run_calibration(driver, tasks, count, options, step)
    return CalibResult(model=driver.model, report=report, ranks=ranks, energies=energies)
