"""A trainable torch rebuild of an ONNX graph, so that ONNX models can be distilled, and the write-back.

``OnnxModule(model)`` runs the graph node by node with torch ops (``OPS``: one function per ONNX op,
opset semantics for inference), its float initializers held as ``nn.Parameter``s (BatchNorm running
statistics and integer tensors as buffers). ``write_back(module, model)`` puts the trained values back
into the ModelProto's initializers, in place and in their own dtypes, so the graph itself is never
re-exported; ``distill_onnx`` distills a converted ONNX model that way. Covered: Conv (1-3-D, groups,
asymmetric or auto pads), BatchNormalization, Relu/LeakyRelu/Sigmoid/Tanh/Clip, Add/Sub/Mul/Div,
MaxPool/AveragePool/GlobalAveragePool/GlobalMaxPool, Gemm/MatMul, Flatten/Reshape/Transpose/Concat,
ReduceMean, Softmax, Identity/Dropout, Constant. Any other op is refused up front with its name
(``unsupported_ops``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

from sepconv_cli.backends.torch.distill import DistillOptions, DistillReport, distill
from sepconv_cli.errors import UsageError

Attrs = dict[str, Any]
Op = Callable[[list[Any], Attrs], list[torch.Tensor]]

# (op, input index) whose initializer stays fixed: BatchNorm's running statistics.
FROZEN_INPUTS = {("BatchNormalization", 3), ("BatchNormalization", 4)}


def _attrs(node: onnx.NodeProto) -> Attrs:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _pad_for(x: torch.Tensor, attrs: Attrs, kernel: list[int]) -> list[int]:
    """ONNX pads [b1, b2, ..., e1, e2, ...] for ``x``, auto_pad resolved from the input's size."""
    dims = len(kernel)
    auto = _decode(attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        strides = attrs.get("strides", [1] * dims)
        dilations = attrs.get("dilations", [1] * dims)
        begin, end = [], []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begin.append(large if auto == "SAME_LOWER" else small)
            end.append(small if auto == "SAME_LOWER" else large)
        return begin + end
    if auto == "VALID":
        return [0] * 2 * dims
    return list(attrs.get("pads", [0] * 2 * dims))


def _padded(x: torch.Tensor, pads: list[int], value: float = 0.0) -> tuple[torch.Tensor, list[int]]:
    """(x, symmetric padding per dim): asymmetric pads are applied with ``F.pad`` first."""
    dims = len(pads) // 2
    begin, end = pads[:dims], pads[dims:]
    if begin == end:
        return x, begin
    flat = [p for b, e in zip(reversed(begin), reversed(end)) for p in (b, e)]
    return F.pad(x, flat, value=value), [0] * dims


CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
MAX_POOLS = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOLS = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _conv(ins: list[Any], attrs: Attrs) -> list[torch.Tensor]:
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    kernel = list(w.shape[2:])
    x, padding = _padded(x, _pad_for(x, attrs, kernel))
    conv = CONVS[len(kernel)]
    return [conv(x, w, bias, stride=attrs.get("strides", 1), padding=padding,
                 dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1))]


def _pool(ins: list[Any], attrs: Attrs, average: bool) -> list[torch.Tensor]:
    x, kernel = ins[0], list(attrs["kernel_shape"])
    pads = _pad_for(x, attrs, kernel)
    ceil = bool(attrs.get("ceil_mode", 0))
    stride = attrs.get("strides", [1] * len(kernel))
    if not average:
        x, padding = _padded(x, pads, float("-inf"))
        return [MAX_POOLS[len(kernel)](x, kernel, stride, padding, attrs.get("dilations", 1), ceil_mode=ceil)]
    include = bool(attrs.get("count_include_pad", 0))
    if pads[:len(kernel)] != pads[len(kernel):] and not include:
        raise UsageError("AveragePool with asymmetric pads excluded from the count has no torch equivalent")
    x, padding = _padded(x, pads)
    return [AVG_POOLS[len(kernel)](x, kernel, stride, padding, ceil_mode=ceil, count_include_pad=include)]


def _gemm(ins: list[Any], attrs: Attrs) -> list[torch.Tensor]:
    a, b = ins[0], ins[1]
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    return [y + attrs.get("beta", 1.0) * ins[2] if len(ins) > 2 and ins[2] is not None else y]


def _flatten(ins: list[Any], attrs: Attrs) -> list[torch.Tensor]:
    x, axis = ins[0], attrs.get("axis", 1)
    axis = axis + x.dim() if axis < 0 else axis
    return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]


def _reshape(ins: list[Any], attrs: Attrs) -> list[torch.Tensor]:
    x, shape = ins[0], [int(s) for s in ins[1].tolist()]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def _clip(ins: list[Any], attrs: Attrs) -> list[torch.Tensor]:
    low = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("min")
    high = ins[2] if len(ins) > 2 and ins[2] is not None else attrs.get("max")
    return [torch.clamp(ins[0], low, high)]


def _reduce_mean(ins: list[Any], attrs: Attrs) -> list[torch.Tensor]:
    axes = attrs.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:
        axes = [int(a) for a in ins[1].tolist()]
    keep = bool(attrs.get("keepdims", 1))
    dims = tuple(axes) if axes else tuple(range(ins[0].dim()))
    return [ins[0].mean(dim=dims, keepdim=keep)]


def _batchnorm(ins: list[Any], attrs: Attrs) -> list[torch.Tensor]:
    x, scale, bias, mean, var = ins[:5]
    return [F.batch_norm(x, mean, var, scale, bias, training=False, eps=attrs.get("epsilon", 1e-5))]


OPS: dict[str, Op] = {
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "Relu": lambda i, a: [F.relu(i[0])],
    "LeakyRelu": lambda i, a: [F.leaky_relu(i[0], a.get("alpha", 0.01))],
    "Sigmoid": lambda i, a: [torch.sigmoid(i[0])],
    "Tanh": lambda i, a: [torch.tanh(i[0])],
    "Clip": _clip,
    "Add": lambda i, a: [i[0] + i[1]],
    "Sub": lambda i, a: [i[0] - i[1]],
    "Mul": lambda i, a: [i[0] * i[1]],
    "Div": lambda i, a: [i[0] / i[1]],
    "MaxPool": lambda i, a: _pool(i, a, average=False),
    "AveragePool": lambda i, a: _pool(i, a, average=True),
    "GlobalAveragePool": lambda i, a: [i[0].mean(dim=tuple(range(2, i[0].dim())), keepdim=True)],
    "GlobalMaxPool": lambda i, a: [i[0].amax(dim=tuple(range(2, i[0].dim())), keepdim=True)],
    "Gemm": _gemm,
    "MatMul": lambda i, a: [torch.matmul(i[0], i[1])],
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": lambda i, a: [i[0].permute(*(a.get("perm") or reversed(range(i[0].dim()))))],
    "Concat": lambda i, a: [torch.cat(list(i), dim=a["axis"])],
    "ReduceMean": _reduce_mean,
    "Softmax": lambda i, a: [torch.softmax(i[0], dim=a.get("axis", -1))],
    "Identity": lambda i, a: [i[0]],
    "Dropout": lambda i, a: [i[0]],
    "Constant": lambda i, a: [torch.from_numpy(np.array(numpy_helper.to_array(a["value"])))],
}


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """The op types of ``model``'s main graph that ``OnnxModule`` cannot run (sorted, each once)."""
    return sorted({n.op_type for n in model.graph.node if n.op_type not in OPS or n.domain not in ("", "ai.onnx")})


def _key(index: int) -> str:
    return f"p{index}"


class OnnxModule(nn.Module):
    """The graph of ``model`` as a torch module: ``forward(*inputs)`` takes the graph inputs in order and
    returns the graph outputs (a tuple when several). ``names[key]`` is the initializer behind the
    parameter or buffer ``key``. UsageError naming the ops it lacks."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        missing = unsupported_ops(model)
        if missing:
            raise UsageError(f"no torch rebuild for ONNX op(s) {', '.join(missing)}: distill the PyTorch source instead")
        graph = model.graph
        frozen = {n.input[i] for n in graph.node for op, i in FROZEN_INPUTS if n.op_type == op and len(n.input) > i}
        self.names: dict[str, str] = {}
        self._slots: dict[str, str] = {}
        for index, init in enumerate(graph.initializer):
            value = torch.from_numpy(np.array(numpy_helper.to_array(init)))
            key = _key(index)
            if value.is_floating_point() and init.name not in frozen:
                self.register_parameter(key, nn.Parameter(value))
            else:
                self.register_buffer(key, value)
            self.names[key], self._slots[init.name] = init.name, key
        known = set(self._slots)
        self.inputs = [i.name for i in graph.input if i.name not in known]
        self.outputs = [o.name for o in graph.output]
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n)) for n in graph.node]

    def forward(self, *args: torch.Tensor) -> Any:
        env: dict[str, Any] = {"": None}
        env.update(zip(self.inputs, args))
        for name, key in self._slots.items():
            env[name] = getattr(self, key)
        for op, ins, outs, attrs in self.nodes:
            results = OPS[op]([env[i] for i in ins], attrs)
            env.update(zip(outs, results))
        values = [env[o] for o in self.outputs]
        return values[0] if len(values) == 1 else tuple(values)


def write_back(module: OnnxModule, model: onnx.ModelProto) -> None:
    """Copy ``module``'s parameters into ``model``'s same-named initializers, in place, each in its dtype."""
    by_name = {init.name: init for init in model.graph.initializer}
    for key, param in module.named_parameters():
        init = by_name[module.names[key]]
        dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        init.CopyFrom(numpy_helper.from_array(param.detach().cpu().numpy().astype(dtype), init.name))


def distill_onnx(original: onnx.ModelProto | str, converted: onnx.ModelProto, inputs: dict[str, np.ndarray],
                 steps: int, options: DistillOptions | None = None) -> DistillReport:
    """``distill`` for ONNX models: both graphs rebuilt as ``OnnxModule``s, the converted one trained and,
    when kept, written back into ``converted``'s initializers in place. ``original`` may be a path (a
    model with external data). UsageError for graphs with ops the rebuild lacks."""
    source = onnx.load(original) if isinstance(original, str) else original
    teacher, student = OnnxModule(source), OnnxModule(converted)
    missing = [name for name in teacher.inputs if name not in inputs]
    if missing:
        raise UsageError(f"distillation inputs lack the model input(s) {', '.join(missing)}")
    ordered = {name: inputs[name] for name in teacher.inputs}  # passed positionally, in graph order
    report = distill(teacher, student, ordered, steps, options)
    if report.kept:
        write_back(student, converted)
    return report


__all__ = ["OPS", "OnnxModule", "distill_onnx", "unsupported_ops", "write_back"]
