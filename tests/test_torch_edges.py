"""PyTorch edge cases: shared parameters in every input form, the fvcore engine on tied weights,
TorchScript row shapes, symbolic input dims, and one-line errors and warnings for bad input."""

from __future__ import annotations

import torch
from torch import nn

from archs import TIED_PARAMS, TiedHead
from sepconv_cli.loaders import load
from sepconv_cli.loaders.base import LoadOptions

TIED_SHAPE = ((None, (4, 10)),)


def _params(report) -> tuple[int, dict]:
    return report.params, {layer.name: layer.params for layer in report.layers if layer.params}


def test_shared_parameters_count_once_in_pt2_and_state_dict(tmp_path):
    model = TiedHead().eval()
    pt2, sd = str(tmp_path / "tied.pt2"), str(tmp_path / "tied.sd")
    torch.export.save(torch.export.export(model, (torch.randn(4, 10),)), pt2)
    torch.save(model.state_dict(), sd)
    expected = (TIED_PARAMS, {"a": 110, "head": 500})
    assert _params(load("archs:TiedHead", LoadOptions(input_shapes=TIED_SHAPE)).report) == expected
    assert _params(load(pt2, LoadOptions()).report) == expected
    from_sd = load(sd, LoadOptions(arch="archs:TiedHead", input_shapes=TIED_SHAPE))
    assert _params(from_sd.report) == expected
    assert from_sd.native.head.weight is from_sd.native.emb.weight and from_sd.native.b is from_sd.native.a


def test_counting_leaves_a_reused_module_on_its_own_weights():
    model = load("archs:TiedHead", LoadOptions(device="cpu", input_shapes=TIED_SHAPE)).native
    assert all(isinstance(p, nn.Parameter) and not p.is_meta
               for _, p in model.named_parameters(remove_duplicate=False))


def test_fvcore_engine_on_tied_weights_on_cpu_and_meta():
    for device in ("cpu", ""):
        report = load("archs:TiedHead", LoadOptions(device=device, engine="fvcore",
                                                      input_shapes=TIED_SHAPE)).report
        assert _params(report) == (TIED_PARAMS, {"a": 110, "head": 500})
        assert report.layer("head").macs == 4 * 10 * 50
