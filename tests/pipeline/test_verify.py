"""Verification maths, inputs (random and .npz) and the interleaved latency helper."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sepconv_cli.core.records import TensorInfo
from sepconv_cli.errors import InputError, ShapeError
from sepconv_cli.pipeline.verify import (
    Latency,
    benchmark,
    compare,
    compare_all,
    load_inputs,
    random_inputs,
    verify,
)

IMAGE = TensorInfo("x", ("N", 3, 4, 4), "float32")


def test_compare_known_values():
    cmp = compare("y", np.array([3.0, 4.0]), np.array([3.0, 0.0]))
    assert cmp.max_abs == 4.0
    assert cmp.rel_l2 == pytest.approx(4.0 / 5.0)
    assert cmp.cosine == pytest.approx(3.0 / 5.0)
    assert cmp.top1 is None


def test_compare_identical_and_zero():
    a = np.random.default_rng(0).standard_normal((2, 5))
    cmp = compare("y", a, a.copy())
    assert (cmp.max_abs, cmp.rel_l2, cmp.top1) == (0.0, 0.0, 1.0)
    assert cmp.cosine == pytest.approx(1.0)
    zero = compare("z", np.zeros(3), np.zeros(3))
    assert (zero.rel_l2, zero.cosine) == (0.0, 1.0)
    assert compare("z", np.zeros(3), np.ones(3)).rel_l2 == float("inf")


def test_top1_agreement_for_classifier_outputs():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    got = np.array([[0.2, 0.8], [0.1, 0.9], [0.4, 0.6], [0.7, 0.3]])
    assert compare("logits", ref, got).top1 == 0.75
    assert compare("map", np.ones((1, 2, 3, 3)), np.ones((1, 2, 3, 3))).top1 is None


def test_shape_mismatch_and_missing_output():
    with pytest.raises(ShapeError, match="differs"):
        compare("y", np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ShapeError, match="lacks output"):
        compare_all({"y": np.ones(2)}, {"z": np.ones(2)})


def test_verdict_against_tolerance():
    ref = {"y": np.array([[1.0, 0.0]])}
    got = {"y": np.array([[1.0, 0.1]])}
    assert verify(ref, got, "random", tolerance=0.2).passed
    result = verify(ref, got, "random", tolerance=0.05)
    assert not result.passed and result.rel_l2 == pytest.approx(0.1) and result.samples == 1
    assert verify(ref, got, "random").passed


def test_random_inputs_are_seeded_and_typed():
    ints = TensorInfo("ids", (2, 5), "int64")
    a = random_inputs((IMAGE, ints), seed=1)
    b = random_inputs((IMAGE, ints), seed=1)
    assert a["x"].shape == (1, 3, 4, 4) and a["x"].dtype == np.float32
    assert a["ids"].dtype == np.int64 and a["ids"].min() >= 0 and a["ids"].max() < 10
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], random_inputs((IMAGE,), seed=2)["x"])


def test_random_inputs_refuse_unknown_dims():
    with pytest.raises(ShapeError, match="--input-shape"):
        random_inputs((TensorInfo("x", (1, 3, "H", "W")),))
    with pytest.raises(ShapeError, match="shape unknown"):
        random_inputs((TensorInfo("x", None),))
    with pytest.raises(InputError, match="dtype"):
        random_inputs((TensorInfo("x", (1,), "complex64"),))


def test_load_inputs_accepts_matching_arrays(tmp_path):
    path = tmp_path / "in.npz"
    np.savez(path, anything=np.ones((5, 3, 4, 4), np.float32))
    arrays = load_inputs(str(path), (IMAGE,))
    assert list(arrays) == ["x"] and arrays["x"].shape == (5, 3, 4, 4)


@pytest.mark.parametrize("array, error, match", [
    (np.ones((1, 3, 4, 4), np.int64), InputError, "is int64 \\(integer\\), the model expects float32"),
    (np.ones((1, 3, 5, 4), np.float32), InputError, "shape 1x3x5x4, the model expects Nx3x4x4"),
    (np.ones((4, 4), np.float32), InputError, "shape"),
    (np.full((1, 3, 4, 4), np.nan, np.float32), InputError, "NaN or Inf"),
    (np.ones((0, 3, 4, 4), np.float32), InputError, "holds no samples"),
])
def test_load_inputs_refusals(tmp_path, array, error, match):
    path = tmp_path / "in.npz"
    np.savez(path, x=array)
    with pytest.raises(error, match=match):
        load_inputs(str(path), (IMAGE,))


def test_load_inputs_follow_the_calibration_rule(tmp_path):
    """float64 for a float32 input is cast (and noted); one sample without the sample axis is a batch of 1;
    a fixed batch of 1 takes any count and the message then reads N for the sample axis."""
    path = tmp_path / "in.npz"
    np.savez(path, x=np.ones((3, 4, 4), np.float64))
    notes: list[str] = []
    arrays = load_inputs(str(path), (IMAGE,), notes)
    assert arrays["x"].shape == (1, 3, 4, 4) and arrays["x"].dtype == np.float32
    assert notes == [f"{path}: float64 arrays for input 'x' were cast to float32"]
    fixed = TensorInfo("x", (1, 3, 4, 4), "float32")
    np.savez(path, x=np.ones((5, 3, 4, 4), np.float32))
    assert load_inputs(str(path), (fixed,))["x"].shape == (5, 3, 4, 4)
    np.savez(path, x=np.ones((5, 3, 5, 4), np.float32))
    with pytest.raises(InputError, match="the model expects Nx3x4x4$"):
        load_inputs(str(path), (fixed,))
    np.savez(path, x=np.ones((3, 3, 4, 4), np.float32))
    with pytest.raises(ShapeError, match="expects 2x3x4x4 \\(Nx3x4x4 with N a multiple of 2\\)"):
        load_inputs(str(path), (TensorInfo("x", (2, 3, 4, 4), "float32"),))


def test_load_inputs_bad_files(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        load_inputs(str(empty), (IMAGE,))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="not a readable numpy file"):
        load_inputs(str(junk), (IMAGE,))
    two = tmp_path / "two.npz"
    np.savez(two, a=np.ones(1), b=np.ones(1))
    with pytest.raises(InputError, match="needs arrays named"):
        load_inputs(str(two), (IMAGE,))
    with pytest.raises(InputError, match="no such file"):
        load_inputs(str(tmp_path / "missing.npz"), (IMAGE,))


def test_benchmark_interleaves_and_reports_ratio():
    order: list[str] = []

    def slow():
        order.append("a")
        time.sleep(0.004)

    def fast():
        order.append("b")

    latency = benchmark(slow, fast, runs=4, warmup=1)
    assert isinstance(latency, Latency) and latency.runs == 4
    assert latency.before_ms >= 4.0 > latency.after_ms
    assert latency.ratio > 1.0
    assert order[2:] == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_random_inputs_stack_samples_along_a_shared_batch_axis():
    fixed, dynamic = TensorInfo("x", (2, 3, 4, 4)), TensorInfo("x", ("N", 3, 4, 4))
    assert random_inputs((fixed,), samples=4)["x"].shape == (8, 3, 4, 4)  # run in 4 chunks of the batch of 2
    assert random_inputs((dynamic,), samples=4)["x"].shape == (4, 3, 4, 4)
    assert random_inputs((fixed,), seed=5, samples=4)["x"][:2].shape == random_inputs((fixed,), seed=5)["x"].shape
    mixed = (TensorInfo("a", (1, 8)), TensorInfo("b", (5,)))  # no shared batch axis: one sample
    assert [v.shape for v in random_inputs(mixed, samples=4).values()] == [(1, 8), (5,)]
