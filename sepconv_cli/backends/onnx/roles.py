"""What each input of an ONNX op is for: the one table deciding whether a constant is a parameter.

A constant tensor is a **param** when it feeds a learnable role: a conv or Gemm weight and bias, a
constant MatMul/Einsum operand, a normalisation scale and bias, a multi-element constant operand of an
elementwise op, a Gather table, RNN weights. It is a **buffer** when it only holds statistics or
quantisation metadata (BatchNorm running mean/var, quantisation scales and zero points). It is
**config** when it only feeds inputs that say *how* an op runs: Resize scales/sizes/roi, Pad pads,
Reshape/Expand/Tile shapes, Slice/Split indices, Clip bounds, TopK k, axes, Gather indices. A config
input is never a param, whatever its element type. Inputs not listed are data: a float constant there is
a param. Positions are ONNX input indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    """What a constant feeding an input position counts as."""

    PARAM = "param"
    BUFFER = "buffer"
    CONFIG = "config"


@dataclass(frozen=True)
class InputRole:
    """The role of one input position of one op, and its name in words (shown by ``--explain``)."""

    role: Role
    name: str


def _roles(**positions: tuple[Role, str]) -> dict[int, InputRole]:
    """``i1=(PARAM, "conv weight")`` -> ``{1: InputRole(PARAM, "conv weight")}``."""
    return {int(key[1:]): InputRole(role, name) for key, (role, name) in positions.items()}


P, B, C = Role.PARAM, Role.BUFFER, Role.CONFIG

INPUT_ROLES: dict[str, dict[int, InputRole]] = {
    "Conv": _roles(i1=(P, "conv weight"), i2=(P, "conv bias")),
    "ConvTranspose": _roles(i1=(P, "conv weight"), i2=(P, "conv bias")),
    "Gemm": _roles(i0=(P, "Gemm A"), i1=(P, "Gemm B (weight)"), i2=(P, "Gemm C (bias)")),
    "MatMul": _roles(i0=(P, "constant MatMul operand"), i1=(P, "constant MatMul operand")),
    "BatchNormalization": _roles(i1=(P, "norm scale"), i2=(P, "norm bias"),
                                 i3=(B, "running mean"), i4=(B, "running variance")),
    "InstanceNormalization": _roles(i1=(P, "norm scale"), i2=(P, "norm bias")),
    "LayerNormalization": _roles(i1=(P, "norm scale"), i2=(P, "norm bias")),
    "GroupNormalization": _roles(i1=(P, "norm scale"), i2=(P, "norm bias")),
    "PRelu": _roles(i1=(P, "PReLU slope")),
    "Gather": _roles(i0=(P, "Gather table"), i1=(C, "Gather indices")),
    "GatherElements": _roles(i1=(C, "gather indices")),
    "GatherND": _roles(i1=(C, "gather indices")),
    "ScatterND": _roles(i1=(C, "scatter indices")),
    "ScatterElements": _roles(i1=(C, "scatter indices")),
    "LSTM": _roles(i1=(P, "RNN input weights"), i2=(P, "RNN recurrence weights"), i3=(P, "RNN bias"),
                   i4=(C, "sequence lengths"), i5=(C, "initial hidden state"), i6=(C, "initial cell state"),
                   i7=(P, "peephole weights")),
    "GRU": _roles(i1=(P, "RNN input weights"), i2=(P, "RNN recurrence weights"), i3=(P, "RNN bias"),
                  i4=(C, "sequence lengths"), i5=(C, "initial hidden state")),
    "RNN": _roles(i1=(P, "RNN input weights"), i2=(P, "RNN recurrence weights"), i3=(P, "RNN bias"),
                  i4=(C, "sequence lengths"), i5=(C, "initial hidden state")),
    "Resize": _roles(i1=(C, "Resize roi"), i2=(C, "Resize scales"), i3=(C, "Resize sizes")),
    "Upsample": _roles(i1=(C, "Upsample scales")),
    "Pad": _roles(i1=(C, "Pad pads"), i2=(C, "Pad value"), i3=(C, "Pad axes")),
    "Reshape": _roles(i1=(C, "Reshape shape")),
    "Expand": _roles(i1=(C, "Expand shape")),
    "Tile": _roles(i1=(C, "Tile repeats")),
    "Slice": _roles(i1=(C, "Slice starts"), i2=(C, "Slice ends"), i3=(C, "Slice axes"),
                    i4=(C, "Slice steps")),
    "Split": _roles(i1=(C, "Split sizes")),
    "Clip": _roles(i1=(C, "Clip min"), i2=(C, "Clip max")),
    "TopK": _roles(i1=(C, "TopK k")),
    "Squeeze": _roles(i1=(C, "axes")),
    "Unsqueeze": _roles(i1=(C, "axes")),
    "ReduceMean": _roles(i1=(C, "axes")),
    "ReduceSum": _roles(i1=(C, "axes")),
    "ReduceMax": _roles(i1=(C, "axes")),
    "ReduceMin": _roles(i1=(C, "axes")),
    "ReduceProd": _roles(i1=(C, "axes")),
    "ReduceL2": _roles(i1=(C, "axes")),
    "ConstantOfShape": _roles(i0=(C, "shape")),
    "Range": _roles(i0=(C, "Range start"), i1=(C, "Range limit"), i2=(C, "Range delta")),
    "OneHot": _roles(i0=(C, "OneHot indices"), i1=(C, "OneHot depth"), i2=(C, "OneHot values")),
    "Dropout": _roles(i1=(C, "dropout ratio"), i2=(C, "training mode")),
    "CumSum": _roles(i1=(C, "axis")),
    "Trilu": _roles(i1=(C, "diagonal offset")),
    "DequantizeLinear": _roles(i0=(P, "quantised weight"), i1=(B, "quantisation scale"),
                               i2=(B, "zero point")),
    "QuantizeLinear": _roles(i1=(B, "quantisation scale"), i2=(B, "zero point")),
}
"""Op type -> input position -> role. Positions not listed are data inputs (``data_role``)."""

ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where"})
"""Ops whose constant operands act elementwise: a multi-element one is a learnable scale, shift or mask."""


def input_role(op: str, position: int) -> InputRole:
    """The role of input ``position`` of an ``op`` node (listed in ``INPUT_ROLES``, else a data input)."""
    listed = INPUT_ROLES.get(op, {}).get(position)
    if listed is not None:
        return listed
    if op in ELEMENTWISE:
        return InputRole(Role.PARAM, f"constant {op} operand")
    return InputRole(Role.PARAM, f"{op} input {position}")


def is_config(op: str, position: int) -> bool:
    """True when input ``position`` of ``op`` only configures the op (never a param)."""
    return input_role(op, position).role is Role.CONFIG


__all__ = ["ELEMENTWISE", "INPUT_ROLES", "InputRole", "Role", "input_role", "is_config"]
