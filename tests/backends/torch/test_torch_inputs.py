"""PyTorch input forms through ``sepconv_cli.backends.registry.load``: .pt2, TorchScript, entry points, state_dicts,
pickles, and the one-line errors for bad input."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch
from archs import EffNetBlock, UNet3D
from repo_paths import REPO
from torch import nn

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.backends.registry import load
from sepconv_cli.errors import InputError, UsageError

ROOT = REPO
SEED_VGG = os.path.join(ROOT, "samples", "seed_vgg.py")
SEED_PT2 = os.path.join(ROOT, "samples", "seed_vgg.pt2")
SEED_MACS = 152_805_376  # 32x32: 3->64, 64->64 at 32^2; 64->128, 128->128 at 16^2; ... + 4096*10
SHAPE = ((None, (1, 3, 32, 32)),)


def opts(**kw) -> LoadOptions:
    return LoadOptions(**kw)


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_entrypoint_file_form_on_meta_with_kwargs():
    loaded = load(f"{SEED_VGG}:build", opts())
    assert loaded.report.params == 1_186_378 and loaded.report.macs == SEED_MACS
    assert loaded.handle.conv_weights("0") is None  # meta device: no weights
    assert any("meta device" in w for w in loaded.report.warnings)
    on_cpu = load(f"{SEED_VGG}:build", opts(device="cpu"))
    assert on_cpu.report.macs == SEED_MACS and on_cpu.handle.conv_weights("0").weight.shape == (64, 3, 3, 3)
    assert not on_cpu.report.warnings
    small = load(f"{SEED_VGG}:build", opts(kwargs_json=json.dumps({"widths": [8, 16]}),
                                           input_shapes=((None, (2, 3, 32, 32)),)))
    assert small.report.layer("0").macs == 2 * 8 * 32 * 32 * 3 * 9


def test_entrypoint_module_form_and_named_input():
    loaded = load("archs:UNet3D", opts(input_shapes=(("x", (1, 1, 8, 8, 8)),)))
    assert loaded.report.layer("up1").conv.transposed
    with pytest.raises(InputError, match="no input named 'y'"):
        load("archs:UNet3D", opts(input_shapes=(("y", (1, 1, 8, 8, 8)),)))


def test_pt2_counts_from_graph_with_module_names():
    loaded = load(SEED_PT2, opts())
    report = loaded.report
    assert report.model.format == "pt2"
    assert report.params == 1_186_378 and report.macs == SEED_MACS
    assert report.layer("2").conv.padding_text == "same" and report.layer("2").op == "Conv2d"
    assert report.layer("2").input_shapes == ((1, 64, 32, 32),)
    weights = loaded.handle.conv_weights("0")
    assert weights.weight.shape == (64, 3, 3, 3) and weights.bias.shape == (64,)


def test_pt2_hierarchy_bn_and_new_shapes(tmp_path):
    model = ConvBN().eval()
    dim = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (torch.randn(2, 3, 8, 8),), dynamic_shapes=({0: dim},))
    path = str(tmp_path / "m.pt2")
    torch.export.save(program, path)
    loaded = load(path, opts())
    assert loaded.report.layer("conv").bn_follows == "bn"
    params = 8 * 3 * 9 + 16 + 8 * 2 + 2
    assert loaded.report.params == params
    assert dict(loaded.report.extra)["params_bn_folded"] == params - 16 + 8  # gamma, beta out; bias in
    w = loaded.handle.conv_weights("conv")
    np.testing.assert_array_equal(w.weight, model.conv.weight.detach().numpy())
    np.testing.assert_array_equal(w.bn.var, model.bn.running_var.numpy())
    assert any("dynamic dims" in w for w in loaded.report.warnings)
    with pytest.raises(UsageError, match="engine fvcore"):
        load(path, opts(engine="fvcore"))
    bigger = load(path, opts(input_shapes=((None, (4, 3, 8, 8)),)))
    assert bigger.report.layer("conv").macs == 4 * 8 * 64 * 3 * 9
    assert bigger.report.macs == 2 * loaded.report.macs


def test_pt2_static_program_rejects_other_shapes(capfd):
    assert load(SEED_PT2, opts(input_shapes=((None, (2, 3, 32, 32)),))).report.macs == 2 * SEED_MACS
    with pytest.raises(InputError) as info:
        load(SEED_PT2, opts(input_shapes=((None, (1, 3, 64, 64)),)))
    assert "do not fit the exported program" in _one_line(info)
    assert "Traceback" not in capfd.readouterr().err


def test_torchscript_detected_by_content(tmp_path):
    torch.manual_seed(0)
    model = EffNetBlock().eval()
    path = str(tmp_path / "model.bin")  # no telling extension
    torch.jit.save(torch.jit.script(model), path)
    loaded = load(path, opts(input_shapes=((None, (1, 16, 20, 20)),)))
    reference = load("archs:EffNetBlock", opts(input_shapes=((None, (1, 16, 20, 20)),))).report
    assert loaded.report.model.format == "torchscript"
    assert loaded.report.macs == reference.macs and loaded.report.params == reference.params
    assert loaded.report.layer("depthwise").macs == reference.layer("depthwise").macs
    np.testing.assert_array_equal(loaded.handle.conv_weights("depthwise").weight,
                                  model.depthwise.weight.detach().numpy())
    assert loaded.report.layer("depthwise").bn_follows == "bn1"
    assert loaded.report.layer("bn1").output_shapes == ((1, 64, 20, 20),)


def test_state_dict_with_arch_and_key_checks(tmp_path):
    torch.manual_seed(0)
    model = UNet3D()
    path = str(tmp_path / "w.pth")
    torch.save(model.state_dict(), path)
    shape = ((None, (1, 1, 8, 8, 8)),)
    with pytest.raises(InputError, match="pass --arch"):
        load(path, opts(input_shapes=shape))
    loaded = load(path, opts(arch="archs:UNet3D", input_shapes=shape))
    assert loaded.handle.conv_weights("enc1.0").bn.name == "enc1.1"
    np.testing.assert_array_equal(loaded.handle.conv_weights("head").weight, model.head.weight.detach().numpy())
    state = torch.load(path, weights_only=True)
    state.pop("head.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(InputError, match=r"missing keys \[head.weight\] \(1\), unexpected keys \[extra.weight\]"):
        load(path, opts(arch="archs:UNet3D", input_shapes=shape))


class Payload:
    marker = ""

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_pickle_refused_without_trust_and_payload_never_runs(tmp_path):
    marker = tmp_path / "marker"
    Payload.marker = str(marker)
    path = str(tmp_path / "evil.pt")
    torch.save({"model": Payload()}, path)
    with pytest.raises(InputError, match="--trust-pickle"):
        load(path, opts())
    assert not marker.exists()
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        load(path, opts(trust_pickle=True))
    assert marker.exists()  # the payload is live: only the refusal kept it from running


def test_trusted_pickled_module(tmp_path):
    path = str(tmp_path / "whole.pt")
    torch.save(ConvBN(), path)
    with pytest.raises(InputError, match="--trust-pickle"):
        load(path, opts(input_shapes=((None, (1, 3, 8, 8)),)))
    loaded = load(path, opts(trust_pickle=True, input_shapes=((None, (1, 3, 8, 8)),)))
    assert loaded.report.model.format == "pickle" and loaded.report.layer("conv").macs == 8 * 64 * 27


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_corrupt_zip_and_tampered_pt2_version(tmp_path):
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(open(SEED_PT2, "rb").read()[:5000])
    with pytest.raises(InputError) as info:
        load(str(broken), opts())
    assert "broken.pt2" in _one_line(info)
    tampered = str(tmp_path / "tampered.pt2")
    with zipfile.ZipFile(SEED_PT2) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, b"99.0" if item.filename.endswith("archive_version") else data)
    with pytest.raises(InputError) as info:
        load(tampered, opts())
    assert "cannot load torch.export program" in _one_line(info)


def test_bad_entrypoints(tmp_path):
    factory = tmp_path / "factories.py"
    factory.write_text("def boom():\n    raise ValueError('no weights here')\n\ndef number():\n    return 3\n")
    cases = {"no_such_pkg.models:build": "not found", f"{SEED_VGG}:missing": "no attribute",
             f"{factory}:boom": "factory raised ValueError: no weights here",
             f"{factory}:number": "returned int, expected a torch.nn.Module"}
    for source, message in cases.items():
        with pytest.raises(InputError, match=message) as info:
            load(source, opts(input_shapes=SHAPE))
        _one_line(info)


def test_wrong_input_shape_names_module_and_shapes():
    with pytest.raises(InputError) as info:
        load(f"{SEED_VGG}:build", opts(input_shapes=((None, (1, 4, 32, 32)),)))
    text = _one_line(info)
    assert "module '0' (Conv2d)" in text and "1x4x32x32" in text


def test_meta_fallback_to_cpu_is_reported(tmp_path):
    factory = tmp_path / "dyn.py"
    factory.write_text(
        "import torch\nfrom torch import nn\n\nclass Gate(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n"
        "    def forward(self, x):\n        y = self.conv(x)\n"
        "        return y * 2 if float(y.sum()) >= 0 else y\n\n"
        "def build():\n    return Gate()\n")
    loaded = load(f"{factory}:build", opts(input_shapes=((None, (1, 3, 6, 6)),)))
    assert loaded.report.layer("conv").macs == 4 * 16 * 27
    assert any("meta" in w and "CPU" in w for w in loaded.report.warnings)


@pytest.mark.parametrize("factory,shape", [(UNet3D, (1, 1, 8, 8, 8)), (EffNetBlock, (1, 16, 10, 10))])
def test_pt2_rows_match_the_eager_module_rows(factory, shape, tmp_path):
    torch.manual_seed(0)
    model = factory().eval()
    path = str(tmp_path / "m.pt2")
    torch.export.save(torch.export.export(model, (torch.randn(shape),)), path)
    graph = load(path, opts()).report
    eager = load(f"archs:{factory.__name__}", opts(input_shapes=((None, shape),))).report
    assert _rows(graph) == _rows(eager)
    assert (graph.params, graph.buffers, graph.macs) == (eager.params, eager.buffers, eager.macs)


def _rows(report) -> dict:
    return {layer.name: (layer.op, layer.macs, layer.params, layer.bn_follows) for layer in report.layers}
