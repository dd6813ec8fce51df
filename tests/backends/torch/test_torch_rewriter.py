"""Module swap of the PyTorch backend: exactness at full rank, structure, counts, manifest rebuild."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn
from torch_builders import (
    full_rank,
    loaded,
    plan_of,
    planned,
    randomise_bn,
    rel_err,
    seed_vgg,
)

from sepconv_cli.backends.base import ConvertOptions
from sepconv_cli.backends.registry import backend_for
from sepconv_cli.backends.torch.factors import INITS
from sepconv_cli.backends.torch.modules import SeparableConv, apply_manifest
from sepconv_cli.backends.torch.rewriter import MODULE_BACKEND
from sepconv_cli.backends.torch.runtime import run_native
from sepconv_cli.errors import RewriteError, UsageError
from sepconv_cli.pipeline import manifest
from sepconv_cli.planner import Init

# (conv, input shape): every geometry the full-rank rewrite must reproduce.
FULL_RANK_CASES = {
    "conv1d": (lambda: nn.Conv1d(4, 6, 3), (2, 4, 11)),
    "conv2d": (lambda: nn.Conv2d(3, 8, 3, padding=1), (2, 3, 9, 9)),
    "conv3d_no_bias": (lambda: nn.Conv3d(2, 4, 3, padding=1, bias=False), (1, 2, 5, 6, 5)),
    "groups": (lambda: nn.Conv2d(4, 6, 3, groups=2), (2, 4, 7, 7)),
    "stride": (lambda: nn.Conv2d(3, 6, 3, stride=2, padding=1), (2, 3, 9, 9)),
    "dilation": (lambda: nn.Conv2d(3, 6, 3, dilation=2, padding=2), (2, 3, 9, 9)),
    "reflect": (lambda: nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect"), (2, 3, 8, 8)),
    "circular": (lambda: nn.Conv1d(3, 5, 3, padding=2, padding_mode="circular", dilation=2), (2, 3, 10)),
    "same_even_kernel": (lambda: nn.Conv2d(3, 6, (2, 3), padding="same"), (2, 3, 8, 7)),
    "transpose2d": (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), (2, 4, 5, 5)),
    "transpose2d_groups": (lambda: nn.ConvTranspose2d(4, 6, 3, groups=2, bias=False), (2, 4, 5, 5)),
    "transpose1d": (lambda: nn.ConvTranspose1d(3, 4, 3, stride=2, dilation=2), (2, 3, 7)),
    "transpose3d": (lambda: nn.ConvTranspose3d(2, 3, 2, stride=2), (1, 2, 3, 3, 3)),
}


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("case", sorted(FULL_RANK_CASES))
def test_full_rank_reproduces_outputs(case):
    torch.manual_seed(1)
    factory, shape = FULL_RANK_CASES[case]
    model = nn.Sequential(factory(), nn.ReLU())
    source = loaded(model, shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = MODULE_BACKEND.rewrite(source, plan_of(planned(model, "0", full_rank(model[0]))), ConvertOptions())
    x = torch.randn(shape)
    assert rel_err(_outputs(model, x), _outputs(converted.native, x)) <= 1e-5
    assert isinstance(converted.native[0], SeparableConv) and isinstance(model[0], nn.modules.conv._ConvNd)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # source untouched
    layer = converted.plan.layers[0]
    assert layer.energy == pytest.approx(1.0) and layer.weight_error == pytest.approx(0.0, abs=1e-7)


def test_depthwise_and_pointwise_geometry():
    conv = nn.Conv2d(6, 10, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2,
                     padding_mode="replicate")
    model = nn.Sequential(conv)
    converted = MODULE_BACKEND.rewrite(loaded(model, (1, 6, 9, 9)), plan_of(planned(model, "0", 2)), ConvertOptions())
    dw, pw = converted.native[0].depthwise, converted.native[0].pointwise
    assert (dw.in_channels, dw.out_channels, dw.groups, dw.kernel_size) == (6, 12, 6, (3, 5))
    assert (dw.stride, dw.padding, dw.dilation, dw.padding_mode, dw.bias) == ((2, 1), (1, 2), (1, 2), "replicate", None)
    assert (pw.in_channels, pw.out_channels, pw.groups, pw.kernel_size) == (12, 10, 2, (1, 1))
    assert pw.bias is not None and torch.equal(pw.bias, conv.bias)


@pytest.mark.parametrize("transposed", [False, True])
def test_batchnorm_folded_at_full_rank(transposed):
    torch.manual_seed(2)
    conv = nn.ConvTranspose2d(3, 4, 3, stride=2, bias=False) if transposed else nn.Conv2d(3, 4, 3, bias=False)
    model = nn.Sequential(conv, randomise_bn(nn.BatchNorm2d(4), 3), nn.ReLU())
    plan = plan_of(planned(model, "0", full_rank(conv), bn="1"))
    converted = MODULE_BACKEND.rewrite(loaded(model, (2, 3, 6, 6)), plan, ConvertOptions(fold_bn=True))
    x = torch.randn(2, 3, 6, 6)
    assert rel_err(_outputs(model, x), _outputs(converted.native, x)) <= 1e-5
    assert isinstance(converted.native[1], nn.Identity) and isinstance(model[1], nn.BatchNorm2d)
    assert converted.folded_bn == ("1",) and converted.plan.layers[0].bn_folded == "1"
    # conv 3*4*9 + BN 2*4 params before; after: depthwise 3*T*9 + pointwise 4*3*T + folded bias 4 (T = 4).
    t = full_rank(conv)
    drop = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in converted.native.parameters())
    assert drop == (108 + 8) - (27 * t + 12 * t + 4) == converted.plan.params_saved


def test_fold_bn_off_keeps_the_batchnorm():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), randomise_bn(nn.BatchNorm2d(4), 4))
    plan = plan_of(planned(model, "0", 4, bn="1"))
    converted = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 6, 6)), plan, ConvertOptions(fold_bn=False))
    x = torch.randn(1, 3, 6, 6)
    assert isinstance(converted.native[1], nn.BatchNorm2d) and converted.folded_bn == ()
    assert rel_err(_outputs(model, x), _outputs(converted.native, x)) <= 1e-5


class ThreeConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 1))

    def forward(self, x):
        return self.body(torch.relu(self.stem(x)))


def test_module_count_and_params_drop_match_the_plan():
    model = ThreeConvs()
    plan = plan_of(planned(model, "stem", 1), planned(model, "body.0", 2))
    converted = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 8, 8)), plan, ConvertOptions())
    modules = list(converted.native.modules())
    assert sum(isinstance(m, SeparableConv) for m in modules) == 2
    assert sum(isinstance(m, nn.Conv2d) for m in modules) == 1 + 2 * 2
    assert isinstance(converted.native.body[2], nn.Conv2d)
    # stem: 448 -> 3*9 + 16*3 + 16 = 91; body.0: 2320 -> 16*2*9 + 16*32 + 16 = 816.
    drop = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in converted.native.parameters())
    assert drop == (448 - 91) + (2320 - 816) == converted.plan.params_saved == plan.params_saved


def test_seed_vgg_at_rank_one_has_174821_params():
    model = seed_vgg()
    assert sum(p.numel() for p in model.parameters()) == 1_186_378
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    plan = plan_of(*(planned(model, n, 1) for n in names))
    converted = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 32, 32)), plan, ConvertOptions(fold_bn=False))
    per_layer = [sum(p.numel() for p in converted.native.get_submodule(n).parameters()) for n in names]
    assert per_layer == [283, 4_736, 8_896, 17_664, 34_176, 68_096]
    assert sum(p.numel() for p in converted.native.parameters()) == 174_821
    assert _outputs(converted.native, torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_depthwise_bias_is_zero_and_counted():
    model = nn.Sequential(nn.Conv2d(3, 8, 3))
    plan = plan_of(planned(model, "0", 2, depthwise_bias=True))
    converted = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 6, 6)), plan, ConvertOptions(depthwise_bias=True))
    dw = converted.native[0].depthwise
    assert dw.bias is not None and dw.bias.shape == (6,) and not dw.bias.any()
    assert converted.plan.layers[0].params_after == plan.layers[0].params_after == 3 * 2 * 9 + 6 + 8 * 6 + 8


def test_random_init_keeps_structure_and_drops_energy():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 8, 3))
    plan = plan_of(planned(model, "0", 8))
    svd = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 6, 6)), plan, ConvertOptions())
    rnd = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 6, 6)), plan, ConvertOptions(init="random", seed=5))
    x = torch.randn(1, 3, 6, 6)
    assert rel_err(_outputs(model, x), _outputs(svd.native, x)) <= 1e-5
    assert rel_err(_outputs(model, x), _outputs(rnd.native, x)) > 0.1
    assert rnd.plan.layers[0].energy is None and rnd.plan.init == "random"
    assert [p.shape for p in rnd.native.parameters()] == [p.shape for p in svd.native.parameters()]
    assert not rnd.native[0].pointwise.bias.any()


def test_inits_cover_every_init_choice():
    assert set(INITS) == {choice.value for choice in Init}
    with pytest.raises(UsageError, match="unknown --init"):
        MODULE_BACKEND.rewrite(loaded(nn.Sequential(nn.Conv2d(3, 4, 3)), (1, 3, 5, 5)),
                               plan_of(planned(nn.Sequential(nn.Conv2d(3, 4, 3)), "0", 1)),
                               ConvertOptions(init="zeros"))


@pytest.mark.parametrize("name, rank, message", [("9", 1, "not a submodule"), ("0", 5, r"outside 1\.\.4"),
                                                 ("1", 1, "is not a convolution")])
def test_bad_plans_are_refused(name, rank, message):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    bad = planned(model, "0", 1).__class__(name=name, rank=rank, params_before=0, params_after=0,
                                           macs_before=None, macs_after=None)
    with pytest.raises(RewriteError, match=message):
        MODULE_BACKEND.rewrite(loaded(model, (1, 3, 5, 5)), plan_of(bad), ConvertOptions())


def test_meta_weights_are_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, device="meta"))
    with pytest.raises(RewriteError, match="meta device"):
        MODULE_BACKEND.rewrite(loaded(model, (1, 3, 5, 5)), plan_of(planned(model, "0", 1)), ConvertOptions())


def _bn_model() -> nn.Module:
    torch.manual_seed(6)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), randomise_bn(nn.BatchNorm2d(8), 7), nn.ReLU(),
                         nn.ConvTranspose2d(8, 4, 3, stride=2), nn.Conv2d(4, 4, 1))


@pytest.mark.parametrize("depthwise_bias", [False, True])
def test_state_dict_rebuilds_through_the_manifest(tmp_path, depthwise_bias):
    model = _bn_model()
    plan = plan_of(planned(model, "0", 2, bn="1", depthwise_bias=depthwise_bias),
                   planned(model, "3", 1, depthwise_bias=depthwise_bias))
    source = loaded(model, (1, 3, 6, 6))
    converted = MODULE_BACKEND.rewrite(source, plan, ConvertOptions(depthwise_bias=depthwise_bias))
    out = tmp_path / "model.sep.pt"
    MODULE_BACKEND.save(converted, str(out))
    doc = json.loads(manifest.dumps(manifest.ManifestInputs(before=source.report, plan=converted.plan,
                                                            output_path=str(out), output_format="state_dict",
                                                            options={})))
    rebuilt = apply_manifest(_bn_model(), doc["layers"])
    rebuilt.load_state_dict(torch.load(str(out), weights_only=True), strict=True)
    rebuilt.eval()
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(_outputs(rebuilt, x), _outputs(converted.native, x))
    assert isinstance(rebuilt[1], nn.Identity)


def test_apply_manifest_rejects_a_bad_rank():
    with pytest.raises(RewriteError, match="positive integer"):
        apply_manifest(nn.Sequential(nn.Conv2d(3, 4, 3)), [{"name": "0", "rank": 0}])


def test_run_names_outputs():
    class TwoHeads(nn.Module):
        def forward(self, x):
            return x + 1, (x * 2, x.sum())

    arrays = run_native(TwoHeads(), {"x": torch.ones(2, 3).numpy()})
    assert list(arrays) == ["output_0", "output_1", "output_2"]
    assert arrays["output_1"].tolist() == [[2.0] * 3] * 2 and float(arrays["output_2"]) == 6.0
    assert list(run_native(nn.Identity(), {"x": torch.ones(1).numpy()})) == ["output"]


def test_torchscript_is_refused_with_the_supported_route():
    with pytest.raises(UsageError) as info:
        backend_for("torchscript")
    message = str(info.value)
    assert "torch.onnx.export" in message and "torch.export" in message and "\n" not in message


def test_module_backend_is_registered_for_module_sources():
    for fmt in ("entrypoint", "pickle", "state_dict"):
        assert backend_for(fmt) is MODULE_BACKEND


def test_saved_state_dict_is_loadable_bytes(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    converted = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 5, 5)), plan_of(planned(model, "0", 1)), ConvertOptions())
    path = tmp_path / "m.pth"
    MODULE_BACKEND.save(converted, str(path))
    state = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
    assert sorted(state) == ["0.depthwise.weight", "0.pointwise.bias", "0.pointwise.weight"]


def test_seed_vgg_through_the_loader_and_planner():
    from sepconv_cli.backends.registry import LoadOptions, load
    from sepconv_cli.planner import (
        CandidateOptions,
        PlanOptions,
        find_candidates,
        make_plan,
    )

    source = load("torch_builders:seed_vgg", LoadOptions(device="cpu", input_shapes=((None, (1, 3, 32, 32)),)))
    report = find_candidates(source.report, source.handle, CandidateOptions(fold_bn=False))
    plan = make_plan(report, source.handle, PlanOptions(rank=1, fold_bn=False))
    assert len(plan.layers) == 6
    converted = backend_for(source.report.model.format).rewrite(source, plan, ConvertOptions(fold_bn=False))
    assert sum(p.numel() for p in converted.native.parameters()) == 174_821
    assert plan.params_saved == converted.plan.params_saved == 1_186_378 - 174_821
    assert [p.params_after for p in converted.plan.layers] == [p.params_after for p in plan.layers]
    assert sum(p.numel() for p in source.native.parameters()) == 1_186_378  # source untouched


def test_model_dtype_is_kept():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(3, 5, 3)).double()
    converted = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 6, 6)), plan_of(planned(model, "0", 5)), ConvertOptions())
    assert {p.dtype for p in converted.native.parameters()} == {torch.float64}
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    assert rel_err(_outputs(model, x), _outputs(converted.native, x)) <= 1e-12
