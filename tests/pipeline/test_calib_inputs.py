"""Calibration inputs: accepted layouts, the sample cap, and one-line errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from sepconv_cli.core.records import TensorInfo
from sepconv_cli.errors import InputError
from sepconv_cli.pipeline.inputs import load_calibration_inputs

IMAGE = (TensorInfo("x", ("N", 1, 8, 8), "float32"),)
TWO = (TensorInfo("a", (1, 3), "float32"), TensorInfo("b", ("batch", 2), "int64"))


def _images(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 1, 8, 8))


def test_single_array_npz_of_any_name_feeds_single_input_and_is_cast(tmp_path):
    path = tmp_path / "calib.npz"
    np.savez(path, images=_images(5))
    out = load_calibration_inputs(str(path), IMAGE)
    assert list(out) == ["x"] and out["x"].shape == (5, 1, 8, 8) and out["x"].dtype == np.float32
    np.testing.assert_allclose(out["x"], _images(5).astype(np.float32))


def test_multi_input_npz_by_name_and_sample_cap(tmp_path):
    path = tmp_path / "calib.npz"
    np.savez(path, a=np.ones((10, 3)), b=np.arange(20).reshape(10, 2))
    out = load_calibration_inputs(str(path), TWO, samples=4)
    assert out["a"].shape == (4, 3) and out["b"].dtype == np.int64
    np.testing.assert_array_equal(out["b"], np.arange(8).reshape(4, 2))


def test_folder_of_npy_samples_and_batches_in_name_order(tmp_path):
    imgs = _images(6)
    np.save(tmp_path / "000.npy", imgs[0, :])  # one sample, no batch axis
    np.save(tmp_path / "001.npy", imgs[1:4])
    np.save(tmp_path / "002.npy", imgs[4:])
    (tmp_path / "notes.txt").write_text("ignored")
    out = load_calibration_inputs(str(tmp_path), IMAGE, samples=5)
    np.testing.assert_allclose(out["x"], imgs[:5].astype(np.float32))


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(b"not a zip"), "not a readable numpy file"),
    (lambda p: np.savez(p, x=np.full((2, 1, 8, 8), np.nan)), "contains NaN or Inf"),
    (lambda p: np.savez(p, x=np.full((2, 1, 8, 8), np.inf)), "contains NaN or Inf"),
    (lambda p: np.savez(p, x=np.zeros((2, 3, 8, 8))), "has shape 2x3x8x8, the model expects Nx1x8x8"),
    (lambda p: np.savez(p, x=np.zeros((2, 8, 8))), "has shape 2x8x8"),
    (lambda p: np.savez(p, x=np.zeros((2, 1, 8, 8), np.uint8)), "is uint8 (integer), the model expects float32"),
    (lambda p: np.savez(p, x=np.zeros((0, 1, 8, 8))), "holds no samples"),
    (lambda p: np.savez(p), "holds no arrays"),
])
def test_bad_files_give_one_line_input_error_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(InputError) as err:
        load_calibration_inputs(str(path), IMAGE)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_multi_input_problems(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, a=np.ones((3, 3)))
    with pytest.raises(InputError, match="needs arrays named a, b"):
        load_calibration_inputs(str(path), TWO)
    np.savez(path, a=np.ones((3, 3)), b=np.ones((2, 2), np.int64))
    with pytest.raises(InputError, match="different sample counts"):
        load_calibration_inputs(str(path), TWO)
    np.save(tmp_path / "a.npy", np.ones((3, 3)))
    with pytest.raises(InputError, match="single-input model"):
        load_calibration_inputs(str(tmp_path / "a.npy"), TWO)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_calibration_inputs(str(tmp_path / "nope.npz"), IMAGE)
    with pytest.raises(InputError, match="holds no .npy or .npz files"):
        load_calibration_inputs(str(tmp_path), IMAGE)
