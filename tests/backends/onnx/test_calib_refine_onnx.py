"""The depthwise refit and the post-ReLU fit on an ONNX model: kept only when better, errors as measured."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from calib_builders import dncnn, smooth_images
from onnx import TensorProto, helper

from sepconv_cli.backends.onnx.calibrate import calibrate_onnx
from sepconv_cli.backends.registry import ConvertOptions, backend_for, load
from sepconv_cli.calibration.solve import CalibOptions, split_samples
from sepconv_cli.planner import PlanOptions, make_plan


def _tensors(model: onnx.ModelProto, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(names, {"x": x})


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("refine") / "dncnn.onnx")
    onnx.save(dncnn(depth=4, channels=8, seed=5), path)
    loaded = load(path)
    plan = make_plan(loaded.report, loaded.handle, PlanOptions(rank=1))
    converted = backend_for("onnx").rewrite(loaded, plan, ConvertOptions())
    x = smooth_images(48)
    out = {"loaded": loaded, "x": x}
    for label, flags in (("plain", dict(refit_depthwise=False)), ("depthwise", {}), ("refined", dict(fit_relu=True))):
        out[label] = calibrate_onnx(loaded.native, converted.native, converted.plan, {"x": x},
                                    CalibOptions(batch_size=8, **flags))
    return out


def test_refinements_are_used_and_lower_the_layer_held_back_error(runs):
    plain, depthwise, refined = (runs[k].report for k in ("plain", "depthwise", "refined"))
    first_plain, first = plain.layers[0], depthwise.layers[0]  # same input on both paths: comparable
    assert first.depthwise_refit and first.holdout_error_after < first_plain.holdout_error_after
    assert all(not r.depthwise_refit and not r.relu_fit for r in plain.layers)
    assert not any(r.relu_fit for r in depthwise.layers) and any(r.relu_fit for r in refined.layers)
    relu_first = refined.layers[0]  # a post-ReLU fit gives up pre-ReLU error for post-ReLU error
    assert relu_first.relu_fit and relu_first.relu_error_after < relu_first.relu_error_before
    # both refinements are judged layer by layer, on that layer's held-back error
    assert all(r.relu_error_after < r.relu_error_before for r in refined.layers if r.relu_fit)


def test_recorded_errors_equal_an_independent_measurement(runs):
    x, report = runs["x"], runs["refined"].report
    _, held = split_samples(48, 0.25, 0)
    names = {"conv0": "conv0", "conv1": "conv1.bn", "conv2": "conv2.bn"}
    for record in report.layers:
        (target,) = _tensors(runs["loaded"].native, [names[record.name]], x[held])
        (got,) = _tensors(runs["refined"].model, [record.name], x[held])
        assert record.holdout_error_after == pytest.approx(_rel(got, target), rel=1e-3)
        if record.relu_error_after is not None:
            post = _rel(np.maximum(got, 0), np.maximum(target, 0))
            assert record.relu_error_after == pytest.approx(post, rel=1e-3)
            assert record.relu_fit == (record.relu_error_after < record.relu_error_before)
    onnx.checker.check_model(runs["refined"].model, full_check=True)
