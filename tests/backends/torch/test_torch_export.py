"""PyTorch outputs (.pt2, .onnx, .pt) and the .pt2-source graph rewrite, with real torch.export,
onnx.checker and onnxruntime."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn
from torch_builders import (
    NoWeights,
    loaded,
    plan_of,
    planned,
    randomise_bn,
    rel_err,
    report_for,
)

from sepconv_cli.backends.base import ConvertOptions, LoadedModel
from sepconv_cli.backends.registry import backend_for
from sepconv_cli.backends.torch.export import SAVERS, save_native
from sepconv_cli.backends.torch.rewriter import MODULE_BACKEND, PT2_BACKEND
from sepconv_cli.errors import OutputError, UsageError


def _net() -> nn.Module:
    """Reflect-padded conv + BN, a conv with 'same' padding, a transposed conv: the .pt2 test model."""
    torch.manual_seed(10)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect", bias=False), randomise_bn(nn.BatchNorm2d(8), 11),
        nn.ReLU(), nn.Conv2d(8, 8, 3, padding="same"), nn.ConvTranspose2d(8, 4, 3, stride=2), nn.ReLU(),
    ).eval()


def _full_plan(model: nn.Module):
    return plan_of(planned(model, "0", 8, bn="1"), planned(model, "3", 8), planned(model, "4", 4))


def _program(model: nn.Module, shape) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=64)
    return torch.export.export(model, (torch.randn(shape),), dynamic_shapes=({0: batch},))


@pytest.mark.slow
def test_pt2_source_full_rank_rewrite_reloads_and_matches(tmp_path):
    model = _net()
    program = _program(model, (2, 3, 6, 6))
    source = LoadedModel(report=report_for(model, ("N", 3, 6, 6), "pt2"), handle=NoWeights(), native=program)
    converted = PT2_BACKEND.rewrite(source, _full_plan(model), ConvertOptions())
    new = converted.native
    assert isinstance(new, torch.export.ExportedProgram) and converted.folded_bn == ("1",)
    keys = set(new.state_dict)
    assert {"0.depthwise.weight", "0.pointwise.weight", "0.pointwise.bias", "4.depthwise.weight"} <= keys
    assert not {"0.weight", "1.weight", "1.running_mean", "3.weight", "4.weight"} & keys
    assert "0.weight" in program.state_dict  # the source program is untouched
    calls = [str(n.target) for n in new.graph.nodes if n.op == "call_function"]
    assert sum(c.startswith(("aten.conv", "aten.convolution")) for c in calls) == 2 * 3
    assert not [c for c in calls if "batch_norm" in c]
    x = torch.randn(3, 3, 6, 6)  # batch 3: the dynamic batch dim survived the rewrite
    assert rel_err(model(x), new.module()(x)) <= 1e-5
    path = tmp_path / "out.pt2"
    PT2_BACKEND.save(converted, str(path))
    assert rel_err(model(x), torch.export.load(str(path)).module()(x)) <= 1e-5
    assert converted.plan.layers[0].params_after == 3 * 8 * 9 + 8 * 24 + 8


def test_pt2_source_low_rank_file_shrinks(tmp_path):
    torch.manual_seed(12)
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1)).eval()
    program = _program(model, (2, 16, 8, 8))
    source = LoadedModel(report=report_for(model, ("N", 16, 8, 8), "pt2"), handle=NoWeights(), native=program)
    plan = plan_of(planned(model, "0", 1), planned(model, "2", 1))
    converted = backend_for("pt2").rewrite(source, plan, ConvertOptions())
    before, after = tmp_path / "before.pt2", tmp_path / "after.pt2"
    torch.export.save(program, str(before))
    save_native(converted.native, str(after))
    kept = sum(t.numel() for t in converted.native.state_dict.values())
    assert kept == sum(p.numel() for p in model.parameters()) - plan.params_saved
    # float32: 4 bytes per removed element, less per-file zip overhead for the new tensors.
    assert os.path.getsize(before) - os.path.getsize(after) > 3 * plan.params_saved
    torch.export.load(str(after)).module()(torch.randn(1, 16, 8, 8))


@pytest.mark.slow
def test_onnx_output_checks_and_matches_the_converted_module(tmp_path):
    model = _net()
    converted = MODULE_BACKEND.rewrite(loaded(model, (2, 3, 6, 6)), _full_plan(model), ConvertOptions())
    path = tmp_path / "out.onnx"
    MODULE_BACKEND.save(converted, str(path), {"image": ("N", 3, 6, 6)})
    onnx.checker.check_model(str(path), full_check=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    x = np.random.default_rng(0).standard_normal((3, 3, 6, 6)).astype(np.float32)
    (got,) = session.run(["output"], {"image": x})
    with torch.no_grad():
        want = converted.native(torch.from_numpy(x))
    assert rel_err(want, torch.from_numpy(got)) <= 1e-5
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Conv") + ops.count("ConvTranspose") == 6 and "BatchNormalization" not in ops


def test_pt2_output_of_a_converted_module(tmp_path):
    model = _net()
    converted = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 6, 6)), _full_plan(model), ConvertOptions())
    path = tmp_path / "out.pt2"
    MODULE_BACKEND.save(converted, str(path), {None: (1, 3, 6, 6)})
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        assert rel_err(converted.native(x), torch.export.load(str(path)).module()(x)) <= 1e-6


def test_saving_a_module_needs_an_input_shape(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    converted = MODULE_BACKEND.rewrite(loaded(model, (1, 3, 5, 5)), plan_of(planned(model, "0", 1)), ConvertOptions())
    with pytest.raises(UsageError, match="--input-shape"):
        save_native(converted.native, str(tmp_path / "m.pt2"))
    assert not os.listdir(tmp_path)


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(OutputError, match="unsupported output suffix"):
        save_native(nn.Identity(), str(tmp_path / "m.tflite"))


def test_savers_cover_the_documented_suffixes():
    assert set(SAVERS) == {".pt2", ".onnx", ".pt", ".pth"}


def test_pt2_file_through_the_loader_and_planner_at_full_rank(tmp_path):
    from sepconv_cli.backends.registry import LoadOptions, load
    from sepconv_cli.planner import (
        CandidateOptions,
        PlanOptions,
        find_candidates,
        make_plan,
    )

    model = _net()
    path = tmp_path / "net.pt2"
    torch.export.save(_program(model, (2, 3, 6, 6)), str(path))
    source = load(str(path), LoadOptions())
    report = find_candidates(source.report, source.handle, CandidateOptions())
    plan = make_plan(report, source.handle, PlanOptions(full_rank=True))
    assert [(p.name, p.bn_folded) for p in plan.layers] == [("0", "1"), ("3", None), ("4", None)]
    backend = backend_for(source.report.model.format)
    converted = backend.rewrite(source, plan, ConvertOptions())
    x = {"input": np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)}
    want, got = backend.run(source.native, x), backend.run(converted.native, x)
    assert list(got) == ["output"]
    assert np.linalg.norm(want["output"] - got["output"]) <= 1e-5 * np.linalg.norm(want["output"])
    # The folded BN's buffers (running stats, batch counter) leave with it: only parameters remain.
    assert not [k for k in converted.native.state_dict if k.startswith("1.")]
    kept = sum(t.numel() for t in converted.native.state_dict.values())
    assert kept == source.report.params - plan.params_saved == 1108 + 824
