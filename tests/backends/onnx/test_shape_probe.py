"""The one-time shape probe (backends/onnx/shape_probe.py, probe_run.py): used only when static inference
leaves shapes out, bounded in memory and time, silent, torch-free, and never trusted past an op whose
output shape depends on the data.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import analyse, conv_model, model, save, vinfo, weight

from sepconv_cli.backends.onnx.shape_probe import SOURCE, ProbeLimits, predicted_bytes, probe, tainted


def _ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def runtime_pads_model(batch="N") -> onnx.ModelProto:
    """TF-'same'-style padding computed from the input shape at run time (Shape -> Cast -> Div -> Ceil ->
    Pad), as legacy exports write it: static inference cannot follow the float arithmetic."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="/pad/Shape"),
        helper.make_node("Gather", ["s", "i2"], ["h"], axis=0, name="/pad/Gather"),
        helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT, name="/pad/Cast"),
        helper.make_node("Div", ["hf", "two"], ["hd"], name="/pad/Div"),
        helper.make_node("Ceil", ["hd"], ["hc"], name="/pad/Ceil"),
        helper.make_node("Cast", ["hc"], ["p"], to=TensorProto.INT64, name="/pad/Cast_1"),
        helper.make_node("Concat", ["zeros2", "p", "zero", "zeros2", "p", "zero"], ["pads"], axis=0,
                         name="/pad/Concat"),
        helper.make_node("Pad", ["x", "pads"], ["xp"], name="/pad/Pad"),
        helper.make_node("Conv", ["xp", "w"], ["y"], name="/conv/Conv"),
    ]
    inits = [_ints("i2", [2]), numpy_helper.from_array(np.array([2.0], np.float32), "two"),
             _ints("zeros2", [0, 0]), _ints("zero", [0]), weight("w", (4, 3, 3, 3))]
    return model(nodes, [vinfo("x", (batch, 3, 8, 8))], [vinfo("y", None)], inits)


RUNTIME_PADS_MACS = 4 * 14 * 6 * 27  # H 8 + 2*ceil(8/2) = 16 -> 14; W 8 -> 6


def test_pads_computed_at_run_time_are_probed_once(tmp_path):
    report = analyse(runtime_pads_model(), tmp_path).report
    conv = report.layer("/conv/Conv")
    assert conv.macs == RUNTIME_PADS_MACS and conv.output_shapes == ((1, 4, 14, 6),)
    assert report.model.shape_source == SOURCE and not report.unknown_rows
    pinned = analyse(runtime_pads_model(), tmp_path, ("x", (2, 3, 8, 8))).report
    assert pinned.macs == 2 * RUNTIME_PADS_MACS


def test_static_shapes_never_run_the_model(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was run although static shapes sufficed")

    monkeypatch.setattr(subprocess, "run", refuse)
    report = analyse(conv_model(("N", 3, 8, 8), (4, 3, 3, 3), pads=[1, 1, 1, 1]), tmp_path).report
    assert report.model.shape_source == "" and report.macs == 4 * 64 * 27


def _skeleton_inputs(m):
    feeds = [{"x": ((1, 3, 8, 8), TensorProto.FLOAT), "w": ((4, 3, 3, 3), TensorProto.FLOAT)}]
    outputs = {"xp": TensorProto.FLOAT, "y": TensorProto.FLOAT}
    sk = onnx.ModelProto()
    sk.CopyFrom(m)
    w = next(t for t in sk.graph.initializer if t.name == "w")
    sk.graph.initializer.remove(w)
    sk.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 3, 3]))
    return sk, feeds, outputs


def test_probe_reads_every_requested_shape_without_weight_bytes():
    sk, feeds, outputs = _skeleton_inputs(runtime_pads_model())
    found = probe(sk, feeds, outputs, ProbeLimits(), predicted=1000)
    assert found.error == "" and found.shapes == ({"xp": (1, 3, 16, 8), "y": (1, 4, 14, 6)},)


def test_probe_is_refused_above_its_memory_limit():
    sk, feeds, outputs = _skeleton_inputs(runtime_pads_model())
    found = probe(sk, feeds, outputs, ProbeLimits(memory=2**20), predicted=3 * 2**30)
    assert found.shapes == () and found.error == "it would hold about 3.0 GiB (limit 0.0 GiB)"


def test_probe_has_a_wall_clock_limit():
    sk, feeds, outputs = _skeleton_inputs(runtime_pads_model())
    found = probe(sk, feeds, outputs, ProbeLimits(seconds=0.01), predicted=1000)
    assert found.error == "it ran past 0.01 s"


def test_probe_failure_is_one_line_and_the_rows_stay_unknown(tmp_path):
    """A Reshape to a shape read from the input's values: zeros make it impossible, so the run fails;
    the rows stay unknown with the reason, never a silent 0."""
    nodes = [helper.make_node("Cast", ["n"], ["shape"], to=TensorProto.INT64, name="/cast"),
             helper.make_node("Reshape", ["x", "shape"], ["r"], name="/reshape"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="/mm/MatMul")]
    m = model(nodes, [vinfo("x", (1, 12)), vinfo("n", (2,))], [vinfo("y", None)], [weight("w", (4, 5))])
    report = analyse(m, tmp_path).report
    assert [r.name for r in report.unknown_rows] == ["/mm/MatMul"]
    warning = next(w for w in report.warnings if "/mm/MatMul" in w)
    assert "onnxruntime probe did not run" in warning and "\n" not in warning


def test_values_after_a_data_dependent_op_are_not_taken_from_the_probe(tmp_path):
    """NonZero's output length depends on the values: on zeros it is 0, which says nothing."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="/nz"),
             helper.make_node("Transpose", ["nz"], ["idx"], perm=[1, 0], name="/t"),
             helper.make_node("Cast", ["idx"], ["f"], to=TensorProto.FLOAT, name="/cast"),
             helper.make_node("MatMul", ["f", "w"], ["y"], name="/mm/MatMul")]
    m = model(nodes, [vinfo("x", (3, 4))], [vinfo("y", None)], [weight("w", (2, 5))])
    assert tainted(m.graph) >= {"nz", "idx", "f", "y"}
    report = analyse(m, tmp_path).report
    assert [r.name for r in report.unknown_rows] == ["/mm/MatMul"]
    assert any("depend on the data" in w for w in report.warnings)


def test_memory_prediction_counts_every_value_and_fills_unknown_ones():
    m = runtime_pads_model(batch=1)
    shapes = {"x": (1, 3, 8, 8), "w": (4, 3, 3, 3), "y": (1, 4, 14, 6), "xp": None}
    dtypes = {name: TensorProto.FLOAT for name in shapes}
    names = [i.name for i in m.graph.input] + [o for n in m.graph.node for o in n.output]
    predicted = predicted_bytes(m, shapes, dtypes)
    largest = 4 * 4 * 14 * 6
    assert predicted == 4 * (3 * 64 + 4 * 14 * 6) + (len(names) - 2) * largest


def test_the_probe_child_imports_neither_torch_nor_onnx(tmp_path):
    sk, feeds, outputs = _skeleton_inputs(runtime_pads_model())
    sk.graph.ClearField("output")
    sk.graph.output.extend(helper.make_tensor_value_info(n, t, None) for n, t in outputs.items())
    save(sk, tmp_path)
    (tmp_path / "feeds.json").write_text(json.dumps([{k: [list(s), t] for k, (s, t) in feeds[0].items()}]))
    code = ("import sys\nfrom sepconv_cli.backends.onnx import probe_run\n"
            f"found = probe_run.run({str(tmp_path)!r})\n"
            "assert found == [{'xp': [1, 3, 16, 8], 'y': [1, 4, 14, 6]}], found\n"
            "heavy = [m for m in ('torch', 'onnx') if m in sys.modules]\nassert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # onnxruntime's log is silenced


@pytest.mark.parametrize("limit", [ProbeLimits().memory])
def test_default_limits_are_bounded(limit):
    defaults = ProbeLimits()
    assert 0 < defaults.seconds <= 600 and 0 < limit <= defaults.address_space


def test_the_command_run_limits_bound_the_probe(tmp_path):
    """``--max-memory`` (``backends.limits``) applies to the probe: refused, the conv stays unknown and the
    warning says why in one line."""
    from sepconv_cli.backends.limits import RunLimits, bounded

    with bounded(RunLimits(memory=1024, seconds=30)):
        report = analyse(runtime_pads_model(), tmp_path).report
    assert [r.name for r in report.unknown_rows] == ["/conv/Conv"] and report.model.shape_source == ""
    warning = next(w for w in report.warnings if "/conv/Conv" in w)
    assert "onnxruntime probe did not run (it would hold about" in warning and "limit 0.0 GiB" in warning


def _endless_loop(source: str, out: str) -> list[onnx.NodeProto]:
    """``out = Loop(2**62 trips, cond true, carried source)`` with an unranked carried value: it never ends."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Relu", ["v_in"], ["v_out"])],
        "body", [vinfo("i", [], TensorProto.INT64), vinfo("cond_in", [], TensorProto.BOOL), vinfo("v_in", None)],
        [vinfo("cond_out", [], TensorProto.BOOL), vinfo("v_out", None)])
    return [helper.make_node("Constant", [], ["trips"], value=numpy_helper.from_array(np.array(2**62, np.int64))),
            helper.make_node("Constant", [], ["go"], value=numpy_helper.from_array(np.array(True))),
            helper.make_node("Loop", ["trips", "go", source], [out], body=body, name="/endless")]


def test_the_probe_runs_only_what_the_unknown_shapes_need(tmp_path):
    """An endless Loop feeding one conv beside runtime pads feeding another: the probe reads the padded
    shape without ever starting the Loop (its output depends on the data anyway)."""
    from sepconv_cli.backends.limits import RunLimits, bounded

    base = runtime_pads_model(batch=1)
    nodes = list(base.graph.node) + _endless_loop("x", "looped") + [
        helper.make_node("Conv", ["looped", "w"], ["y2"], name="/loop_conv/Conv")]
    m = model(nodes, list(base.graph.input), [vinfo("y", None), vinfo("y2", None)], list(base.graph.initializer))
    with bounded(RunLimits(seconds=20)):
        report = analyse(m, tmp_path).report
    assert report.layer("/conv/Conv").macs == RUNTIME_PADS_MACS and report.model.shape_source == SOURCE
    assert [r.name for r in report.unknown_rows] == ["/loop_conv/Conv"]
    assert not any("ran past" in w for w in report.warnings)
