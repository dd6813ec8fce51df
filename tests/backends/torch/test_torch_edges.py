"""PyTorch edge cases: shared parameters in every input form, the fvcore engine on tied weights,
TorchScript row shapes, symbolic input dims, and one-line errors and warnings for bad input."""

from __future__ import annotations

import os
import pickle
import sys
import warnings
import zipfile

import pytest
import torch
from archs import TIED_PARAMS, TiedHead
from torch import nn
from typer.testing import CliRunner

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.backends.registry import load
from sepconv_cli.cli import app
from sepconv_cli.errors import InputError

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


def _cli(*args: str):
    result = CliRunner().invoke(app, ["analyze", *args], env={"COLUMNS": "120", "NO_COLOR": "1"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.mark.parametrize("shape,dim", [("1x3xAx32", "A"), ("bar", "bar")])
def test_symbolic_input_dims_are_a_usage_error_for_torch_models(shape, dim):
    result = _cli("archs:TiedHead", "--input-shape", shape, "-f", "json")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"dim '{dim}' is not a number" in result.stderr


def _seed_program(tmp_path) -> str:
    path = str(tmp_path / "tied.pt2")
    torch.export.save(torch.export.export(TiedHead().eval(), (torch.randn(4, 10),)), path)
    return path


def test_pt2_of_another_version_is_one_line_with_torchs_reason(tmp_path, capfd):
    source, tampered = _seed_program(tmp_path), str(tmp_path / "tampered.pt2")
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, b"99" if item.filename.endswith("/version") else src.read(item))
    capfd.readouterr()
    with pytest.raises(InputError, match="version 99") as info:
        load(tampered, LoadOptions())
    assert "\n" not in str(info.value) and capfd.readouterr().err == ""


def test_garbage_with_a_pt2_suffix_is_a_pytorch_error(tmp_path):
    garbage = tmp_path / "model.pt2"
    garbage.write_bytes(bytes(range(7, 250)) * 8)
    with pytest.raises(InputError, match=r"not a torch.export .pt2 archive \(not a zip file\)"):
        load(str(garbage), LoadOptions())


def test_cwd_is_importable_for_entry_points_and_trusted_pickles(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd(), str(tmp_path))])
    (tmp_path / "cwd_models.py").write_text(
        "from torch import nn\n\nclass Net(nn.Sequential):\n    pass\n\n"
        "def build():\n    return Net(nn.Linear(10, 4))\n")
    monkeypatch.chdir(tmp_path)
    assert load("cwd_models:build", LoadOptions(input_shapes=TIED_SHAPE)).report.macs == 4 * 10 * 4
    torch.save(sys.modules["cwd_models"].build(), str(tmp_path / "whole.pt"))
    sys.modules.pop("cwd_models")
    sys.path.remove(str(tmp_path))
    loaded = load("whole.pt", LoadOptions(trust_pickle=True, input_shapes=TIED_SHAPE))
    assert loaded.report.macs == 4 * 10 * 4 and type(loaded.native).__name__ == "Net"
    sys.modules.pop("cwd_models", None)


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
def test_meta_fallback_says_only_that_it_ran_on_the_cpu(fmt, tmp_path, monkeypatch):
    (tmp_path / "gate.py").write_text(
        "import torch\nfrom torch import nn\n\nclass Gate(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n"
        "    def forward(self, x):\n        y = self.conv(x)\n"
        "        return y * 2 if float(y.sum()) >= 0 else y\n\n"
        "def build():\n    return Gate()\n")
    monkeypatch.chdir(tmp_path)
    result = _cli("gate.py:build", "--input-shape", "1x3x6x6", "-f", fmt, "--device", "meta")
    assert result.exit_code == 0, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if "meta" in ln]
    assert len(lines) == 1 and "counted on the CPU" in lines[0]
    assert "no energy figures" not in result.stdout + result.stderr


def test_refused_raw_pickle_raises_no_torch_warning(tmp_path):
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps(Marker(), protocol=4))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(InputError, match="--trust-pickle"):
        warnings.simplefilter("always")
        load(str(path), LoadOptions())
    assert [str(w.message) for w in caught] == []


class Marker:
    """A pickled object that is not tensors: the weights-only unpickler refuses it."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_bn_folded_params_come_with_a_reason():
    report = load("archs:EffNetBlock", LoadOptions(input_shapes=((None, (1, 16, 10, 10)),))).report
    folded = dict(report.extra)["params_bn_folded"]
    assert folded < report.params
    assert (f"params {folded:,} after folding BatchNorm into the preceding convs (as ONNX exporters do): "
            f"{report.params:,} as trained") in report.notes


def _scripted(model: nn.Module, tmp_path) -> str:
    path = str(tmp_path / "model.jit")
    torch.jit.save(torch.jit.script(model.eval()), path)
    return path


def test_torchscript_rows_carry_activation_shapes_and_tied_owners(tmp_path):
    seq = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    rows = {layer.name: (layer.input_shapes, layer.output_shapes, layer.macs)
            for layer in load(_scripted(seq, tmp_path), LoadOptions(input_shapes=((None, (3, 7, 32)),))).report.layers}
    assert rows == {"0": (((3, 7, 32),), ((3, 7, 64),), 21 * 32 * 64),
                    "2": (((3, 7, 64),), ((3, 7, 16),), 21 * 64 * 16)}
    tied = load(_scripted(TiedHead(), tmp_path), LoadOptions(input_shapes=TIED_SHAPE)).report
    assert _params(tied) == (TIED_PARAMS, {"a": 110, "head": 500})
    assert tied.layer("head").macs == 4 * 10 * 50
    assert (tied.layer("head").input_shapes, tied.layer("head").output_shapes) == (((4, 10),), ((4, 50),))
