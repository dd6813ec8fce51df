"""What `convert` will do: the layers it rewrites (rank, costs before and after, kept energy) and
the ones it leaves alone. Plain data; units: elements and multiply-accumulates."""

from __future__ import annotations

from dataclasses import dataclass

from sepconv_cli.core.records import Excluded


@dataclass(frozen=True)
class PlannedLayer:
    """One convolution `convert` will rewrite: its rank T and what that costs and keeps.

    ``energy`` is the share of squared kernel norm kept at ``rank`` and ``weight_error`` the relative
    Frobenius error ``||W - W_T|| / ||W||`` (both None with ``--init random`` or no weights).
    """

    name: str
    rank: int
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    energy: float | None = None
    weight_error: float | None = None
    bn_folded: str | None = None
    pointwise_bias: bool | None = None  # None: the pointwise conv has a bias iff the conv had one or a BN was folded


@dataclass(frozen=True)
class Plan:
    """What `convert` will do: layers to rewrite and layers left alone (with reasons)."""

    layers: tuple[PlannedLayer, ...]
    skipped: tuple[Excluded, ...] = ()
    init: str = "svd"
    depthwise_bias: bool = False

    @property
    def params_saved(self) -> int:
        """Params removed by the whole plan."""
        return sum(p.params_before - p.params_after for p in self.layers)

    @property
    def macs_saved(self) -> int:
        """MACs removed by the whole plan (layers with unknown MACs count 0)."""
        return sum(
            (p.macs_before - p.macs_after)
            for p in self.layers
            if p.macs_before is not None and p.macs_after is not None
        )
