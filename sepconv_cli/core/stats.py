"""Small statistics for honest verification figures: the Wilson score interval of a share.

A share measured on n samples (top-1 agreement, accuracy) is reported with the interval the samples
allow, so that 64 agreeing samples read as ``100% (95% CI 94.3-100%)`` rather than as certainty.
Pure maths, numpy-free.
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054
"""Two-sided standard normal quantile for a 95% interval."""


def wilson_interval(successes: int, samples: int, z: float = Z_95) -> tuple[float, float]:
    """(low, high) shares of the Wilson score interval for ``successes`` out of ``samples`` (both counts)
    at the normal quantile ``z`` (default 95%); (0, 1) when there are no samples. Unlike the normal
    approximation it stays inside [0, 1] and is not empty at 0 or n successes."""
    if samples <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= samples:
        raise ValueError(f"{successes} successes out of {samples} samples")
    p, n, z2 = successes / samples, samples, z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    scale = 1 + z2 / n
    low, high = (centre - spread) / scale, (centre + spread) / scale
    # Exact ends: rounding must not put 1.0 outside the interval when every sample agreed.
    return (0.0 if successes == 0 else max(0.0, low)), (1.0 if successes == samples else min(1.0, high))
