"""ATen op -> MAC formula registry, shared by the eager (dispatch-mode) engine and the ``.pt2`` graph engine.

A handler takes the op's ``args`` and ``kwargs`` (tensors there are anything with ``.shape``: real, meta
or fake tensors) and its output, and returns MACs (multiply-accumulates; 1 MAC = 2 FLOPs). Ops in
``ZERO_MAC_OPS`` (or tagged pointwise by ATen) cost 0 MACs by convention (DESIGN §3: elementwise, pooling,
normalisation, data movement). Every other op is *uncounted*: listed in the report, never silently 0.
Formulas come from ``sepconv_cli.core.costs``; this module only pulls shapes out of op arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

from sepconv_cli.core import costs

Handler = Callable[[tuple, dict, Any], int]


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _first_tensor(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def conv_handler(args: tuple, kwargs: dict, out: Any) -> int:
    """``aten.convolution``-family and ``conv{1,2,3}d``/``conv_transpose{1,2,3}d``: MACs from x, w, y shapes.

    Regular: ``N * prod(out_spatial) * numel(w)``; transposed: ``N * prod(in_spatial) * numel(w)``
    (``numel(w) = Cout * Cin/g * K`` either way), i.e. the DESIGN §3 formulas.
    """
    x, w = _shape(args[0]), _shape(args[1])
    y = _shape(_first_tensor(out))
    transposed = conv_is_transposed(args, kwargs)
    if transposed:
        return costs.conv_transpose_macs(x[0], w[0], x[2:], w[1], w[2:])
    return costs.conv_macs(y[0], w[0], y[2:], w[1], w[2:])


def conv_is_transposed(args: tuple, kwargs: dict) -> bool:
    """Whether a conv-family op call is transposed (positional flag or ``conv_transpose*`` op)."""
    flag = _arg(args, kwargs, 6, "transposed", False)
    return bool(flag) if isinstance(flag, bool) else False


def _conv_transpose_handler(args: tuple, kwargs: dict, out: Any) -> int:
    x, w = _shape(args[0]), _shape(args[1])
    return costs.conv_transpose_macs(x[0], w[0], x[2:], w[1], w[2:])


def linear_handler(args: tuple, kwargs: dict, out: Any) -> int:
    """``linear(x, W)``: ``prod(x.shape[:-1]) * out_features * in_features`` (Linear over a sequence too)."""
    x, w = _shape(args[0]), _shape(args[1])
    return prod(x[:-1]) * w[0] * (w[1] if len(w) > 1 else 1)


def _mm_handler(args: tuple, kwargs: dict, out: Any) -> int:
    return costs.matmul_macs(_shape(args[0]), _shape(args[1]))


def _addmm_handler(args: tuple, kwargs: dict, out: Any) -> int:
    return costs.matmul_macs(_shape(args[1]), _shape(args[2]))


def _addbmm_handler(args: tuple, kwargs: dict, out: Any) -> int:
    return costs.matmul_macs(_shape(args[1]), _shape(args[2]))


def _einsum_handler(args: tuple, kwargs: dict, out: Any) -> int:
    """Two-operand ``einsum``: the product of the sizes of every distinct index (one MAC per term)."""
    equation, operands = args[0], list(args[1])
    if len(operands) != 2 or "..." in equation:
        raise ValueError(f"einsum {equation!r} with {len(operands)} operands has no formula here")
    lhs = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, tensor in zip(lhs, operands):
        for letter, dim in zip(letters, _shape(tensor)):
            sizes[letter] = max(sizes.get(letter, 1), dim)
    return prod(sizes.values())


def sdpa_handler(args: tuple, kwargs: dict, out: Any) -> int:
    """Scaled dot-product attention as its two matmuls, whatever kernel runs it (math, flash, efficient).

    ``Q (..., L, E) @ K^T (..., E, S)`` then ``P (..., L, S) @ V (..., S, Ev)``: ``B*L*S*E + B*L*S*Ev``.
    """
    q, k, v = _shape(args[0]), _shape(args[1]), _shape(args[2])
    batch = prod(costs._broadcast(q[:-2], k[:-2]))
    length, source = q[-2], k[-2]
    return batch * length * source * (q[-1] + v[-1])


MAC_OPS: dict[str, Handler] = {
    "convolution": conv_handler,
    "_convolution": conv_handler,
    "convolution_overrideable": conv_handler,
    "conv1d": conv_handler,
    "conv2d": conv_handler,
    "conv3d": conv_handler,
    "conv_transpose1d": _conv_transpose_handler,
    "conv_transpose2d": _conv_transpose_handler,
    "conv_transpose3d": _conv_transpose_handler,
    "linear": linear_handler,
    "mm": _mm_handler,
    "matmul": _mm_handler,
    "bmm": _mm_handler,
    "mv": _mm_handler,
    "dot": _mm_handler,
    "addmm": _addmm_handler,
    "baddbmm": _addmm_handler,
    "addmv": _addmm_handler,
    "addbmm": _addbmm_handler,
    "einsum": _einsum_handler,
    "scaled_dot_product_attention": sdpa_handler,
    "_scaled_dot_product_attention_math": sdpa_handler,
    "_scaled_dot_product_flash_attention": sdpa_handler,
    "_scaled_dot_product_flash_attention_for_cpu": sdpa_handler,
    "_scaled_dot_product_efficient_attention": sdpa_handler,
    "_scaled_dot_product_cudnn_attention": sdpa_handler,
}

CONV_OPS = frozenset(name for name, h in MAC_OPS.items() if h in (conv_handler, _conv_transpose_handler))

BATCHNORM_OPS = frozenset({
    "batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm", "_native_batch_norm_legit",
    "cudnn_batch_norm", "_batch_norm_impl_index", "_batch_norm_no_update", "_batch_norm_with_update",
})

# Ops that read a tensor's metadata only: they are not consumers in the dataflow sense.
METADATA_OPS = frozenset({"device", "layout", "dim", "sym_size", "sym_numel", "sym_stride",
                          "sym_storage_offset", "is_contiguous", "sym_is_contiguous"})

# Zero MACs by convention (DESIGN §3): data movement, reductions, pooling, normalisation, activations
# that ATen does not tag as pointwise. Listed by name so that anything new is reported, not hidden.
ZERO_MAC_OPS = frozenset(BATCHNORM_OPS | METADATA_OPS | {
    "view", "_unsafe_view", "reshape", "flatten", "unflatten", "t", "transpose", "permute", "expand",
    "expand_as", "clone", "contiguous", "detach", "alias", "lift_fresh_copy", "copy_", "copy", "_to_copy",
    "to", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like",
    "ones", "ones_like", "full", "full_like", "new_zeros", "new_ones", "new_full", "arange", "fill_",
    "zero_", "cat", "stack", "split", "split_with_sizes", "chunk", "unbind", "slice", "select", "narrow",
    "index_select", "gather", "unsqueeze", "squeeze", "squeeze_", "unsqueeze_", "as_strided", "repeat",
    "roll", "flip", "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "mean", "sum", "amax", "amin", "max", "min", "var",
    "std", "var_mean", "softmax", "_softmax", "_safe_softmax", "log_softmax", "_log_softmax", "layer_norm",
    "native_layer_norm", "group_norm", "native_group_norm", "instance_norm", "rms_norm", "_fused_rms_norm",
    "dropout", "native_dropout", "feature_dropout", "hardtanh", "hardtanh_", "relu6", "pad",
    "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "upsample_nearest1d", "upsample_nearest2d",
    "upsample_nearest3d", "upsample_bilinear2d", "upsample_trilinear3d", "upsample_linear1d",
    "_upsample_nearest_exact2d", "pixel_shuffle", "pixel_unshuffle", "embedding", "argmax", "argmin",
    "topk", "sort", "masked_fill", "masked_fill_", "where", "tril", "triu", "scalar_tensor", "_assert_async",
    "sym_stride", "item", "_local_scalar_dense", "set_", "resize_", "linspace",
    "glu", "logsumexp", "norm", "linalg_vector_norm", "cumsum", "index", "index_put", "index_put_",
    "scatter", "scatter_add", "bernoulli_", "uniform_", "normal_", "random_", "kaiming_uniform_",
    "_log_softmax_backward_data", "silu", "silu_", "gelu", "gelu_", "hardswish", "hardswish_",
    "hardsigmoid", "hardsigmoid_", "mish", "elu", "leaky_relu", "leaky_relu_", "softplus", "channel_shuffle",
    "native_channel_shuffle", "_assert_tensor_metadata", "dequantize", "lift", "unfold", "im2col", "col2im",
    "view_as", "_reshape_alias", "movedim", "swapaxes", "type_as", "rsub", "clamp_min", "clamp_max",
})


def canonical(name: str) -> str:
    """One name per op family for row names, so an exported graph (``conv2d``) and an eager run
    (``convolution``, flash attention kernels) name the same functional call alike."""
    if name in CONV_OPS:
        return "convolution"
    if MAC_OPS.get(name) is sdpa_handler:
        return "scaled_dot_product_attention"
    return name


def op_name(op: Any) -> str:
    """The overload-packet name of an ATen op (``aten.conv2d.padding`` -> ``"conv2d"``)."""
    packet = getattr(op, "overloadpacket", None)
    name = getattr(packet, "__name__", None) or getattr(op, "__name__", str(op))
    return name.split(".")[-1]


def is_zero_mac(op: Any, name: str) -> bool:
    """True for ops that cost 0 MACs by convention: in ``ZERO_MAC_OPS`` or tagged pointwise by ATen."""
    base = name[:-1] if name.endswith("_") and name[:-1] in ZERO_MAC_OPS else name
    if base in ZERO_MAC_OPS:
        return True
    tags = getattr(op, "tags", ())
    try:
        import torch

        return torch.Tag.pointwise in tags or torch.Tag.view_copy in tags
    except (ImportError, AttributeError):
        return False


def count_op(op: Any, args: tuple, kwargs: dict, out: Any) -> tuple[str, int | None, bool]:
    """``(name, macs, known)``: macs None when the op has a formula but the shapes defeated it;
    ``known`` False when the op has no formula and is not zero by convention (an uncounted op)."""
    name = op_name(op)
    handler = MAC_OPS.get(name)
    if handler is not None:
        try:
            return name, handler(args, kwargs or {}, out), True
        except (TypeError, ValueError, IndexError, AttributeError):
            return name, None, True
    return name, 0, is_zero_mac(op, name)
