"""Speed-up of each equivalent separable form over the original conv in onnxruntime (not a test; DESIGN §4).

For each (C, HxW, T) one 3x3 'same' conv C -> C with a bias is timed side by side, in one interleaved run,
against its rank-1 separable form and its rank-T forms (multiplier-T depthwise, tiled input with a
multiplier-1 depthwise, T parallel multiplier-1 depthwises). The variants are built by the rewriter and
``forms.lower``: what is timed is what ``convert`` emits. The cache is not used.
Run: ``python benchmarks/forms.py [--threads N] [--repeats R]``; prints a Markdown table of speed-ups
(original seconds / form seconds, > 1 is faster) and medians in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics

from sepconv_cli.backends.onnx.latency import Schedule, measure_probe
from sepconv_cli.core.latency import Form, LayerProbe, LayerTiming, variant_key

CASES = ((64, 28, 2), (64, 28, 4), (128, 14, 2), (256, 14, 4))
FORMS = (Form.MULTIPLIER, Form.TILED, Form.PARALLEL)
SCHEDULE = Schedule(min_runs=40, min_seconds=0.5, max_runs=2000)


def probe(channels: int, size: int) -> LayerProbe:
    """The 3x3 'same' conv C -> C with a bias on a 1xCxHxW input."""
    return LayerProbe(channels, channels, (3, 3), (size, size), pads=(1, 1, 1, 1), has_bias=True)


def time_case(channels: int, size: int, rank: int, threads: int, repeats: int) -> LayerTiming:
    """Median over ``repeats`` side-by-side measurements of the original, rank 1 and the rank-T forms."""
    variants = ["1:multiplier"] + [f"{rank}:{form.value}" for form in FORMS]
    runs = [measure_probe(probe(channels, size), variants, threads, SCHEDULE) for _ in range(repeats)]
    original = statistics.median(r.original_s for r in runs)
    return LayerTiming(original, {v: statistics.median(r.variants_s[v] for r in runs) for v in variants})


def row(channels: int, size: int, rank: int, timing: LayerTiming) -> str:
    """One Markdown row: speed-ups of each form, rank 1, and whether the fastest rank-T form beats the conv."""
    cells = [f"{timing.original_s / timing.variants_s[variant_key(rank, form)]:.2f}x" for form in FORMS]
    best_form, best_s = timing.best(rank)
    faster = "yes" if best_s < timing.original_s else "no"
    return (f"| {channels}, {size}x{size}, {rank} | " + " | ".join(cells) + f" | {timing.speedup(1):.2f}x | "
            f"{best_form} ({faster}) | {timing.original_s * 1e3:.3f} |")


def main() -> None:
    """Measure every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="side-by-side measurements per case (median)")
    args = parser.parse_args()
    print(f"onnxruntime, {args.threads} thread(s); speed-up = original conv seconds / form seconds")
    print("| C, HxW, T | multiplier-T DW | tiled input, multiplier-1 DW | T parallel multiplier-1 DWs | rank 1 "
          "| fastest rank-T form (faster than conv?) | conv ms |")
    print("|---|---|---|---|---|---|---|")
    for channels, size, rank in CASES:
        print(row(channels, size, rank, time_case(channels, size, rank, args.threads, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
