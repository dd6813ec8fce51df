"""The segment walker runs a graph forward piece by piece and agrees with one full onnxruntime run."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from calib_builders import dncnn, smooth_images
from onnx import TensorProto, helper, numpy_helper

from sepconv_cli.backends.onnx.calibrate import calibrate_onnx
from sepconv_cli.backends.onnx.segments import Walker
from sepconv_cli.backends.registry import ConvertOptions, backend_for, load
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.planner import PlanOptions, make_plan


def _full(model: onnx.ModelProto, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names if n not in known)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(names, {"x": x})


def _chunks(x: np.ndarray, sizes: list[int]) -> list[dict[str, np.ndarray]]:
    cuts = np.cumsum([0] + sizes)
    return [{"x": x[a:b]} for a, b in zip(cuts[:-1], cuts[1:])]


def test_walking_in_segments_matches_one_full_run_and_keeps_only_the_live_set():
    model = dncnn(depth=5, channels=6)
    x = smooth_images(7)
    walker = Walker(model, _chunks(x, [3, 4]), threads=1)
    taken = walker.advance(walker.producer("conv2.bn") + 1, ["conv1.relu", "conv2.bn"])
    # Live after the cut: the input (read by the residual Sub at the end) and what conv2's ReLU reads.
    assert [sorted(c) for c in walker.live] == [["conv2.bn", "x"]] * 2
    end = walker.advance(len(walker.nodes), ["y"])
    expected = _full(model, ["conv1.relu", "conv2.bn", "y"], x)
    for name, want in zip(["conv1.relu", "conv2.bn"], expected[:2]):
        np.testing.assert_allclose(np.concatenate([t[name] for t in taken]), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([t["y"] for t in end]), expected[2], rtol=1e-5, atol=1e-6)
    assert walker.nodes_run == len(walker.nodes)  # every node ran once per chunk, no prefix twice
    with pytest.raises(Exception, match="walk back"):
        walker.advance(1)


def _shape_and_if_model() -> onnx.ModelProto:
    """``Shape(x)`` made first and read last (not per-sample), and an ``If`` whose branches read outer ``r``."""
    then = helper.make_graph([helper.make_node("Neg", ["r"], ["t_out"])], "then", [],
                             [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["r"], ["e_out"])], "else", [],
                              [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape"),
             helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Constant", [], ["flag"], name="flag",
                              value=numpy_helper.from_array(np.array(True))),
             helper.make_node("If", ["flag"], ["branch"], name="if", then_branch=then, else_branch=other),
             helper.make_node("Flatten", ["branch"], ["flat"], name="flat"),
             helper.make_node("Reshape", ["flat", "shape"], ["y"], name="back")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_batch_sized_tensors_and_outer_scope_reads_cross_cuts_per_chunk():
    model = _shape_and_if_model()
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    walker = Walker(model, _chunks(x, [2, 3]), threads=1)
    walker.advance(3)  # cut before the If: its branches read ``r`` from the outer graph
    assert all({"shape", "r", "flag"} <= set(c) for c in walker.live)
    assert [c["shape"].tolist() for c in walker.live] == [[2, 2, 3], [3, 2, 3]]
    for stop in (4, 5, 6):
        walker.advance(stop)
    out = np.concatenate([c["y"] for c in walker.live])
    np.testing.assert_allclose(out, -np.maximum(x, 0))


def test_calibration_walks_each_graph_once(tmp_path):
    path = str(tmp_path / "dncnn.onnx")
    onnx.save(dncnn(depth=5, channels=8), path)
    loaded = load(path)
    plan = make_plan(loaded.report, loaded.handle, PlanOptions(rank=2))
    converted = backend_for("onnx").rewrite(loaded, plan, ConvertOptions())
    seen: list[tuple[str, int, int]] = []
    options = CalibOptions(batch_size=4, sample_progress=lambda name, done, total: seen.append((name, done, total)))
    result = calibrate_onnx(loaded.native, converted.native, converted.plan, {"x": smooth_images(20)}, options)
    assert [r.name for r in result.report.layers] == ["conv0", "conv1", "conv2", "conv3"]
    assert seen[-1] == ("conv3", 20, 20) and [s for s in seen if s[0] == "conv0"][0] == ("conv0", 4, 20)
    assert result.report.output_error_after < result.report.output_error_before
