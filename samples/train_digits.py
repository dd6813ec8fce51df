"""Train the digits VGG (conv -> BatchNorm -> ReLU) on scikit-learn's bundled digits and export it.

Usage: ``python samples/train_digits.py [--epochs 4] [--out samples]`` (CPU, about a minute on 2 idle cores).

Data: ``sklearn.datasets.load_digits`` (1,797 8x8 images, 17 grey levels, nothing downloaded), scaled to
[0, 1], upscaled to 32x32 by 4x4 nearest-neighbour repetition, replicated to 3 channels; a fixed stratified
split (``train_test_split(test_size=0.25, stratify=y, random_state=0)``: 1,347 train, 450 test).
Training is seeded (torch init, data order); the split is fixed. Weights can still differ in the last bits
across CPUs and torch builds (oneDNN kernels), so the accuracy can move by a few tenths of a point.

Writes into ``--out``:
- ``digits_vgg.onnx``: eval-mode export (opset 17, input ``input`` 1x3x32x32, output ``logits`` 1x10) with the
  BatchNormalization nodes kept, so folding them stays sepconv's job;
- ``digits_vgg.pt``: the state_dict for ``samples/digits_vgg.py:build``;
- ``digits_data.npz``: ``x_train``/``x_test`` float32 (N, 3, 32, 32), ``y_train``/``y_test`` int64 (N,);
  one sample ``x[i:i+1]`` is one model input;
and prints the test accuracy of the torch model and of the ONNX file (onnxruntime).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits_vgg import build  # noqa: E402

SEED = 0
UPSCALE = 4  # 8x8 -> 32x32


def digits_arrays() -> dict[str, np.ndarray]:
    """The fixed train/test split as float32 (N, 3, 32, 32) images in [0, 1] and int64 labels."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images = images.repeat(UPSCALE, axis=1).repeat(UPSCALE, axis=2)
    images = np.repeat(images[:, None], 3, axis=1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=0.25, stratify=digits.target, random_state=SEED)
    return {"x_train": np.ascontiguousarray(x_train), "y_train": y_train,
            "x_test": np.ascontiguousarray(x_test), "y_test": y_test}


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``x``/``y``."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x[i:i + 128])) for i in range(0, len(x), 128)])
    return float((logits.argmax(1).numpy() == y).mean())


def train(data: dict[str, np.ndarray], epochs: int) -> nn.Module:
    """Adam with a one-cycle schedule, batch 32, cross-entropy; seeded init and data order.

    Channels-last tensors roughly halve the CPU time of these convs; the model is returned contiguous.
    """
    torch.manual_seed(SEED)
    model = build(batchnorm=True).to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, epochs=epochs,
                                                   steps_per_epoch=(len(data["x_train"]) + 31) // 32)
    x = torch.from_numpy(data["x_train"]).to(memory_format=torch.channels_last)
    y = torch.from_numpy(data["y_train"])
    order = torch.Generator().manual_seed(SEED)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        for batch in torch.randperm(len(x), generator=order).split(32):
            optimiser.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
            schedule.step()
        test = accuracy(model, data["x_test"], data["y_test"])
        print(f"epoch {epoch + 1}/{epochs}: last loss {loss.item():.4f}, test accuracy {test:.4f} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
    return model.to(memory_format=torch.contiguous_format).eval()


def export_onnx(model: nn.Module, path: str) -> None:
    """Eval-mode ONNX export that keeps BatchNormalization nodes (no Conv+BN fusion, no constant folding)."""
    dummy = torch.zeros(1, 3, 32, 32)
    # The TorchScript exporter is deprecated but is the one that leaves BatchNormalization nodes unfused.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (dummy,), path, input_names=["input"], output_names=["logits"], opset_version=17,
                          dynamo=False, do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)


def onnx_accuracy(path: str, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the exported file in onnxruntime (one sample per run: the input is 1x3x32x32)."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    predictions = [session.run(None, {"input": x[i:i + 1]})[0].argmax() for i in range(len(x))]
    return float((np.array(predictions) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    data = digits_arrays()
    model = train(data, args.epochs)
    onnx_path = os.path.join(args.out, "digits_vgg.onnx")
    export_onnx(model, onnx_path)
    torch.save(model.state_dict(), os.path.join(args.out, "digits_vgg.pt"))
    np.savez_compressed(os.path.join(args.out, "digits_data.npz"), **data)
    print(f"torch test accuracy: {accuracy(model, data['x_test'], data['y_test']):.4f}")
    print(f"onnx test accuracy:  {onnx_accuracy(onnx_path, data['x_test'], data['y_test']):.4f}")


if __name__ == "__main__":
    main()
