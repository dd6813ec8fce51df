"""Train the benchmark models for ``sepconv convert`` and write them, with their data, as ONNX + npz.

Usage: ``python benchmarks/models/build.py --out benchmarks/models/artifacts [--only NAME]``
(CPU, one thread; NAME is one of ``resnet_digits``, ``dncnn``, ``cnn1d`` or ``resnet50_like``).

Everything is seeded and nothing is downloaded: the digits and the two photos ship inside scikit-learn, the
1-D signals are generated. Weights can still differ in the last bits across CPUs and torch builds (oneDNN
kernels), so the measured figures can move slightly on a rebuild.

For every trained model NAME it writes into ``--out``:
- ``NAME.onnx``: eval-mode export (opset 17, TorchScript exporter, BatchNormalization nodes kept, no constant
  folding), input ``input`` and output ``output``, both with a dynamic batch dimension ``N``;
- ``NAME.pt``: the state_dict for ``benchmarks/models/archs.py:build_NAME``;
- ``NAME_calib.npz``: ``input``, 256 unlabelled float32 inputs from the training distribution;
- ``NAME_eval.npz``: ``input`` (held-out float32 inputs) with ``labels`` (int64 classes) for the classifiers
  or ``targets`` (clean float32 images, the output's shape) for the denoiser.
``resnet50_like`` is only written when asked by ``--only``: a randomly initialised ResNet-50-shaped ONNX
file (about 100 MB, 1x3x224x224 input) for timing, with no weights file or data.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from archs import build_cnn1d, build_dncnn, build_resnet50_like, build_resnet_digits
from harness import evaluate
from sklearn.datasets import load_digits, load_sample_images
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
INPUT, OUTPUT = "input", "output"
CALIB_SAMPLES = 256

DIGITS_UPSCALE = 4  # 8x8 -> 32x32 by 4x4 nearest-neighbour repetition
DIGITS_EPOCHS = 5
DIGITS_BATCH = 32

SIGMA = 25.0 / 255.0  # noise standard deviation on [0, 1] images
PATCH = 40  # pixels per side of every denoiser patch (training, calibration and evaluation)
TEST_COLUMNS = 160  # the right-most 160 pixel columns of each photo are held out for evaluation
TRAIN_COLUMNS = 464  # training patches come from the left-most 464 columns (a 16-pixel gap to the test part)
DNCNN_STEPS = 160
DNCNN_BATCH = 16

SIGNAL_LENGTH = 256  # samples per 1-D signal
SIGNAL_CLASSES = ("low tones", "high tones", "chirp", "square wave", "sawtooth wave", "damped bursts")
SIGNAL_TRAIN_PER_CLASS = 1200
SIGNAL_TEST_PER_CLASS = 80
CNN1D_EPOCHS = 6
CNN1D_BATCH = 64


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Eval-mode ONNX export (opset 17) keeping BatchNormalization nodes, batch dimension ``N`` dynamic.

    The TorchScript exporter with ``TrainingMode.PRESERVE`` on an eval-mode model skips its Conv+BN fusion
    pass, and ``do_constant_folding=False`` keeps the graph as written, so folding BN stays the converter's job.
    """
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          opset_version=17, dynamo=False, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          dynamic_axes={INPUT: {0: "N"}, OUTPUT: {0: "N"}})


def predict(model: nn.Module, x: np.ndarray, batch: int = 128) -> np.ndarray:
    """Eval-mode outputs of ``model`` on ``x`` (float32 array), in batches of ``batch`` samples."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(x[i:i + batch])) for i in range(0, len(x), batch)]).numpy()


def minibatches(count: int, batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of one shuffled epoch over ``count`` samples, ``batch`` at a time (an incomplete last batch is
    left out, so BatchNorm never trains on a handful of samples; each epoch's shuffle picks other leftovers)."""
    order = torch.randperm(count, generator=generator)
    yield from order[:count - count % batch].split(batch)


def train_classifier(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, batch: int, max_lr: float,
                     augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                     log: Callable[[int, float], None] | None = None) -> nn.Module:
    """Adam with a one-cycle schedule peaking at ``max_lr``, cross-entropy, seeded data order and augmentation.

    ``augment(x_batch, generator)`` transforms each training batch; ``log(epoch, loss)`` is called per epoch.
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=max_lr / 10)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=max_lr, epochs=epochs,
                                                   steps_per_epoch=len(x) // batch)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        for index in minibatches(len(xt), batch, generator):
            inputs = xt[index] if augment is None else augment(xt[index], generator)
            optimiser.zero_grad()
            loss = loss_fn(model(inputs), yt[index])
            loss.backward()
            optimiser.step()
            schedule.step()
        if log is not None:
            log(epoch, loss.item())
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy (fraction) of ``model`` in eval mode."""
    return float((predict(model, x).argmax(1) == y).mean())


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` compressed into ``path``."""
    np.savez_compressed(path, **arrays)


def finish(name: str, model: nn.Module, example: np.ndarray, calib: np.ndarray, eval_arrays: dict[str, np.ndarray],
           out: Path) -> dict[str, float]:
    """Write NAME.onnx/.pt/_calib.npz/_eval.npz, check ONNX against torch and return the ONNX quality."""
    model = model.eval()
    onnx_path = out / f"{name}.onnx"
    export_onnx(model, torch.from_numpy(example[:1]), onnx_path)
    torch.save(model.state_dict(), out / f"{name}.pt")
    save_npz(out / f"{name}_calib.npz", **{INPUT: calib.astype(np.float32)})
    save_npz(out / f"{name}_eval.npz", **eval_arrays)
    quality = evaluate(str(onnx_path), str(out / f"{name}_eval.npz"))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probe = eval_arrays[INPUT][:8]
    difference = np.abs(session.run(None, {INPUT: probe})[0] - predict(model, probe)).max()
    print(f"{name}: ONNX {quality}, max |onnx - torch| on 8 inputs = {difference:.2e}", flush=True)
    return quality


# ---------------------------------------------------------------- resnet_digits


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits in [0, 1] upscaled to float32 (N, 1, 32, 32); fixed stratified split: 1,347 train, 450 test."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images = images.repeat(DIGITS_UPSCALE, axis=1).repeat(DIGITS_UPSCALE, axis=2)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=0.25, stratify=digits.target, random_state=0)
    return np.ascontiguousarray(x_train), np.ascontiguousarray(x_test), y_train, y_test


def shift_digits(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels per axis (zero fill): a light augmentation."""
    padded = nn.functional.pad(x, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(x), 2), generator=generator)
    height, width = x.shape[-2:]
    return torch.stack([padded[i, :, dy:dy + height, dx:dx + width] for i, (dy, dx) in enumerate(offsets.tolist())])


def build_resnet_digits_artifacts(out: Path) -> dict[str, float]:
    """Train the digits ResNet and write its artifacts; returns the ONNX test accuracy."""
    x_train, x_test, y_train, y_test = digits_split()
    torch.manual_seed(SEED)
    model = build_resnet_digits()
    start = time.perf_counter()

    def log(epoch: int, loss: float) -> None:
        """Per-epoch progress line."""
        print(f"resnet_digits epoch {epoch + 1}/{DIGITS_EPOCHS}: loss {loss:.4f}, test accuracy "
              f"{accuracy(model, x_test, y_test):.4f} ({time.perf_counter() - start:.0f} s)", flush=True)

    train_classifier(model, x_train, y_train, DIGITS_EPOCHS, DIGITS_BATCH, 3e-3, shift_digits, log)
    calib = x_train[np.random.default_rng(SEED).choice(len(x_train), CALIB_SAMPLES, replace=False)]
    return finish("resnet_digits", model, x_train, calib, {INPUT: x_test, "labels": y_test}, out)


# ---------------------------------------------------------------- dncnn


def grey_photos() -> list[np.ndarray]:
    """scikit-learn's two sample photos (china, flower) as float32 greyscale in [0, 1], 427x640 each."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return [(image.astype(np.float32) @ weights) / 255.0 for image in load_sample_images().images]


def random_patches(regions: list[np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random PATCHxPATCH crops (random region, flip and 90-degree turn), float32 (count, 1, P, P)."""
    patches = np.empty((count, 1, PATCH, PATCH), np.float32)
    for i in range(count):
        region = regions[rng.integers(len(regions))]
        top = rng.integers(region.shape[0] - PATCH + 1)
        left = rng.integers(region.shape[1] - PATCH + 1)
        patch = np.rot90(region[top:top + PATCH, left:left + PATCH], k=rng.integers(4))
        patches[i, 0] = patch[:, ::-1] if rng.integers(2) else patch
    return patches


def grid_patches(regions: list[np.ndarray]) -> np.ndarray:
    """All non-overlapping PATCHxPATCH tiles of each region (row-major), float32 (count, 1, P, P)."""
    tiles = [region[top:top + PATCH, left:left + PATCH]
             for region in regions
             for top in range(0, region.shape[0] - PATCH + 1, PATCH)
             for left in range(0, region.shape[1] - PATCH + 1, PATCH)]
    return np.stack(tiles)[:, None].astype(np.float32)


def add_noise(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clean`` plus white Gaussian noise of standard deviation SIGMA (not clipped), float32."""
    return (clean + rng.normal(0.0, SIGMA, clean.shape)).astype(np.float32)


def build_dncnn_artifacts(out: Path) -> dict[str, float]:
    """Train the DnCNN denoiser on noisy photo patches and write its artifacts; returns the ONNX PSNR."""
    photos = grey_photos()
    train_regions = [photo[:, :TRAIN_COLUMNS] for photo in photos]
    test_clean = grid_patches([photo[:, -TEST_COLUMNS:] for photo in photos])
    test_noisy = add_noise(test_clean, np.random.default_rng(SEED + 1))
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    model = build_dncnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=DNCNN_STEPS)
    start = time.perf_counter()
    for step in range(DNCNN_STEPS):
        clean = random_patches(train_regions, DNCNN_BATCH, rng)
        noisy = add_noise(clean, rng)
        model.train()
        optimiser.zero_grad()
        loss = nn.functional.mse_loss(model(torch.from_numpy(noisy)), torch.from_numpy(clean))
        loss.backward()
        optimiser.step()
        schedule.step()
        if (step + 1) % 20 == 0:
            mse = float(np.mean((predict(model, test_noisy) - test_clean) ** 2))
            print(f"dncnn step {step + 1}/{DNCNN_STEPS}: loss {loss.item():.5f}, test PSNR "
                  f"{10 * np.log10(1 / mse):.2f} dB ({time.perf_counter() - start:.0f} s)", flush=True)
    calib = add_noise(random_patches(train_regions, CALIB_SAMPLES, rng), rng)
    return finish("dncnn", model, test_noisy, calib, {INPUT: test_noisy, "targets": test_clean}, out)


# ---------------------------------------------------------------- cnn1d


def make_signals(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` noisy signals of each SIGNAL_CLASSES kind: float32 (N, 1, 256) and int64 labels (N,).

    Frequencies are in cycles per 256-sample window; every signal gets a random phase, amplitude, small DC
    offset and white noise of a random level, so neighbouring classes overlap a little:
    0 two tones in 2-8 cycles; 1 two tones in 7-16 cycles; 2 a linear chirp whose frequency moves by 3-10
    cycles (up or down) from 2-10; 3 a square wave of 2-12 cycles; 4 a rising sawtooth of 2-12 cycles;
    5 two or three exponentially decaying 5-20-cycle bursts at random onsets.
    """
    t = np.arange(SIGNAL_LENGTH) / SIGNAL_LENGTH  # time in windows
    signals = np.empty((len(SIGNAL_CLASSES) * per_class, SIGNAL_LENGTH), np.float32)
    labels = np.repeat(np.arange(len(SIGNAL_CLASSES), dtype=np.int64), per_class)

    def tone(freq: float) -> np.ndarray:
        """Unit sinusoid of ``freq`` cycles per window at a random phase."""
        return np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))

    for i, label in enumerate(labels):
        if label == 0:
            signal = sum(rng.uniform(0.5, 1.0) * tone(rng.uniform(2, 8)) for _ in range(2))
        elif label == 1:
            signal = sum(rng.uniform(0.5, 1.0) * tone(rng.uniform(7, 16)) for _ in range(2))
        elif label == 2:
            f0 = rng.uniform(2, 10)
            f1 = max(1.0, f0 + rng.choice([-1, 1]) * rng.uniform(3, 10))
            signal = np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t ** 2) + rng.uniform(0, 2 * np.pi))
        elif label == 3:
            signal = np.sign(tone(rng.uniform(2, 12)))
        elif label == 4:
            signal = 2 * ((rng.uniform(2, 12) * t + rng.uniform(0, 1)) % 1.0) - 1
        else:
            signal = np.zeros(SIGNAL_LENGTH)
            for _ in range(rng.integers(2, 4)):
                onset = rng.uniform(0, 0.8)
                decay = rng.uniform(0.03, 0.15)  # windows
                envelope = np.where(t >= onset, np.exp(-(t - onset) / decay), 0.0)
                signal = signal + rng.uniform(0.8, 1.5) * envelope * tone(rng.uniform(5, 20))
        signal = rng.uniform(0.5, 1.5) * signal + rng.uniform(-0.2, 0.2)
        signals[i] = signal + rng.normal(0, rng.uniform(0.3, 1.0), SIGNAL_LENGTH)
    return signals[:, None], labels


def build_cnn1d_artifacts(out: Path) -> dict[str, float]:
    """Train the 1-D CNN on generated signals and write its artifacts; returns the ONNX test accuracy."""
    x_train, y_train = make_signals(SIGNAL_TRAIN_PER_CLASS, np.random.default_rng(SEED))
    x_test, y_test = make_signals(SIGNAL_TEST_PER_CLASS, np.random.default_rng(SEED + 1))
    torch.manual_seed(SEED)
    model = build_cnn1d()
    start = time.perf_counter()

    def log(epoch: int, loss: float) -> None:
        """Per-epoch progress line."""
        print(f"cnn1d epoch {epoch + 1}/{CNN1D_EPOCHS}: loss {loss:.4f}, test accuracy "
              f"{accuracy(model, x_test, y_test):.4f} ({time.perf_counter() - start:.0f} s)", flush=True)

    train_classifier(model, x_train, y_train, CNN1D_EPOCHS, CNN1D_BATCH, 3e-3, log=log)
    calib = x_train[np.random.default_rng(SEED).choice(len(x_train), CALIB_SAMPLES, replace=False)]
    return finish("cnn1d", model, x_train, calib, {INPUT: x_test, "labels": y_test}, out)


# ---------------------------------------------------------------- resnet50_like


def build_resnet50_like_artifacts(out: Path) -> dict[str, float]:
    """Export the untrained ResNet-50-shaped network (weights inside the file, no external data).

    Freshly built BatchNorms all hold the same values (scale 1, shift 0, mean 0, variance 1), which the
    exporter would merge into shared initialisers behind Identity nodes; so every BN gets a random scale and
    shift and takes its running statistics from one forward pass over 4 random images, as a trained one would.
    """
    torch.manual_seed(SEED)
    model = build_resnet50_like()
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.1)
            norm.momentum = 1.0
        model.train()(torch.randn(4, 3, 224, 224))
    for norm in norms:
        norm.momentum = 0.1
    model.eval()
    path = out / "resnet50_like.onnx"
    export_onnx(model, torch.zeros(1, 3, 224, 224), path)
    print(f"resnet50_like: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)
    return {}


BUILDERS = {
    "resnet_digits": build_resnet_digits_artifacts,
    "dncnn": build_dncnn_artifacts,
    "cnn1d": build_cnn1d_artifacts,
    "resnet50_like": build_resnet50_like_artifacts,
}
TRAINED = ("resnet_digits", "dncnn", "cnn1d")


def main() -> None:
    """Build the trained models (or the one named by ``--only``) into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "artifacts")
    parser.add_argument("--only", choices=sorted(BUILDERS), help="build just this model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in [args.only] if args.only else TRAINED:
        start = time.perf_counter()
        BUILDERS[name](args.out)
        print(f"{name}: built in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
