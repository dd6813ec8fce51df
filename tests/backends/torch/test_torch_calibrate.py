"""Calibrated refit of converted PyTorch modules, checked against direct forward passes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sepconv_cli.backends.base import ConvertOptions, LoadedModel
from sepconv_cli.backends.torch.calibrate import calibrate_torch
from sepconv_cli.backends.torch.modules import apply_manifest
from sepconv_cli.backends.torch.rewriter import MODULE_BACKEND
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.core.plans import Plan, PlannedLayer
from sepconv_cli.errors import UsageError


class Net(nn.Module):
    """conv1 -> bn1 -> relu -> conv2 (groups=2, no bias) -> relu -> up (ConvTranspose2d) -> mean -> head."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.up = nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.head(self.up(x).mean((2, 3)))


def _net(seed=0, separable_rank=None):
    torch.manual_seed(seed)
    net = Net().eval()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 1.5)
        if separable_rank is not None:  # every input-channel slice of conv1 of rank `separable_rank`
            u, v = torch.randn(3, 8, separable_rank), torch.randn(3, separable_rank, 9)
            net.conv1.weight.copy_(torch.einsum("icr,irk->cik", u, v).reshape(8, 3, 3, 3) * 0.3)
    return net


# Deliberately not in forward order: calibration must follow the forward pass.
PLAN = Plan(layers=(PlannedLayer("up", 1, 0, 0, None, None), PlannedLayer("conv2", 1, 0, 0, None, None),
                    PlannedLayer("conv1", 1, 0, 0, None, None, bn_folded="bn1")))


def _convert(net, plan=PLAN):
    return MODULE_BACKEND.rewrite(LoadedModel(report=None, handle=None, native=net), plan, ConvertOptions())


def _x(n, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 3, 8, 8)).astype(np.float32)


def _rel(a, b):
    return float(torch.linalg.norm((a - b).double()) / torch.linalg.norm(b.double()))


@pytest.mark.slow
def test_order_and_errors_match_direct_forward_passes():
    net = _net()
    conv = _convert(net)
    x = _x(24)
    result = calibrate_torch(net, conv.native, conv.plan, {"x": x}, CalibOptions(holdout=0.0))
    assert [r.name for r in result.report.layers] == ["conv1", "conv2", "up"]
    first = result.report.layers[0]
    t = torch.from_numpy(x)
    with torch.no_grad():
        target = net.bn1(net.conv1(t))
        assert first.fit_error_before == pytest.approx(_rel(conv.native.conv1(t), target), rel=1e-4)
        assert first.fit_error_after == pytest.approx(_rel(result.model.conv1(t), target), rel=1e-4)
        assert result.report.output_error_after == pytest.approx(_rel(result.model(t), net(t)), rel=1e-4)
    assert all(r.fit_error_after <= r.fit_error_before or r.relu_fit for r in result.report.layers)


def test_corrupted_pointwise_weights_are_recovered_and_inputs_untouched():
    net = _net(seed=2, separable_rank=1)
    conv = _convert(net, Plan(layers=(PlannedLayer("conv1", 1, 0, 0, None, None, bn_folded="bn1"),)))
    true = copy.deepcopy(conv.native.conv1.pointwise.state_dict())
    with torch.no_grad():
        conv.native.conv1.pointwise.weight.add_(torch.randn_like(conv.native.conv1.pointwise.weight))
    snapshot = copy.deepcopy(conv.native.state_dict())
    result = calibrate_torch(net, conv.native, conv.plan, {"x": _x(16)}, CalibOptions(ridge=1e-10))
    got = result.model.conv1.pointwise
    torch.testing.assert_close(got.weight, true["weight"], atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(got.bias, true["bias"], atol=2e-3, rtol=1e-3)
    assert result.report.layers[0].holdout_error_after < 1e-4
    for key, value in conv.native.state_dict().items():
        assert torch.equal(value, snapshot[key])


def test_max_output_error_rank_search_rebuilds_modules_that_reload_from_a_manifest():
    net = _net(seed=3, separable_rank=2)
    conv = _convert(net)
    result = calibrate_torch(net, conv.native, conv.plan, {"x": _x(16)}, CalibOptions(max_output_error=1e-3))
    assert result.ranks["conv1"] == 2
    dw, pw = result.model.conv1.depthwise, result.model.conv1.pointwise
    assert tuple(dw.weight.shape) == (6, 1, 3, 3) and dw.out_channels == 6 and pw.in_channels == 6
    assert result.report.layers[0].holdout_error_after <= 1e-3
    up = result.model.up.depthwise  # ConvTranspose2d depthwise: weight (Cin, T, k, k)
    assert tuple(up.weight.shape) == (8, result.ranks["up"], 3, 3)
    with torch.no_grad():
        result.model(torch.from_numpy(_x(2)))
    entries = [{"name": n, "rank": r, "bn_folded": "bn1" if n == "conv1" else None,
                "pointwise_bias": result.model.get_submodule(n).pointwise.bias is not None}
               for n, r in result.ranks.items()]
    rebuilt = apply_manifest(_net(seed=3), entries)
    rebuilt.load_state_dict(result.model.state_dict(), strict=True)


def test_exported_programs_are_sent_to_the_program_driver():
    net = _net()
    program = torch.export.export(net, (torch.zeros(1, 3, 8, 8),))
    with pytest.raises(UsageError, match="calibrate_pt2"):
        calibrate_torch(program, program, PLAN, {"x": _x(2)})


ARCH = '''
import torch
from torch import nn


class Plain(nn.Module):
    """A conv with neither a bias nor a BatchNorm: only a kept refit gives its pointwise conv a bias."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(4, 16, 3, padding=1, bias=False), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def build():
    return Plain()
'''


def test_calibrated_state_dict_rebuilds_from_its_manifest(tmp_path):
    import importlib.util

    from sepconv_cli.backends.base import LoadOptions
    from sepconv_cli.pipeline.calibrate import CalibrationHook
    from sepconv_cli.pipeline.convert import ConvertRequest, convert
    from sepconv_cli.pipeline.manifest import load as load_manifest
    from sepconv_cli.planner import PlanOptions

    (tmp_path / "arch.py").write_text(ARCH)
    spec = importlib.util.spec_from_file_location("plain_arch", tmp_path / "arch.py")
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    torch.manual_seed(0)
    torch.save(arch.build().state_dict(), tmp_path / "w.pt")
    # Correlated, off-centre inputs: the SVD factors are then far from the least-squares optimum.
    x = np.cumsum(np.random.default_rng(0).standard_normal((32, 4, 8, 8)), axis=3) + 1.0
    np.savez(tmp_path / "calib.npz", x=x.astype(np.float32))
    hook = CalibrationHook(str(tmp_path / "calib.npz"), CalibOptions(samples=32))
    out = tmp_path / "w.sep.pt"
    load = LoadOptions(arch=f"{tmp_path / 'arch.py'}:build", input_shapes=((None, (1, 4, 8, 8)),), device="cpu")
    convert(ConvertRequest(source=str(tmp_path / "w.pt"), output=str(out), load=load, plan=PlanOptions(rank=1),
                           after_rewrite=hook))
    assert hook.report.layers[0].fell_back == ""  # the refit was kept, so it added a bias
    manifest = load_manifest(str(out) + ".manifest.json")
    layer = manifest["layers"][0]
    assert layer["original"]["bias"] is False and layer["pointwise_bias"] is True
    assert layer["params_after"] == 4 * 9 + 4 * 16 + 16
    rebuilt = apply_manifest(arch.build(), manifest["layers"], depthwise_bias=manifest["depthwise_bias"])
    rebuilt.load_state_dict(torch.load(out, weights_only=True), strict=True)
    t = torch.from_numpy(x[:4].astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(t), hook.result.model(t), rtol=0, atol=0)


def test_both_torch_backends_report_each_rewritten_layer():
    from sepconv_cli.backends.torch.rewriter import PT2_BACKEND

    net = _net()
    program = torch.export.export(net, (torch.zeros(1, 3, 8, 8),))
    for backend, native in ((MODULE_BACKEND, net), (PT2_BACKEND, program)):
        seen = []
        loaded = LoadedModel(report=None, handle=None, native=native)
        backend.rewrite(loaded, PLAN, ConvertOptions(progress=seen.append))
        assert seen == [p.name for p in PLAN.layers], backend
