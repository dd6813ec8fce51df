"""Quality and side-by-side latency of ONNX models in onnxruntime (numpy + onnxruntime only, no torch).

- ``evaluate(onnx_path, eval_npz)``: accuracy for classifiers (the npz holds ``labels``) or MSE and PSNR in dB
  (peak 1.0) for image-to-image models (the npz holds ``targets``); the inputs are keyed by the input name.
- ``latency(onnx_paths, input_shape)``: median seconds per batch-1 inference of each model, measured
  interleaved (one run of each model in turn, the starting model rotating), after a warm-up.
- ``speedups(original, others, input_shape)``: original / other latency ratios from one interleaved run.

Run ``python benchmarks/models/harness.py [--artifacts DIR] [--threads 1] [--repeats 30]`` to print the
quality and latency of every ``*.onnx`` file in the artifacts folder.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

DEFAULT_REPEATS = 30
DEFAULT_WARMUP = 3


def make_session(onnx_path: str, threads: int = 1) -> ort.InferenceSession:
    """CPU session with ``threads`` intra-op threads, one inter-op thread and sequential execution."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])


def single_input(session: ort.InferenceSession) -> ort.NodeArg:
    """The session's only graph input (these models all take one tensor)."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ValueError(f"expected one graph input, found {[i.name for i in inputs]}")
    return inputs[0]


def input_shape(onnx_path: str, batch: int = 1) -> tuple[int, ...]:
    """Shape of the model's input with every symbolic or unknown dimension (the batch ``N``) set to ``batch``."""
    shape = single_input(make_session(onnx_path)).shape
    return tuple(dim if isinstance(dim, int) else batch for dim in shape)


def run_batched(session: ort.InferenceSession, inputs: np.ndarray, batch: int) -> np.ndarray:
    """First output of ``session`` over ``inputs``, ``batch`` samples per run, concatenated on axis 0."""
    name = single_input(session).name
    return np.concatenate([session.run(None, {name: inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)])


def psnr_db(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for a mean squared error ``mse`` and signal ``peak``."""
    return float(10.0 * np.log10(peak ** 2 / mse))


def evaluate(onnx_path: str, eval_npz: str, batch: int = 64, threads: int = 1) -> dict[str, float]:
    """Quality of an ONNX model on a held-out npz, run in onnxruntime ``batch`` samples at a time.

    The npz holds the inputs under the model's input name plus either ``labels`` (int classes): returns
    ``samples`` and ``accuracy`` (fraction of argmax-over-axis-1 hits); or ``targets`` (float arrays of the
    output's shape): returns ``samples``, ``mse``, ``psnr_db`` (peak 1.0, outputs not clipped) and, when
    inputs and targets have one shape, ``input_psnr_db`` (the PSNR of the unprocessed input, e.g. noisy).
    """
    session = make_session(onnx_path, threads)
    with np.load(eval_npz) as data:
        arrays = {key: data[key] for key in data.files}
    name = single_input(session).name
    others = [key for key in arrays if key not in ("labels", "targets")]
    if name not in arrays and len(others) == 1:  # a model exported from its torch source names it otherwise
        name = others[0]
    inputs = arrays[name]
    outputs = run_batched(session, inputs, batch)
    if "labels" in arrays:
        hits = outputs.argmax(axis=1) == arrays["labels"]
        return {"samples": len(inputs), "accuracy": float(hits.mean())}
    if "targets" not in arrays:
        raise ValueError(f"{eval_npz} holds neither 'labels' nor 'targets'")
    targets = arrays["targets"].astype(np.float64)
    mse = float(np.mean((outputs - targets) ** 2))
    result = {"samples": len(inputs), "mse": mse, "psnr_db": psnr_db(mse)}
    if inputs.shape == targets.shape:
        result["input_psnr_db"] = psnr_db(float(np.mean((inputs - targets) ** 2)))
    return result


def latency(onnx_paths: Sequence[str], input_shape: Sequence[int], threads: int = 1,
            repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP, seed: int = 0) -> list[float]:
    """Median seconds per inference of each model, measured side by side on one random float32 input.

    ``input_shape`` includes the batch dimension (use batch 1). Every model first runs ``warmup`` times; then
    each of the ``repeats`` rounds runs every model once, the first model of a round rotating, so that load
    changes on the machine hit all models alike. Sessions use ``threads`` intra-op threads.
    """
    sessions = [make_session(path, threads) for path in onnx_paths]
    names = [single_input(session).name for session in sessions]
    sample = np.random.default_rng(seed).standard_normal(tuple(input_shape)).astype(np.float32)
    for session, name in zip(sessions, names):
        for _ in range(warmup):
            session.run(None, {name: sample})
    times: list[list[float]] = [[] for _ in sessions]
    for round_index in range(repeats):
        for offset in range(len(sessions)):
            index = (round_index + offset) % len(sessions)
            start = time.perf_counter()
            sessions[index].run(None, {names[index]: sample})
            times[index].append(time.perf_counter() - start)
    return [statistics.median(series) for series in times]


def speedups(original: str, others: Sequence[str], input_shape: Sequence[int], threads: int = 1,
             repeats: int = DEFAULT_REPEATS) -> list[float]:
    """Latency ratio original / other for each of ``others`` (above 1: faster), timed side by side."""
    seconds = latency([original, *others], input_shape, threads=threads, repeats=repeats)
    return [seconds[0] / other for other in seconds[1:]]


def describe(onnx_path: str) -> str:
    """``name shape -> name shape`` of the model's input and outputs (symbolic dimensions by name)."""
    session = make_session(onnx_path)

    def spell(arg: ort.NodeArg) -> str:
        """``name[d0, d1, ...]``."""
        return f"{arg.name}[{', '.join(str(dim) for dim in arg.shape)}]"

    return f"{spell(single_input(session))} -> {', '.join(spell(arg) for arg in session.get_outputs())}"


def format_quality(quality: dict[str, float]) -> str:
    """Quality dict as a short text: accuracy in percent or PSNR in dB (with the input's PSNR)."""
    if "accuracy" in quality:
        return f"accuracy {100 * quality['accuracy']:.2f}% ({quality['samples']} samples)"
    text = f"PSNR {quality['psnr_db']:.2f} dB, MSE {quality['mse']:.2e}"
    if "input_psnr_db" in quality:
        text += f" (input {quality['input_psnr_db']:.2f} dB)"
    return f"{text} ({quality['samples']} samples)"


def main() -> None:
    """Print the quality (when NAME_eval.npz exists) and batch-1 latency of every ONNX file in the folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path(__file__).resolve().parent / "artifacts")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed runs per model")
    args = parser.parse_args()
    for path in sorted(args.artifacts.glob("*.onnx")):
        print(f"{path.stem}: {describe(str(path))}")
        eval_npz = path.with_name(f"{path.stem}_eval.npz")
        if eval_npz.exists():
            print(f"  {format_quality(evaluate(str(path), str(eval_npz), threads=args.threads))}")
        seconds = latency([str(path)], input_shape(str(path)), threads=args.threads, repeats=args.repeats)[0]
        print(f"  latency {1e3 * seconds:.2f} ms (batch 1, {args.threads} thread(s), median of {args.repeats})",
              flush=True)


if __name__ == "__main__":
    main()
