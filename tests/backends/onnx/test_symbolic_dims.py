"""MACs as a formula in the dims that stay symbolic (backends/onnx/symbolic.py).

The formula of a ResNet-style and a UNet-style export must equal the exact count at three pinned sizes
on its lattice (and torch's flop counter there); a hand-built graph pins the JSON (golden file) and the
cases where no formula exists.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from golden_files import check_golden
from onnx import helper, numpy_helper
from onnx_builders import analyse, model, vinfo, weight

from sepconv_cli.backends.onnx.symbolic import lattice_step
from sepconv_cli.backends.registry import LoadOptions, load
from sepconv_cli.core.records import SymbolicMacs
from sepconv_cli.render.json import report_dict


def _value(sym: SymbolicMacs, sizes: dict[str, int]) -> Fraction:
    return sum((Fraction(t.coefficient, t.denominator) * math.prod(sizes[s] ** e for s, e in t.powers)
                for t in sym.terms), Fraction(0))


def _strided_net(hw=("H", "W")) -> object:
    """x[N,3,H,W] -> 3x3 s2 conv (8) -> Relu -> 3x3 s2 conv (16) -> global pool -> Gemm (10)."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="/stem/conv/Conv", pads=[1, 1, 1, 1],
                              strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"], name="/stem/act/Relu"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="/body/conv/Conv", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="/pool/GlobalAveragePool"),
             helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="/fc/Gemm", transB=1)]
    inits = [weight("w1", (8, 3, 3, 3), 1), weight("b1", (8,), 2), weight("w2", (16, 8, 3, 3), 3),
             weight("fc_w", (10, 16), 4), weight("fc_b", (10,), 5)]
    return model(nodes, [vinfo("x", ("N", 3, *hw))], [vinfo("y", ("N", 10))], inits)


def _strided_macs(h: int, w: int) -> int:
    return 8 * (h // 2) * (w // 2) * 27 + 16 * (h // 4) * (w // 4) * 72 + 160


def test_formula_of_a_strided_net_and_its_json(tmp_path):
    report = analyse(_strided_net(), tmp_path).report
    sym = report.macs_symbolic
    assert sym.expression == "126·H·W + 160" and sym.valid_when == "H and W multiples of 4, at least 4"
    for h, w in [(32, 32), (64, 96), (224, 224)]:
        pinned = analyse(_strided_net(), tmp_path, ("x", (1, 3, h, w))).report
        assert pinned.macs == _value(sym, {"H": h, "W": w}) == _strided_macs(h, w)
    stem = report.layer("/stem/conv/Conv")
    assert stem.macs is None and stem.macs_symbolic == "54·H·W" and stem.output_shapes == ((1, 8, "H/2", "W/2"),)
    assert stem.formula == "MACs = N·Cout·Hout·Wout·(Cin/g)·kh·kw = 54·H·W"
    assert report.layer("/fc/Gemm").macs == 160  # a constant row keeps its count
    data = report_dict(report)
    picked = {"model": {"assumed_dims": data["model"]["assumed_dims"], "inputs": data["model"]["inputs"]},
              "totals": {"macs_symbolic": data["totals"]["macs_symbolic"]},
              "layers": [{k: row[k] for k in ("name", "macs", "macs_symbolic", "formula", "output_shapes", "operands")}
                         for row in data["layers"]]}
    check_golden("onnx_symbolic.json", json.dumps(picked, indent=2, ensure_ascii=False) + "\n")


def test_pinned_formula_json_golden(tmp_path):
    """With every dim pinned: per-row formulas with their operands and the per-sample assumption."""
    report = analyse(_strided_net(hw=(8, 8)), tmp_path).report
    assert report.macs == _strided_macs(8, 8) and report.macs_symbolic is None
    data = report_dict(report)
    picked = {"model": {"assumed_dims": data["model"]["assumed_dims"]},
              "totals": {"macs": data["totals"]["macs"], "macs_symbolic": data["totals"]["macs_symbolic"]},
              "layers": [{k: row[k] for k in ("name", "macs", "formula", "operands")} for row in data["layers"]]}
    check_golden("onnx_formula_pinned.json", json.dumps(picked, indent=2, ensure_ascii=False) + "\n")


def test_lattice_step_is_the_largest_stride_product(tmp_path):
    m = _strided_net()
    assert lattice_step(m.graph, list(range(len(m.graph.node)))) == 4


def test_a_sequence_length_gives_a_quadratic_formula(tmp_path):
    """Self-attention scores over T tokens: x[N,T,8] @ W (8x8) then (x W)(x W)^T: 64·T + 8·T^2."""
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"], name="/q/MatMul"),
             helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1], name="/t/Transpose"),
             helper.make_node("MatMul", ["q", "qt"], ["y"], name="/scores/MatMul")]
    m = model(nodes, [vinfo("x", ("N", "T", 8))], [vinfo("y", ("N", "T", "T"))], [weight("wq", (8, 8))])
    sym = analyse(m, tmp_path).report.macs_symbolic
    assert sym.expression == "8·T^2 + 64·T" and sym.valid_when == "T is any size"
    assert analyse(m, tmp_path, ("x", (1, 37, 8))).report.macs == 8 * 37 * 37 + 64 * 37


def test_no_formula_when_sizes_floor_off_any_lattice(tmp_path):
    """Resize by 0.3 floors its output size: no polynomial holds on any lattice tried, so the rows stay
    unknown, are named, and the reason says to pin the dims."""
    scales = numpy_helper.from_array(np.array([1, 1, 0.3, 0.3], np.float32), "scales")
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest", name="/down/Resize"),
             helper.make_node("Conv", ["r", "w"], ["y"], name="/conv/Conv")]
    m = model(nodes, [vinfo("x", ("N", 3, "H", "W"))], [vinfo("y", None)], [scales, weight("w", (4, 3, 1, 1))])
    report = analyse(m, tmp_path).report
    assert report.macs_symbolic is None and [r.name for r in report.unknown_rows] == ["/conv/Conv"]
    assert any("no exact formula found" in w and "--input-shape" in w for w in report.warnings)


def test_symbolic_batch_given_on_the_command_line_stays_symbolic(tmp_path):
    report = analyse(_strided_net(hw=(8, 8)), tmp_path, ("x", ("B", 3, 8, 8))).report
    assert report.macs_symbolic.expression == f"{_strided_macs(8, 8):,}·B"
    assert report.macs_symbolic.valid_when == "B is any size"
    assert report.model.assumed_dims == ()


def _export_symbolic(module, x, path, axes):
    from exports import export

    return export(module, x, path, axes=axes)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "axes", "multiples"), [
    ("resnet", {0: "N", 2: "H", 3: "W"}, [(1, 1), (2, 3), (7, 7)]),
    ("unet", {0: "N", 2: "D", 3: "H", 4: "W"}, [(1, 1, 1), (2, 3, 4), (5, 5, 5)]),
])
def test_formula_matches_pinned_counts_at_three_sizes(tmp_path, name, axes, multiples):
    torch = pytest.importorskip("torch")
    from exports import GroupNormUNet3D, TinyResNet, torch_macs, trained

    module = trained(TinyResNet() if name == "resnet" else GroupNormUNet3D())
    x = torch.randn(2, 3, 64, 64) if name == "resnet" else torch.randn(2, 1, 16, 16, 16)
    path = _export_symbolic(module, x, str(tmp_path / f"{name}.onnx"), axes)
    sym = load(path, LoadOptions()).report.macs_symbolic
    step = int(sym.valid_when.split(" of ")[1].split(",")[0])
    assert step == (32 if name == "resnet" else 4)
    for multiple in multiples:
        sizes = dict(zip(sym.symbols, (step * m for m in multiple)))
        shape = (1, x.shape[1], *sizes.values())
        pinned = load(path, LoadOptions(input_shapes=((None, shape),))).report
        assert pinned.macs == _value(sym, sizes) == torch_macs(module, torch.randn(*shape)), sizes
