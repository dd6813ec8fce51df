"""Malformed ONNX files never reach the internal-error handler: each structural fault gets its own one
line naming the file (exit 2), non-finite weights are excluded before any SVD (LAPACK prints nothing,
stdout stays valid JSON), and factors that overflow the model's dtype are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import onnx
import pytest
from hostile_onnx import MALFORMED, conv_model, with_weight
from repo_paths import REPO
from typer.testing import CliRunner

from sepconv_cli.backends.onnx.sanity import check_model
from sepconv_cli.cli import app
from sepconv_cli.core.decompose import NON_FINITE, NonFiniteWeights, decompose, fold_batchnorm, spectrum
from sepconv_cli.core.weights import BatchNormParams, ConvWeights
from sepconv_cli.errors import InputError

ENV = {"COLUMNS": "120", "NO_COLOR": "1"}
COMMANDS = {
    "analyze": lambda path, tmp: ["analyze", path, "--format", "json"],
    "check": lambda path, tmp: ["check", path, "--max-params", "1G", "--no-config"],
    "convert": lambda path, tmp: ["convert", path, "-o", str(tmp / "out" / "m.onnx"), "--rank", "1"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_each_malformed_model_gets_its_own_line(tmp_path, kind, command):
    build, word = MALFORMED[kind]
    path = tmp_path / "model.onnx"
    path.write_bytes(build())
    (tmp_path / "out").mkdir()
    result = CliRunner(env=ENV).invoke(app, COMMANDS[command](str(path), tmp_path))
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sepconv: error: {path}: "), result.stderr
    assert word in lines[0] and "internal error" not in lines[0]
    assert result.stdout == "" and os.listdir(tmp_path / "out") == []


def test_the_checks_pass_real_models():
    check_model("m.onnx", conv_model())
    with pytest.raises(InputError, match="defined twice"):
        model = conv_model()
        model.graph.initializer.append(model.graph.initializer[0])
        check_model("m.onnx", model)


def _nan(w: np.ndarray) -> None:
    w[0, 0, 0, 0] = np.nan


def _inf(w: np.ndarray) -> None:
    w[3, 2, 1, 1] = np.inf


@pytest.mark.slow
@pytest.mark.parametrize(("edit", "dtype"), [(_nan, np.float32), (_inf, np.float32), (_inf, np.float16),
                                              (_nan, np.float64)])
def test_non_finite_weights_are_excluded_and_stdout_stays_json(tmp_path, edit, dtype):
    path = tmp_path / "model.onnx"
    onnx.save_model(with_weight(edit, dtype), str(path))
    done = subprocess.run([sys.executable, "-m", "sepconv_cli", "analyze", str(path), "--format", "json"],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, **ENV}, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    report = json.loads(done.stdout)  # nothing but the report on stdout (no "** On entry to DLASCL")
    assert report["excluded"] == [{"name": "conv", "reason": NON_FINITE}]
    assert report["candidates"] == []


def test_converting_a_model_whose_only_conv_holds_nan_writes_nothing(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save_model(with_weight(_nan), str(path))
    result = CliRunner(env=ENV).invoke(app, ["convert", str(path), "-o", str(tmp_path / "o.onnx"), "--rank", "1"])
    assert result.exit_code == 0, result.stderr
    assert "weight holds NaN/Inf" in result.stderr and not (tmp_path / "o.onnx").exists()


def test_no_svd_ever_sees_a_non_finite_kernel():
    weight = np.ones((4, 2, 3, 3))
    weight[1, 1, 2, 2] = np.inf
    for call in (lambda: spectrum(weight, 1), lambda: decompose(weight, 1, 1)):
        with pytest.raises(NonFiniteWeights, match="NaN/Inf"):
            call()
    with pytest.raises(Exception, match="not numeric"):
        spectrum(np.full((4, 2, 3, 3), "a"), 1)


def test_a_batchnorm_with_negative_variance_folds_quietly_and_is_refused():
    bn = BatchNormParams("bn", gamma=np.ones(4), beta=np.zeros(4), mean=np.zeros(4), var=-np.ones(4), eps=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from numpy would be a line on stderr
        folded, _ = fold_batchnorm(ConvWeights(np.ones((4, 2, 3, 3)), None, bn), 1)
    assert np.isnan(folded).all()
    with pytest.raises(NonFiniteWeights):
        spectrum(folded, 1)


def test_factors_that_overflow_the_weight_dtype_are_refused(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save_model(with_weight(lambda w: w.fill(3e38)), str(path))
    result = CliRunner(env=ENV).invoke(app, ["convert", str(path), "-o", str(tmp_path / "o.onnx"), "--rank", "1"])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "overflow float32" in lines[0], result.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_an_arrays_file_declaring_two_to_the_forty_samples_is_one_line(tmp_path):
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (2**40, 8, 16, 16)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    with zipfile.ZipFile(tmp_path / "calib.npz", "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    onnx.save_model(conv_model(), str(tmp_path / "model.onnx"))
    result = CliRunner(env=ENV).invoke(app, ["convert", str(tmp_path / "model.onnx"), "-o", str(tmp_path / "o.onnx"),
                                             "--rank", "1", "--calibrate", str(tmp_path / "calib.npz")])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "calib.npz: not a readable numpy file" in lines[0], result.stderr
