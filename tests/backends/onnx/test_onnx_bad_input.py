"""Every kind of bad ONNX input gives a one-line InputError/ShapeError naming the file and the problem."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from onnx import helper
from onnx_builders import conv_model, model, save, vinfo, weight
from repo_paths import REPO

from sepconv_cli.backends.registry import LoadOptions, load
from sepconv_cli.errors import InputError, SepconvError, ShapeError

ROOT = REPO
VGG = os.path.join(ROOT, "samples", "vgg_cifar.onnx")


def load_error(path: str, options: LoadOptions | None = None) -> SepconvError:
    with pytest.raises(SepconvError) as caught:
        load(path, options)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return caught.value


def write(tmp_path, name: str, data: bytes) -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def test_missing_directory_and_empty(tmp_path):
    assert "no such file" in str(load_error(str(tmp_path / "nope.onnx")))
    assert "is a directory" in str(load_error(str(tmp_path)))
    assert "empty file" in str(load_error(write(tmp_path, "empty.onnx", b"")))


@pytest.mark.parametrize("keep", [0.001, 0.5, 0.999])
def test_truncated_onnx(tmp_path, keep):
    data = open(VGG, "rb").read()
    error = load_error(write(tmp_path, "cut.onnx", data[: int(len(data) * keep)]))
    assert isinstance(error, InputError) and "not an ONNX model" in str(error)


def test_truncated_just_before_the_opset(tmp_path):
    data = open(VGG, "rb").read()
    error = load_error(write(tmp_path, "cut.onnx", data[:-1]))
    assert isinstance(error, InputError)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes(tmp_path, seed):
    data = np.random.default_rng(seed).bytes(4096)
    assert isinstance(load_error(write(tmp_path, "noise.onnx", data)), InputError)


def test_json_named_onnx(tmp_path):
    data = json.dumps({"model": "resnet", "layers": [1, 2, 3]}).encode()
    assert "not an ONNX model" in str(load_error(write(tmp_path, "model.onnx", data)))


def test_zip_named_onnx(tmp_path):
    path = os.path.join(str(tmp_path), "model.onnx")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert isinstance(load_error(path), InputError)


def test_cycle(tmp_path):
    nodes = [helper.make_node("Relu", ["b"], ["a"], name="r1"),
             helper.make_node("Add", ["a", "x"], ["b"], name="add"),
             helper.make_node("Relu", ["b"], ["y"], name="r2")]
    path = save(model(nodes, [vinfo("x", (2,))], [vinfo("y", (2,))]), tmp_path)
    error = load_error(path)
    assert isinstance(error, InputError) and "cycle" in str(error)


def test_undefined_tensor(tmp_path):
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add")]
    error = load_error(save(model(nodes, [vinfo("x", (2,))], [vinfo("y", (2,))]), tmp_path))
    assert "undefined tensor 'ghost'" in str(error)


def test_huge_dim_in_the_graph(tmp_path):
    path = save(conv_model((1, 3, 10**12, 8), (4, 3, 3, 3)), tmp_path)
    error = load_error(path)
    assert isinstance(error, ShapeError) and "1000000000000" in str(error)


def test_huge_dim_from_input_shape(tmp_path):
    path = save(conv_model(("N", 3, 8, 8), (4, 3, 3, 3)), tmp_path)
    error = load_error(path, LoadOptions(input_shapes=((None, (10**12, 3, 8, 8)),)))
    assert isinstance(error, ShapeError) and "1000000000000" in str(error)


def test_conv_channels_do_not_match_the_kernel(tmp_path):
    error = load_error(save(conv_model((1, 4, 8, 8), (4, 3, 3, 3)), tmp_path))
    assert isinstance(error, ShapeError) and "input has 4 channels, weight expects 3" in str(error)


def test_matmul_inner_dims_impossible(tmp_path):
    m = model([helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")], [vinfo("a", (2, 5))],
              [vinfo("y", (2, 3))], [weight("w", (6, 3))])
    error = load_error(save(m, tmp_path))
    assert isinstance(error, ShapeError) and "'mm' (MatMul)" in str(error)


def test_conv_output_would_be_empty(tmp_path):
    error = load_error(save(conv_model((1, 3, 2, 2), (4, 3, 5, 5)), tmp_path))
    assert isinstance(error, ShapeError)
