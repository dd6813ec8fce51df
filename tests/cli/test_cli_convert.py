"""`sepconv convert` through the CLI: outputs, manifest, JSON, refusals and exit codes."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import onnx
import pytest
from convert_builders import ConvCase, conv_model, vgg_cifar
from onnx import TensorProto, helper
from repo_paths import REPO
from typer.testing import CliRunner

from sepconv_cli.backends.registry import load
from sepconv_cli.cli import app
from sepconv_cli.cli.convert import RENDERERS, ConvertFormat, parse_rank
from sepconv_cli.errors import UsageError
from sepconv_cli.pipeline.manifest import load as load_manifest

RUNNER = CliRunner()


def _run(*args: str):
    return RUNNER.invoke(app, ["convert", *args], env={"COLUMNS": "120"})


@pytest.fixture(scope="module")
def vgg(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vgg") / "vgg.onnx"
    onnx.save(vgg_cifar(), str(path))
    return str(path)


def _files(folder) -> set[str]:
    return set(os.listdir(folder))


def test_vgg_rank1_table_manifest_and_params(vgg, tmp_path):
    out = tmp_path / "vgg.sep.onnx"
    result = _run(vgg, "-o", str(out), "--rank", "1", "--no-fold-bn")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "1,186,378 -> 174,821" in result.stderr
    assert load(str(out)).report.params == 174_821
    manifest = load_manifest(str(out) + ".manifest.json")
    assert [layer["rank"] for layer in manifest["layers"]] == [1] * 6
    assert manifest["output"]["params"] == 174_821 and manifest["source"]["params"] == 1_186_378
    first = manifest["layers"][0]
    assert first["depthwise"] == {"op": "Conv", "in_channels": 3, "out_channels": 3, "groups": 3,
                                  "kernel": [3, 3], "bias": False}
    assert first["pointwise"]["out_channels"] == 64 and first["pointwise"]["bias"] is True
    assert _files(tmp_path) == {"vgg.sep.onnx", "vgg.sep.onnx.manifest.json"}


@pytest.mark.slow
def test_json_on_stdout_with_verification_and_latency(vgg, tmp_path):
    out = tmp_path / "full.onnx"
    result = _run(vgg, "-o", str(out), "--rank", "full", "--format", "json", "--benchmark")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and data["written"] is True
    assert data["totals"]["before"]["params"] == 1_186_378
    assert data["verification"]["rel_l2"] <= 1e-5
    assert data["verification"]["outputs"][0]["top1"] == 1.0
    assert data["latency"]["before_ms"] > 0 and data["latency"]["ratio"] > 0
    assert data["totals"]["before"]["macs"] - data["totals"]["after"]["macs"] == data["plan"]["macs_saved"]


def test_fold_bn_by_default(tmp_path):
    source = tmp_path / "bn.onnx"
    onnx.save(vgg_cifar(batchnorm=True), str(source))
    out = tmp_path / "bn.sep.onnx"
    result = _run(str(source), "-o", str(out), "--rank", "full", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["folded_bn"]) == 6 and data["verification"]["rel_l2"] <= 1e-5
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 12


@pytest.mark.parametrize("extra,kept", [((), 6), (("--fold-bn",), 0)])
def test_random_init_keeps_batchnorm_unless_asked(tmp_path, extra, kept):
    """Fresh weights are for retraining, which wants its BatchNorms: --init random keeps them by default."""
    source = tmp_path / "bn.onnx"
    onnx.save(vgg_cifar(batchnorm=True), str(source))
    out = tmp_path / "bn.rand.onnx"
    result = _run(str(source), "-o", str(out), "--rank", "1", "--init", "random", "--no-verify", *extra)
    assert result.exit_code == 0, result.stderr
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("BatchNormalization") == kept and ops.count("Conv") == 12


def test_dry_run_writes_nothing(vgg, tmp_path):
    result = _run(vgg, "-o", str(tmp_path / "x.onnx"), "--dry-run", "--energy", "0.5", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["written"] is False and len(data["layers"]) >= 1
    assert _files(tmp_path) == set()


def test_tolerance_exceeded_exits_1_and_keeps_file(vgg, tmp_path):
    out = tmp_path / "t1.onnx"
    result = _run(vgg, "-o", str(out), "--rank", "1", "--tolerance", "1e-3")
    assert result.exit_code == 1
    assert out.exists() and (tmp_path / "t1.onnx.manifest.json").exists()
    assert "EXCEEDS tolerance" in result.stderr and "was written" in result.stderr


def test_existing_output_refused_without_force(vgg, tmp_path):
    out = tmp_path / "exists.onnx"
    out.write_bytes(b"keep me")
    result = _run(vgg, "-o", str(out), "--rank", "1")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"sepconv: error: {out}: already exists (use --force to replace it)"]
    assert out.read_bytes() == b"keep me" and _files(tmp_path) == {"exists.onnx"}
    forced = _run(vgg, "-o", str(out), "--rank", "1", "--force")
    assert forced.exit_code == 0 and load(str(out)).report.params == 174_821


def test_input_equal_to_output_refused(vgg):
    before = os.path.getsize(vgg)
    result = _run(vgg, "-o", vgg, "--rank", "1", "--force")
    assert result.exit_code == 2 and "is the input model" in result.stderr
    assert os.path.getsize(vgg) == before


@pytest.mark.parametrize("where", ["missing_folder", "parent_is_file"])
def test_unwritable_output_path(vgg, tmp_path, where):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = tmp_path / "nope" / "o.onnx" if where == "missing_folder" else blocker / "o.onnx"
    result = _run(vgg, "-o", str(out), "--rank", "1")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert str(out) in result.stderr
    assert _files(tmp_path) == {"file"}


def test_nothing_to_convert_is_reported_not_an_error(tmp_path):
    model = conv_model(ConvCase(bias=False))
    weight = model.graph.initializer[0]
    del model.graph.initializer[:]
    model.graph.input.append(helper.make_tensor_value_info("conv.w", TensorProto.FLOAT, list(weight.dims)))
    source = tmp_path / "dyn.onnx"
    onnx.save(model, str(source))
    result = _run(str(source), "-o", str(tmp_path / "o.onnx"), "--rank", "1")
    assert result.exit_code == 0, result.stderr
    assert "nothing to convert" in result.stderr and "not a constant" in result.stderr
    assert _files(tmp_path) == {"dyn.onnx"}
    assert "(nothing to convert: nothing written)" in result.stderr and "dry run" not in result.stderr
    assert "converted layers" not in result.stderr  # no empty table


def test_failed_verification_inputs_leave_nothing(vgg, tmp_path):
    bad = tmp_path / "inputs.npz"
    np.savez(bad, x=np.ones((1, 3, 32, 32), np.int64))
    result = _run(vgg, "-o", str(tmp_path / "o.onnx"), "--rank", "1", "--inputs", str(bad))
    assert result.exit_code == 2 and "is int64 (integer), the model expects float32" in result.stderr
    assert _files(tmp_path) == {"inputs.npz"}  # no model, no manifest, no temporary folder


def test_inputs_file_is_used(vgg, tmp_path):
    good = tmp_path / "inputs.npz"
    np.savez(good, x=np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    result = _run(vgg, "-o", str(tmp_path / "o.onnx"), "--rank", "full", "--inputs", str(good), "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verification"]["inputs"] == str(good)


def test_no_verify_and_select(vgg, tmp_path):
    out = tmp_path / "sel.onnx"
    result = _run(vgg, "-o", str(out), "--rank", "1", "--select", "block3_*", "--no-verify", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["verification"] is None
    assert [layer["name"] for layer in data["layers"]] == ["block3_conv1", "block3_conv2"]


def test_rank_rules_are_mutually_exclusive(vgg, tmp_path):
    result = _run(vgg, "-o", str(tmp_path / "o.onnx"), "--rank", "1", "--energy", "0.9")
    assert result.exit_code == 2 and "mutually exclusive" in result.stderr
    assert _run(vgg, "-o", str(tmp_path / "o.onnx"), "--rank", "zero").exit_code == 2
    assert _files(tmp_path) == set()


def test_parse_rank_and_renderer_registry():
    assert parse_rank("full", None, None) == {"full_rank": True}
    assert parse_rank("3", None, None) == {"rank": 3}
    assert parse_rank(None, 0.8, None) == {"energy": 0.8, "max_error": None}
    with pytest.raises(UsageError):
        parse_rank(None, 0.8, 0.1)
    assert set(RENDERERS) == set(ConvertFormat)


def test_manifest_geometry_rebuilds_params(vgg, tmp_path):
    out = tmp_path / "m.onnx"
    assert _run(vgg, "-o", str(out), "--energy", "0.5", "--no-verify").exit_code == 0
    manifest = load_manifest(str(out) + ".manifest.json")
    for layer in manifest["layers"]:
        dw, pw = layer["depthwise"], layer["pointwise"]
        k = int(np.prod(dw["kernel"]))
        rebuilt = (dw["in_channels"] // dw["groups"] * dw["out_channels"] * k + dw["out_channels"] * dw["bias"]
                   + pw["in_channels"] // pw["groups"] * pw["out_channels"] + pw["out_channels"] * pw["bias"])
        assert rebuilt == layer["params_after"]
        assert dw["out_channels"] == layer["rank"] * layer["original"]["in_channels"]
    assert manifest["source"]["params"] - manifest["output"]["params"] == manifest["params_saved"]


def test_pipeline_reports_progress_per_layer(vgg, tmp_path):
    from sepconv_cli.pipeline.convert import ConvertRequest, Events, convert
    from sepconv_cli.planner import PlanOptions

    class Recorder(Events):
        def __init__(self):
            self.layers, self.stages = [], []

        def layer_done(self, name):
            self.layers.append(name)

        def stage(self, name):
            self.stages.append(name)

    recorder = Recorder()
    result = convert(ConvertRequest(source=vgg, output=str(tmp_path / "p.onnx"), plan=PlanOptions(rank=1),
                                    verify=False), recorder)
    assert recorder.layers == [p.name for p in result.plan.layers] and len(recorder.layers) == 6
    assert recorder.stages == ["load", "plan", "rewrite", "save", "analyse"]


SAMPLE_VGG = os.path.join(REPO, "samples", "vgg_cifar.onnx")


@pytest.mark.skipif(not os.path.exists(SAMPLE_VGG), reason="samples/vgg_cifar.onnx not generated")
def test_sample_vgg_rank1_has_174821_params(tmp_path):
    out = tmp_path / "sample.sep.onnx"
    result = _run(SAMPLE_VGG, "-o", str(out), "--rank", "1", "--no-fold-bn", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["after"]["params"] == 174_821
    assert load(str(out)).report.params == 174_821


def test_onnx_source_needs_onnx_output(vgg, tmp_path):
    result = _run(vgg, "-o", str(tmp_path / "o.pt"), "--rank", "1")
    assert result.exit_code == 2 and "converts to .onnx files" in result.stderr
    assert _files(tmp_path) == set()


def test_calibration_flags(tmp_path):
    source = tmp_path / "c.onnx"
    onnx.save(conv_model(ConvCase(cin=4, cout=8, spatial=(6, 6), bn=True)), str(source))
    out = tmp_path / "c.sep.onnx"
    assert _run(str(source), "-o", str(out), "--max-output-error", "0.1").exit_code == 2
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((32, 4, 6, 6)).astype(np.float32))
    result = _run(str(source), "-o", str(out), "--rank", "1", "--calibrate", str(calib), "--calib-samples", "16",
                  "--format", "json")
    assert result.exit_code == 0, result.stderr
    cal = json.loads(result.stdout)["calibration"]
    assert cal["samples_fit"] + cal["samples_holdout"] == 16 and cal["seconds"] > 0
    layer = cal["layers"][0]
    assert layer["error_on"] == "holdout" and cal["end_to_end_on"] == "holdout"
    assert layer["error_before"] == layer["holdout_error_before"]
    assert layer["error_after"] == layer["holdout_error_after"]
    assert load_manifest(str(out) + ".manifest.json")["calibration"]["layers"][0]["name"] == "conv"
    table = _run(str(source), "-o", str(tmp_path / "t.onnx"), "--rank", "1", "--calibrate", str(calib),
                 "--calib-samples", "16").stderr
    assert "calibrated layers (output rel L2 error, held-back inputs)" in table
    row = re.search(r"^conv +1 +([\d.e-]+) +([\d.e-]+) +(\S.+)$", table, re.M)
    assert row is not None, table
    assert [float(row[1]), float(row[2])] == pytest.approx([layer["error_before"], layer["error_after"]], rel=1e-2)
    assert re.search(r"output rel L2 error on held-back inputs: [\d.e-]+ \(SVD\) -> [\d.e-]+ "
                     r"\(calibrated\)", table)
    assert re.search(r"in \d+\.\d\ds$", table, re.M) and "calibrate " in table


def test_dataset_file_is_refused_and_help_says_how_to_make_one(tmp_path):
    source, data = tmp_path / "c.onnx", tmp_path / "dataset.npz"
    onnx.save(conv_model(ConvCase(cin=4, cout=8, spatial=(6, 6))), str(source))
    x = np.zeros((4, 4, 6, 6), np.float32)
    np.savez(data, x_train=x, y_train=np.zeros(4, np.int64), x_test=x, y_test=np.zeros(4, np.int64))
    result = _run(str(source), "-o", str(tmp_path / "o.onnx"), "--rank", "1", "--calibrate", str(data))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"sepconv: error: {data}: needs arrays named x (the model's inputs); found x_test, x_train, y_test, y_train"]
    assert _files(tmp_path) == {"c.onnx", "dataset.npz"}
    help_text = " ".join(RUNNER.invoke(app, ["convert", "--help"], env={"COLUMNS": "120"}).stdout.split())
    assert "np.savez('calib.npz', input=x_train[:256])" in help_text


def test_backends_declare_suffixes_and_runners():
    from sepconv_cli.backends.base import ConvertOptions
    from sepconv_cli.backends.registry import BACKENDS
    from sepconv_cli.backends.torch.export import SAVERS
    from sepconv_cli.lazy import resolve

    for fmt, target in BACKENDS.items():
        backend = resolve(target)
        assert backend.suffixes and callable(backend.runner), fmt
    assert set(resolve(BACKENDS["state_dict"]).suffixes) == set(SAVERS)
    seen = []
    options = ConvertOptions(seed=3, progress=seen.append)
    assert options == ConvertOptions(seed=3) and json.loads(json.dumps(options.record()))["seed"] == 3
    options.layer_done("a")
    ConvertOptions().layer_done("b")
    assert seen == ["a"]


def test_many_samples_run_in_chunks_of_a_fixed_batch(vgg, tmp_path):
    """The seed VGG's batch dim is fixed at 1: a 5-sample file runs as 5 calls, all of them compared."""
    inputs = tmp_path / "five.npz"
    np.savez(inputs, x=np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32))
    result = _run(vgg, "-o", str(tmp_path / "o.onnx"), "--rank", "full", "--inputs", str(inputs),
                  "--format", "json")
    assert result.exit_code == 0, result.stderr
    verification = json.loads(result.stdout)["verification"]
    assert verification["samples"] == 5 and verification["rel_l2"] <= 1e-5


def test_sample_count_not_a_multiple_of_the_fixed_batch_is_refused(tmp_path):
    model = vgg_cifar()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 2
    path = tmp_path / "b2.onnx"
    onnx.save(model, str(path))
    inputs = tmp_path / "three.npz"
    np.savez(inputs, x=np.zeros((3, 3, 32, 32), np.float32))
    result = _run(str(path), "-o", str(tmp_path / "o.onnx"), "--rank", "1", "--inputs", str(inputs))
    assert result.exit_code == 2 and "3x3x32x32" in result.stderr and "2x3x32x32" in result.stderr
    assert _files(tmp_path) == {"b2.onnx", "three.npz"}
