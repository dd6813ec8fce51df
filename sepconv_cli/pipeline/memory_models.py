"""In-memory models and conversions for the Python API (``sepconv_cli.api``): an ``onnx.ModelProto`` is
analysed or converted through a private temporary file, and a conversion runs the `convert` pipeline
from keyword options. No printing. Units: params in elements, MACs, bytes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

from sepconv_cli.backends.base import LoadOptions
from sepconv_cli.errors import UsageError
from sepconv_cli.pipeline.convert import ConversionResult, ConvertRequest
from sepconv_cli.planner import PlanOptions

PLAN_FIELDS = frozenset(f.name for f in fields(PlanOptions))
RUN_FIELDS = frozenset({"verify", "inputs", "tolerance", "force", "seed", "benchmark"})
LOAD_FIELDS = frozenset({"kwargs", "arch", "trust_pickle", "engine", "device"})


@contextlib.contextmanager
def onnx_file(model: Any) -> Iterator[str]:
    """``model`` (an ``onnx.ModelProto``) written to a private temporary ``.onnx`` file, removed on exit."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="sepconv-") as folder:
        path = os.path.join(folder, f"{model.graph.name or 'model'}.onnx")
        try:
            onnx.save_model(model, path)
        except (ValueError, OSError) as exc:
            raise UsageError(f"cannot serialise the ModelProto ({exc}); save it to a file (external data for "
                             "models over 2 GB) and pass its path") from None
        yield path


def run_conversion(source: str, output: Any, load: LoadOptions, options: Mapping[str, Any]) -> ConversionResult:
    """Run the `convert` pipeline on ``source``; ``output`` None plans only. ``options``: see
    ``sepconv_cli.api.convert``."""
    from sepconv_cli.pipeline.convert import convert

    unknown = set(options) - PLAN_FIELDS - RUN_FIELDS - LOAD_FIELDS
    if unknown:
        raise UsageError(f"convert() got unknown option(s): {', '.join(sorted(unknown))}")
    plan: dict[str, Any] = {k: (tuple(v) if k in ("select", "exclude") else v) for k, v in options.items()
                            if k in PLAN_FIELDS}
    if not any(plan.get(k) for k in ("rank", "energy", "max_error", "full_rank")):
        plan["energy"] = 0.9
    request = ConvertRequest(source=source, output=None if output is None else os.fspath(output), load=load,
                             plan=PlanOptions(**plan), force=bool(options.get("force", False)),
                             dry_run=output is None, verify=bool(options.get("verify", True)),
                             inputs_path=options.get("inputs"), tolerance=options.get("tolerance"),
                             benchmark=bool(options.get("benchmark", False)), seed=int(options.get("seed", 0)))
    return convert(request)
