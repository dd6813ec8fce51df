"""PyTorch calibration walks traced graphs once, agrees with the hook fallback, and calibrates .pt2 programs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import fx, nn

from sepconv_cli.backends.base import ConvertOptions, LoadedModel
from sepconv_cli.backends.torch.calib_hooks import HookDriver
from sepconv_cli.backends.torch.calib_layouts import ModuleLayout
from sepconv_cli.backends.torch.calibrate import calibrate_pt2, calibrate_torch
from sepconv_cli.backends.torch.rewriter import MODULE_BACKEND, PT2_BACKEND
from sepconv_cli.backends.torch.walk import FxWalker
from sepconv_cli.calibration.loop import LayerTask, run_calibration
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.core.plans import Plan, PlannedLayer


class Denoiser(nn.Module):
    """x - f(x): conv -> relu -> conv -> bn -> relu -> conv (no bias) -> relu -> conv(1 channel)."""

    def __init__(self):
        super().__init__()
        self.c0, self.c1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.out = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        h = torch.relu(self.c0(x))
        h = torch.relu(self.bn1(self.c1(h)))
        return x - self.out(torch.relu(self.c2(h)))


def _net(seed=0):
    torch.manual_seed(seed)
    net = Denoiser().eval()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 1.5)
    return net


PLAN = Plan(layers=(PlannedLayer("c0", 1, 0, 0, None, None), PlannedLayer("c1", 1, 0, 0, None, None, bn_folded="bn1"),
                    PlannedLayer("c2", 2, 0, 0, None, None)))


def _x(n, seed=1):
    x = np.cumsum(np.random.default_rng(seed).standard_normal((n, 1, 10, 10)), axis=3)
    return (x / 4).astype(np.float32)


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(np.asarray(b, np.float64)))


def test_fx_walker_matches_the_forward_pass_and_runs_every_node_once():
    net = _net()
    gm = fx.symbolic_trace(net)
    x = torch.from_numpy(_x(5))
    walker = FxWalker(gm, [[x[:2]], [x[2:]]])
    bn = next(n for n in gm.graph.nodes if n.target == "bn1")
    taken = walker.advance(walker.index[bn] + 1, [bn])
    assert all({n.name for n in env} == {"x", "bn1"} for env in walker.live)  # x is read again at the end
    walker.advance(len(walker.nodes))
    with torch.no_grad():
        expected_bn = net.bn1(net.c1(torch.relu(net.c0(x))))
        expected = net(x)
    torch.testing.assert_close(torch.cat([t[bn] for t in taken]), expected_bn)
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    torch.testing.assert_close(torch.cat([env[out] for env in walker.live]), expected)
    assert walker.nodes_run == len(walker.nodes)


@pytest.mark.slow
def test_traced_and_hook_drivers_give_the_same_refit():
    net = _net()
    converted = MODULE_BACKEND.rewrite(LoadedModel(report=None, handle=None, native=net), PLAN, ConvertOptions())
    x = _x(24)
    options = CalibOptions(batch_size=5)
    traced = calibrate_torch(net, converted.native, converted.plan, {"x": x}, options)
    layout = ModuleLayout(copy.deepcopy(converted.native), net, converted.plan)
    tasks = [LayerTask(p.name, 1, p.rank) for p in PLAN.layers]
    hooked, _, _ = run_calibration(HookDriver(layout, converted.plan, {"x": x}), tasks, 24, options)
    assert [r.name for r in traced.report.layers] == ["c0", "c1", "c2"]
    for a, b in zip(traced.report.layers, hooked.layers):
        assert a.holdout_error_after == pytest.approx(b.holdout_error_after, rel=1e-6, abs=1e-9)
        assert a.fit_error_before == pytest.approx(b.fit_error_before, rel=1e-6)
    assert traced.report.output_error_after == pytest.approx(hooked.output_error_after, rel=1e-6)
    assert traced.report.output_error_after < traced.report.output_error_before


@pytest.mark.slow
def test_pt2_programs_are_calibrated_and_exported_again():
    net = _net()
    program = torch.export.export(net, (torch.zeros(2, 1, 10, 10),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    converted = PT2_BACKEND.rewrite(LoadedModel(report=None, handle=None, native=program), PLAN, ConvertOptions())
    x = _x(24)
    before = converted.native.module()(torch.from_numpy(x)).detach().numpy()
    given = {k: v.clone() for k, v in converted.native.state_dict.items()}
    result = calibrate_pt2(program, converted.native, converted.plan, {"x": x}, CalibOptions(holdout=0.0))
    assert isinstance(result.model, torch.export.ExportedProgram)
    calibrated = result.model.module()
    with torch.no_grad():
        got, want = calibrated(torch.from_numpy(x)).numpy(), net(torch.from_numpy(x)).numpy()
    report = result.report
    assert report.output_error_before == pytest.approx(_rel(before, want), rel=1e-4)
    assert report.output_error_after == pytest.approx(_rel(got, want), rel=1e-4)
    assert report.output_error_after < report.output_error_before
    kept = not report.layers[2].fell_back  # c2 had no bias: a kept refit adds one, read by the graph
    assert (getattr(dict(calibrated.named_modules())["c2.pointwise"], "bias", None) is not None) == kept
    assert all(torch.equal(v, converted.native.state_dict[k]) for k, v in given.items())  # untouched


@pytest.mark.slow
def test_convert_calibrates_a_pt2_file_end_to_end(tmp_path):
    from sepconv_cli.pipeline.calibrate import CalibrationHook
    from sepconv_cli.pipeline.convert import ConvertRequest, convert
    from sepconv_cli.planner import PlanOptions

    net = _net()
    program = torch.export.export(net, (torch.zeros(2, 1, 10, 10),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "net.pt2")
    np.savez(tmp_path / "calib.npz", x=_x(32))
    hook = CalibrationHook(str(tmp_path / "calib.npz"), CalibOptions(samples=32))
    out = tmp_path / "net.sep.pt2"
    result = convert(ConvertRequest(source=str(tmp_path / "net.pt2"), output=str(out), plan=PlanOptions(rank=1),
                                    after_rewrite=hook))
    assert result.written and hook.report is not None and len(hook.report.layers) == len(result.plan.layers)
    written = torch.export.load(out).module()
    x = torch.from_numpy(_x(4, seed=7))
    with torch.no_grad():
        torch.testing.assert_close(written(x), hook.result.model.module()(x))


def _candidates(net):
    from sepconv_cli.backends.torch.runtime import batchnorm_params
    from sepconv_cli.calibration.curves import CurveCandidate
    from sepconv_cli.core.decompose import fold_batchnorm
    from sepconv_cli.core.weights import ConvWeights

    out = []
    for name, bn in (("c0", None), ("c1", "bn1"), ("c2", None)):
        conv = getattr(net, name)
        bias = None if conv.bias is None else conv.bias.detach().numpy()
        params = batchnorm_params(getattr(net, bn), bn) if bn else None
        weight, folded = fold_batchnorm(ConvWeights(conv.weight.detach().numpy(), bias, params), 1)
        out.append(CurveCandidate(name, weight, 1, folded, ranks=(1, 2, 4, 8), bn_folded=bn))
    return out


def test_module_and_program_curves_agree_with_a_direct_torch_recomputation():
    from sepconv_cli.backends.torch.curves import layer_curves_pt2, layer_curves_torch
    from sepconv_cli.calibration.solve import split_samples
    from sepconv_cli.core.decompose import decompose

    net, x = _net(), _x(30)
    candidates = _candidates(net)
    module = layer_curves_torch(net, candidates, {"x": x}, CalibOptions(ridge=0.0, batch_size=7))
    program = torch.export.export(net, (torch.zeros(2, 1, 10, 10),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    from_pt2 = layer_curves_pt2(program, candidates, {"x": x}, CalibOptions(ridge=0.0, batch_size=7))
    for name in ("c0", "c1", "c2"):
        np.testing.assert_allclose(module[name].error_refit, from_pt2[name].error_refit, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(module[name].error_svd, from_pt2[name].error_svd, rtol=1e-4, atol=1e-7)
    fit, held = split_samples(30, 0.25, 0)
    with torch.no_grad():
        h0 = torch.relu(net.c0(torch.from_numpy(x)))
        y = net.bn1(net.c1(h0)).double().permute(0, 2, 3, 1).reshape(30, 100, 8).numpy()
        for i, rank in enumerate(module["c1"].ranks):
            kernel = torch.from_numpy(decompose(candidates[1].weight, 1, rank).depthwise).float()
            z = torch.nn.functional.conv2d(h0, kernel, padding=1, groups=8).double()
            z1 = np.concatenate([z.permute(0, 2, 3, 1).reshape(30, 100, -1).numpy(), np.ones((30, 100, 1))], axis=2)
            p = np.linalg.lstsq(z1[fit].reshape(-1, z1.shape[2]), y[fit].reshape(-1, 8), rcond=None)[0]
            expected = np.linalg.norm(y[held] - z1[held] @ p) / np.linalg.norm(y[held])
            if module["c1"].refit_kept[i]:
                assert module["c1"].error_refit[i] == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert module["c1"].error_svd[-1] < 1e-5  # rank 8 = min(Cout, K): exact
