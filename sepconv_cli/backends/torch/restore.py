"""Rebuild a converted PyTorch model from its manifest and state_dict (``sepconv_cli.load_converted``; the
manifest is read and checked by ``pipeline.restore``).

The original architecture is built (or given), each conv the manifest lists is replaced by its
depthwise + pointwise pair (``modules.apply_manifest``, with the manifest's ``depthwise_bias``), the
folded BatchNorms become identities, and the converted state_dict is loaded strictly. Weights are read
with ``weights_only=True`` (no code runs). Every failure is a one-line ``InputError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from sepconv_cli.backends.torch import entrypoint
from sepconv_cli.backends.torch.modules import apply_manifest
from sepconv_cli.errors import InputError, RewriteError


def _module(arch_or_module: Any, kwargs: Mapping[str, Any]) -> torch.nn.Module:
    if isinstance(arch_or_module, torch.nn.Module):
        return arch_or_module
    if isinstance(arch_or_module, str):
        return entrypoint.build(arch_or_module, json.dumps(dict(kwargs)) if kwargs else "", "cpu")
    if callable(arch_or_module):
        module = arch_or_module(**kwargs)
        if isinstance(module, torch.nn.Module):
            return module
    raise InputError(f"expected an nn.Module, a factory or 'package.module:factory', got "
                     f"{type(arch_or_module).__name__}")


def rebuild(arch_or_module: Any, manifest: Mapping[str, Any], manifest_path: str, state_dict_path: str,
            kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """The converted module, weights loaded, in eval mode (see module docstring); ``manifest`` is the
    manifest read from ``manifest_path`` (named in errors)."""
    module = _module(arch_or_module, kwargs)
    try:
        module = apply_manifest(module, manifest["layers"], bool(manifest.get("depthwise_bias", False)))
    except RewriteError as exc:
        raise InputError(f"{manifest_path}: {exc}") from None
    try:
        state = torch.load(state_dict_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is an input problem
        raise InputError(f"{state_dict_path}: cannot read state_dict ({type(exc).__name__}: {exc})") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"{state_dict_path}: does not fit the structure {manifest_path} records: "
                         f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    return module.eval()
