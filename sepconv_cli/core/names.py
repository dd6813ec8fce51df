"""Module paths from exported node names (pure strings): ``/layer1/layer1.0/conv1/Conv`` was traced in
module ``layer1.0.conv1``. Shared by the renderers (tables show module paths) and `diff` (layers match by
module path)."""

from __future__ import annotations

from collections.abc import Sequence


def fold_scopes(scopes: Sequence[str]) -> str:
    """Scope parts -> one dotted module path: ``("layer1", "layer1.0", "conv1")`` -> ``"layer1.0.conv1"``,
    ``("layer4", "layer4.0", "downsample", "downsample.0")`` -> ``"layer4.0.downsample.0"`` (a part that
    spells its parent's name, or the whole path so far, replaces it, as the ONNX exporter writes scopes)."""
    parts: list[str] = []
    for part in scopes:
        if not part:
            continue
        if parts and part.startswith(parts[-1] + "."):  # "downsample" then "downsample.0"
            parts[-1] = part
        elif parts and part.startswith(".".join(parts) + "."):  # the whole path spelled out
            parts = [part]
        else:
            parts.append(part)
    return ".".join(parts)


def module_path(name: str) -> str:
    """``"/layer1/layer1.0/conv1/Conv"`` -> ``"layer1.0.conv1"``; an unscoped name is returned as is.

    A node at the root (``"/Flatten"``) reads as its own last part (``"Flatten"``)."""
    if not name.startswith("/"):
        return name
    parts = [p for p in name.split("/") if p]
    if not parts:
        return name
    return fold_scopes(parts[:-1]) or parts[-1]
