"""Time the per-channel SVD of every separable candidate of a ResNet-50-sized model (not a test).

ResNet-50's candidates are its 7x7 stem and its sixteen 3x3 bottleneck convs (1x1 convs have nothing to
separate). Random float32 kernels of those shapes go through what `analyze` does (one batched
``spectrum`` per layer) and what `convert` does (``decompose`` at the rank keeping 90% energy).
Run: ``python benchmarks/svd_speed.py``; prints seconds per phase and the number of SVDs.
"""

from __future__ import annotations

import time

import numpy as np

from sepconv_cli.decompose import decompose, recompose, spectrum


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


def main() -> None:
    """Print the timings of :func:`time_svd` on ResNet-50's candidate shapes."""
    result = time_svd()
    print(f"ResNet-50 candidates: {int(result['layers'])} layers, {int(result['svds'])} per-channel SVDs")
    print(f"  spectra (analyze):            {result['spectra_s']:.3f} s")
    print(f"  decompose at 90% energy:      {result['decompose_s']:.3f} s (mean rank {result['mean_rank']:.1f})")
    print(f"  total:                        {result['total_s']:.3f} s")
    print(f"  full-rank max abs error:      {result['full_rank_max_abs_error']:.2e}")


if __name__ == "__main__":
    main()
