"""Rebuild a model converted to a PyTorch state_dict (``sepconv_cli.load_converted``): read and check the
manifest written beside it, then let the torch backend give the original architecture the converted
structure and load the weights. Every failure is a one-line ``InputError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sepconv_cli.errors import InputError
from sepconv_cli.pipeline.manifest import KIND
from sepconv_cli.pipeline.report_file import read_json


def read_manifest(path: str) -> dict:
    """The manifest at ``path`` (a ``sepconv convert`` manifest, checked by its ``kind``)."""
    data = read_json(path, "manifest")
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("layers"), list):
        raise InputError(f"{path}: not a sepconv convert manifest (kind {KIND!r} with a 'layers' list)")
    return data


def load_converted(arch_or_module: Any, manifest_path: str, state_dict_path: str,
                   kwargs: Mapping[str, Any] | None = None) -> Any:
    """The converted ``nn.Module``, weights loaded, in eval mode (see ``backends.torch.restore``)."""
    from sepconv_cli.backends.torch.restore import rebuild

    return rebuild(arch_or_module, read_manifest(manifest_path), manifest_path, state_dict_path, kwargs or {})
