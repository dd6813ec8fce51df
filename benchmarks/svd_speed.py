"""Time the per-channel SVD of every separable candidate of a ResNet-50-sized model (not a test).

ResNet-50's candidates are its 7x7 stem and its sixteen 3x3 bottleneck convs (1x1 convs have nothing to
separate). Random float32 kernels of those shapes go through what `analyze` does (one batched
``spectrum`` per layer) and what `convert` does (``decompose`` at the rank keeping 90% energy).
Run: ``python benchmarks/svd_speed.py``; prints seconds per phase and the number of SVDs.
"""

from __future__ import annotations

import time

import numpy as np

from sepconv_cli.core.decompose import decompose, recompose, spectrum
from sepconv_cli.core.records import ConvSpec, Layer, ModelInfo, Report
from sepconv_cli.core.weights import ConvWeights
from sepconv_cli.planner import (
    CandidateOptions,
    PlanOptions,
    find_candidates,
    make_plan,
)


def resnet50_candidate_shapes() -> list[tuple[int, ...]]:
    """Conv kernel shapes ``(Cout, Cin, kh, kw)`` of ResNet-50's candidates (stem + 3x3 convs)."""
    shapes = [(64, 3, 7, 7)]
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        shapes.extend([(width, width, 3, 3)] * blocks)
    return shapes


def time_svd(shapes: list[tuple[int, ...]] | None = None, energy: float = 0.9, seed: int = 0) -> dict[str, float]:
    """Seconds spent on spectra (analyze) and on factors at the energy-chosen rank (convert)."""
    shapes = shapes or resnet50_candidate_shapes()
    rng = np.random.default_rng(seed)
    kernels = [rng.normal(size=s).astype(np.float32) for s in shapes]
    start = time.perf_counter()
    ranks = [spectrum(w, 1).rank_for_energy(energy) for w in kernels]
    spectra_s = time.perf_counter() - start
    start = time.perf_counter()
    factors = [decompose(w, 1, t) for w, t in zip(kernels, ranks)]
    decompose_s = time.perf_counter() - start
    worst = max(float(np.abs(recompose(decompose(w, 1, min(w.shape[0], 9)), 1) - w).max()) for w in kernels[1:3])
    return {
        "layers": float(len(kernels)),
        "svds": float(sum(w.shape[1] for w in kernels)),
        "spectra_s": spectra_s,
        "decompose_s": decompose_s,
        "total_s": spectra_s + decompose_s,
        "full_rank_max_abs_error": worst,
        "mean_rank": float(np.mean([f.rank for f in factors])),
    }


class _Weights:
    """In-memory handle: conv weights by layer name."""

    def __init__(self, table: dict[str, ConvWeights]):
        self.table = table

    def conv_weights(self, name: str) -> ConvWeights | None:
        return self.table.get(name)


def _resnet50_convs(seed: int = 0) -> tuple[Report, _Weights]:
    """Every conv of ResNet-50 at 224x224 (stem, bottleneck 1x1/3x3/1x1, downsamples) with random weights."""
    rng = np.random.default_rng(seed)
    rows: list[Layer] = []
    table: dict[str, ConvWeights] = {}

    def add(name: str, cin: int, cout: int, k: int, size_in: int, stride: int) -> None:
        spec = ConvSpec(cin, cout, (k, k), (stride, stride), (1, 1), pads=(k // 2,) * 4)
        size_out = (size_in + 2 * (k // 2) - k) // stride + 1
        rows.append(Layer(name=name, op="Conv", input_shapes=((1, cin, size_in, size_in),),
                          output_shapes=((1, cout, size_out, size_out),), conv=spec))
        table[name] = ConvWeights(rng.normal(size=(cout, cin, k, k)).astype(np.float32))

    add("conv1", 3, 64, 7, 224, 2)
    cin, size = 64, 56
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 1 else 1
            name = f"layer{stage}.{block}"
            add(f"{name}.conv1", cin, width, 1, size, 1)
            add(f"{name}.conv2", width, width, 3, size, stride)
            size = size // stride
            add(f"{name}.conv3", width, width * 4, 1, size, 1)
            if block == 0:
                add(f"{name}.downsample", cin, width * 4, 1, size * stride, stride)
            cin = width * 4
    report = Report(model=ModelInfo("resnet50", "memory"), layers=tuple(rows), params=0)
    return report, _Weights(table)


def time_planner() -> dict[str, float]:
    """Seconds for ``find_candidates`` and ``make_plan`` (default 90% energy) on ResNet-50's convs."""
    report, handle = _resnet50_convs()
    start = time.perf_counter()
    found = find_candidates(report, handle, CandidateOptions())
    candidates_s = time.perf_counter() - start
    start = time.perf_counter()
    plan = make_plan(report, handle, PlanOptions())
    plan_s = time.perf_counter() - start
    return {"convs": float(len(report.layers)), "candidates": float(len(found.candidates)),
            "find_candidates_s": candidates_s, "make_plan_s": plan_s, "planned": float(len(plan.layers))}


def main() -> None:
    """Print the timings of :func:`time_svd` and :func:`time_planner` on ResNet-50's shapes."""
    planned = time_planner()
    print(f"ResNet-50 convs: {int(planned['convs'])}, candidates: {int(planned['candidates'])}")
    print(f"  find_candidates (spectra):    {planned['find_candidates_s']:.3f} s")
    print(f"  make_plan (90% energy):       {planned['make_plan_s']:.3f} s ({int(planned['planned'])} planned)")
    result = time_svd()
    print(f"ResNet-50 candidates: {int(result['layers'])} layers, {int(result['svds'])} per-channel SVDs")
    print(f"  spectra (analyze):            {result['spectra_s']:.3f} s")
    print(f"  decompose at 90% energy:      {result['decompose_s']:.3f} s (mean rank {result['mean_rank']:.1f})")
    print(f"  total:                        {result['total_s']:.3f} s")
    print(f"  full-rank max abs error:      {result['full_rank_max_abs_error']:.2e}")


if __name__ == "__main__":
    main()
