"""Calibrated refit of converted ONNX models, checked against independent onnxruntime runs."""

from __future__ import annotations

import io
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console

from sepconv_cli.backends.onnx.calibrate import calibrate_onnx
from sepconv_cli.backends.onnx.probe import Runner
from sepconv_cli.backends.registry import BACKENDS, ConvertOptions, backend_for, load
from sepconv_cli.calibration.loop import replan
from sepconv_cli.calibration.solve import TOO_FEW_ROWS, CalibOptions
from sepconv_cli.cli.convert import _calibration_hook, _Progress
from sepconv_cli.errors import InputError, UsageError
from sepconv_cli.pipeline import convert as conversion
from sepconv_cli.pipeline.calibrate import DRIVERS, REFUSED, CalibrationHook, driver_for
from sepconv_cli.planner import PlanOptions, make_plan


def _t(name, array):
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def _separable_weight(rng, cout, cin, rank, k=3):
    """A kernel whose every input-channel slice has rank ``rank`` exactly."""
    u, v = rng.normal(size=(cin, cout, rank)), rng.normal(size=(cin, rank, k * k))
    return np.einsum("icr,irk->cik", u, v).reshape(cout, cin, k, k)


def _two_conv_model(rng, batch="N", hw=8, cin=3, w1=None, w2=None):
    """x -> conv1(+bias) -> bn1 -> relu -> conv2 (groups=2, no bias) -> relu -> GAP -> fc."""
    w1 = rng.normal(size=(8, cin, 3, 3)) * 0.3 if w1 is None else w1
    w2 = rng.normal(size=(8, 4, 3, 3)) * 0.3 if w2 is None else w2
    inits = [_t("w1", w1), _t("b1", rng.normal(size=8) * 0.1), _t("g", rng.uniform(0.5, 1.5, 8)),
             _t("be", rng.normal(size=8) * 0.1), _t("m", rng.normal(size=8) * 0.1), _t("v", rng.uniform(0.5, 1.5, 8)),
             _t("w2", w2), _t("fw", rng.normal(size=(8, 5))), _t("fb", np.zeros(5))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn1"], name="bn1"),
             helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], group=2),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
             helper.make_node("Gemm", ["flat", "fw", "fb"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "two_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, cin, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _convert(model, tmp_path, fold_bn=True, **plan_kw):
    path = str(tmp_path / "model.onnx")
    onnx.save(model, path)
    loaded = load(path)
    plan = make_plan(loaded.report, loaded.handle, PlanOptions(fold_bn=fold_bn, **plan_kw))
    converted = backend_for("onnx").rewrite(loaded, plan, ConvertOptions(fold_bn=fold_bn))
    return loaded, converted


def _probe(model, names, x):
    """Independent run: ``names`` exposed as extra outputs of a full copy of ``model``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names if n != "y")
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, {"x": x})


def _rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def _inputs(n, shape=(3, 8, 8), seed=1):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def test_layer_errors_match_an_independent_onnxruntime_measurement(tmp_path):
    loaded, conv = _convert(_two_conv_model(np.random.default_rng(0)), tmp_path, rank=1)
    x = _inputs(24)
    result = calibrate_onnx(loaded.native, conv.native, conv.plan, {"x": x}, CalibOptions(holdout=0.0))
    first, second = result.report.layers
    assert [first.name, second.name] == ["conv1", "conv2"] and result.report.samples_fit == 24
    bn1, c2 = _probe(loaded.native, ["bn1", "c2"], x)
    (svd_c1,) = _probe(conv.native, ["c1"], x)
    cal_c1, cal_c2 = _probe(result.model, ["c1", "c2"], x)
    assert first.fit_error_before == pytest.approx(_rel(svd_c1, bn1), rel=1e-4)
    assert first.fit_error_after == pytest.approx(_rel(cal_c1, bn1), rel=1e-4)
    assert second.fit_error_after == pytest.approx(_rel(cal_c2, c2), rel=1e-4)
    for rec in (first, second):  # a post-ReLU fit may trade pre-ReLU error for post-ReLU error
        assert rec.fit_error_after <= rec.fit_error_before or rec.relu_error_after < rec.relu_error_before
    assert result.report.end_to_end_on == "fit"
    (y,) = _probe(loaded.native, ["y"], x)
    (y_cal,) = _probe(result.model, ["y"], x)
    assert result.report.output_error_after == pytest.approx(_rel(y_cal, y), rel=1e-4)


def test_without_bn_folding_the_target_is_the_conv_output(tmp_path):
    loaded, conv = _convert(_two_conv_model(np.random.default_rng(9)), tmp_path, fold_bn=False, rank=1)
    assert conv.plan.layers[0].bn_folded is None
    assert any(n.op_type == "BatchNormalization" for n in conv.native.graph.node)
    x = _inputs(12)
    result = calibrate_onnx(loaded.native, conv.native, conv.plan, {"x": x}, CalibOptions(holdout=0.0))
    (c1,) = _probe(loaded.native, ["c1"], x)
    (svd_c1,) = _probe(conv.native, ["c1"], x)
    (cal_c1,) = _probe(result.model, ["c1"], x)
    first = result.report.layers[0]
    assert first.fit_error_before == pytest.approx(_rel(svd_c1, c1), rel=1e-4)
    assert first.fit_error_after == pytest.approx(_rel(cal_c1, c1), rel=1e-4)


def test_corrupted_pointwise_weights_are_recovered_exactly(tmp_path):
    rng = np.random.default_rng(2)
    model = _two_conv_model(rng, w1=_separable_weight(rng, 8, 3, 1), w2=_separable_weight(rng, 8, 4, 1))
    loaded, conv = _convert(model, tmp_path, rank=1)
    true = {t.name: numpy_helper.to_array(t) for t in conv.native.graph.initializer}
    for tensor in conv.native.graph.initializer:  # a bad start: the refit alone must find the weights
        if tensor.name.endswith("pointwise.weight"):
            tensor.CopyFrom(_t(tensor.name, numpy_helper.to_array(tensor) + rng.normal(size=tensor.dims)))
    result = calibrate_onnx(loaded.native, conv.native, conv.plan, {"x": _inputs(16)}, CalibOptions(ridge=1e-10))
    got = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    for name in ("conv1/pointwise.weight", "conv2/pointwise.weight", "conv1/pointwise.bias"):
        np.testing.assert_allclose(got[name], true[name], atol=2e-3, rtol=1e-3)
    assert all(rec.holdout_error_after < 1e-4 < rec.holdout_error_before for rec in result.report.layers)
    assert result.report.output_error_after < 1e-4


def test_result_is_valid_onnx_and_the_given_models_are_untouched(tmp_path):
    loaded, conv = _convert(_two_conv_model(np.random.default_rng(3)), tmp_path, rank=1)
    before = (loaded.native.SerializeToString(), conv.native.SerializeToString())
    seen = []
    options = CalibOptions(progress=lambda name, done, total: seen.append((name, done, total)))
    result = calibrate_onnx(loaded.native, conv.native, conv.plan, {"x": _inputs(32)}, options)
    assert (loaded.native.SerializeToString(), conv.native.SerializeToString()) == before
    assert seen == [("conv1", 1, 2), ("conv2", 1 + 1, 2)]
    onnx.checker.check_model(result.model, full_check=True)
    report = result.report
    assert report.samples_fit == 24 and report.samples_holdout == 8 and report.seconds > 0
    assert report.output_error_after < report.output_error_before
    conv2 = next(n for n in result.model.graph.node if n.name == "conv2/pointwise")
    kept = not report.layers[1].fell_back
    assert (list(conv2.input)[2:] == ["conv2/pointwise.bias"]) == kept


def test_max_output_error_picks_the_smallest_sufficient_rank(tmp_path):
    rng = np.random.default_rng(4)
    model = _two_conv_model(rng, w1=_separable_weight(rng, 8, 3, 2) * 0.3, w2=_separable_weight(rng, 8, 4, 1))
    loaded, conv = _convert(model, tmp_path, rank=1)
    options = CalibOptions(max_output_error=1e-3)
    result = calibrate_onnx(loaded.native, conv.native, conv.plan, {"x": _inputs(16)}, options)
    assert result.ranks == {"conv1": 2, "conv2": 1}
    assert all("smallest rank" in rec.note and rec.holdout_error_after <= 1e-3 for rec in result.report.layers)
    shapes = {t.name: tuple(t.dims) for t in result.model.graph.initializer}
    assert shapes["conv1/depthwise.weight"] == (6, 1, 3, 3) and shapes["conv1/pointwise.weight"] == (8, 6, 1, 1)
    path = str(tmp_path / "calibrated.onnx")
    onnx.save(result.model, path)
    onnx.checker.check_model(path, full_check=True)
    again = load(path)
    new_plan = replan(conv.plan, loaded.report, result)
    first = new_plan.layers[0]
    # independent arithmetic: depthwise 3*2*9 + pointwise 8*6 + bias 8; MACs on the 8x8 grid, batch N = 1.
    assert first.rank == 2 and first.params_after == 3 * 2 * 9 + 8 * 6 + 8
    assert first.energy == pytest.approx(1.0)
    assert again.report.layer("conv1/pointwise").params + again.report.layer("conv1/depthwise").params == 110


def test_too_few_samples_for_a_well_posed_fit_falls_back_and_says_so(tmp_path):
    rng = np.random.default_rng(5)
    model = _two_conv_model(rng, hw=1)
    loaded, conv = _convert(model, tmp_path, rank=1)
    result = calibrate_onnx(loaded.native, conv.native, conv.plan, {"x": _inputs(4, (3, 1, 1))},
                            CalibOptions(holdout=0.0))
    second = result.report.layers[1]
    assert second.fell_back == TOO_FEW_ROWS.format(rows=4, unknowns=5)
    svd = {t.name: numpy_helper.to_array(t) for t in conv.native.graph.initializer}
    got = {t.name: numpy_helper.to_array(t) for t in result.model.graph.initializer}
    np.testing.assert_array_equal(got["conv2/pointwise.weight"], svd["conv2/pointwise.weight"])
    assert "conv2/pointwise.bias" not in got


def test_static_batch_dim_is_fed_one_batch_at_a_time(tmp_path):
    loaded, conv = _convert(_two_conv_model(np.random.default_rng(6), batch=1), tmp_path, rank=1)
    result = calibrate_onnx(loaded.native, conv.native, conv.plan, {"x": _inputs(10)}, CalibOptions(batch_size=4))
    assert result.report.samples_fit + result.report.samples_holdout == 10
    assert all(rec.holdout_error_after <= rec.holdout_error_before or rec.relu_fit for rec in result.report.layers)
    with pytest.raises(InputError, match="no calibration samples"):
        calibrate_onnx(loaded.native, conv.native, conv.plan, {"x": _inputs(0)}, CalibOptions())


def test_runner_batches_when_it_can_and_keeps_a_fixed_batch_when_it_must():
    x = _inputs(5, (2, 3, 3))
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    flat = helper.make_node("Reshape", ["c", "shape"], ["y"], name="flat")  # hard-codes batch 1
    inits = [_t("w", np.ones((4, 2, 1, 1))), numpy_helper.from_array(np.array([1, 36], np.int64), "shape")]
    graph = helper.make_graph([conv, flat], "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 36])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    expected = np.repeat(x.sum(axis=1, keepdims=True), 4, axis=1)
    free = Runner(model, ["c"], TensorProto.FLOAT, {"x": x}, threads=1)
    assert free.step is None
    np.testing.assert_allclose(free.run(np.arange(5))[0], expected, rtol=1e-6)
    fixed = Runner(model, None, TensorProto.FLOAT, {"x": x}, threads=1)
    assert fixed.step == 1
    np.testing.assert_allclose(fixed.run(np.array([4, 1]))[0], expected[[4, 1]].reshape(2, 36), rtol=1e-6)


def test_convert_pipeline_with_calibration_hook_writes_the_calibrated_model(tmp_path):
    source = str(tmp_path / "model.onnx")
    onnx.save(_two_conv_model(np.random.default_rng(7)), source)
    calib = str(tmp_path / "calib.npz")
    np.savez(calib, images=_inputs(20))
    hook = CalibrationHook(calib, CalibOptions(samples=16))
    out = str(tmp_path / "out.onnx")
    result = conversion.convert(conversion.ConvertRequest(source=source, output=out, plan=PlanOptions(rank=1),
                                                          after_rewrite=hook))
    assert hook.report is not None and hook.report.samples_fit + hook.report.samples_holdout == 16
    assert "calibrate" in result.timings and result.written
    written = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    expected = {t.name: numpy_helper.to_array(t) for t in hook.result.model.graph.initializer}
    np.testing.assert_array_equal(written["conv2/pointwise.weight"], expected["conv2/pointwise.weight"])
    conv2 = next(p for p in result.plan.layers if p.name == "conv2")
    assert conv2.pointwise_bias == (not hook.report.layers[1].fell_back)
    assert conv2.params_after == 8 * 9 + 8 * 4 + (8 if conv2.pointwise_bias else 0)


def test_bad_calibration_inputs_leave_no_output_behind(tmp_path):
    source = str(tmp_path / "model.onnx")
    onnx.save(_two_conv_model(np.random.default_rng(8)), source)
    calib = str(tmp_path / "calib.npz")
    np.savez(calib, x=np.full((4, 3, 8, 8), np.nan, np.float32))
    out = tmp_path / "out.onnx"
    request = conversion.ConvertRequest(source=source, output=str(out), plan=PlanOptions(rank=1),
                                        after_rewrite=CalibrationHook(calib))
    with pytest.raises(InputError, match="contains NaN or Inf"):
        conversion.convert(request)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npz", "model.onnx"]


def test_every_convertible_format_has_a_calibration_route_or_a_reason():
    assert set(BACKENDS) <= set(DRIVERS) | set(REFUSED)
    with pytest.raises(UsageError, match="export them to ONNX"):
        driver_for("torchscript")
    assert DRIVERS["pt2"].endswith(":calibrate_pt2")


def test_cli_progress_bar_covers_calibration_on_a_terminal_only(tmp_path):
    source, calib = str(tmp_path / "model.onnx"), str(tmp_path / "calib.npz")
    onnx.save(_two_conv_model(np.random.default_rng(9)), source)
    np.savez(calib, x=_inputs(8))
    drawn = {}
    for terminal in (True, False):
        buf = io.StringIO()
        progress = _Progress(calibrating=True, console=Console(file=buf, force_terminal=terminal, width=100))
        hook = _calibration_hook(calib, 8, None, 0, progress)
        assert hook.options.progress == progress.calibrated
        request = conversion.ConvertRequest(source=source, output=str(tmp_path / f"{terminal}.onnx"),
                                            plan=PlanOptions(rank=1), verify=False, after_rewrite=hook)
        try:
            conversion.convert(request, progress)
        finally:
            progress.close()
        drawn[terminal] = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert re.search(r"converting layers\W+100%", drawn[True]), drawn[True]
    assert re.search(r"calibrating\W+0%", drawn[True]) and re.search(r"calibrating\W+100%", drawn[True])
    assert drawn[False] == ""
