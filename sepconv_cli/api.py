"""The public Python API (re-exported by ``sepconv_cli``): ``analyze``, ``convert``, ``check`` and
``load_converted``, and the result types ``Report``, ``Conversion`` and ``CheckResult``.

Models are paths, entry points (``package.module:factory``), in-memory ``torch.nn.Module``s or
``onnx.ModelProto``s. Nothing heavy is imported until it is needed: analysing or checking an ONNX model
never imports torch. Errors are ``sepconv_cli.errors.SepconvError`` subclasses with a one-line message
(``UsageError`` for bad arguments, ``InputError`` for models that cannot be read).
Units everywhere: params and buffers in elements, MACs (1 MAC = 2 FLOPs), sizes in bytes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from sepconv_cli.core import checks, records
from sepconv_cli.core.records import Shape
from sepconv_cli.errors import UsageError

if TYPE_CHECKING:
    from sepconv_cli.backends.base import LoadOptions

ShapeSpec = str | Sequence[int] | Mapping[str, str | Sequence[int]] | None
"""``"1x3x224x224"``, ``(1, 3, 224, 224)``, or ``{"input": (1, 3, 224, 224), ...}`` for named inputs."""


def _copy_into(cls: type, value: Any) -> Any:
    """``value`` (a dataclass instance) as an instance of its subclass ``cls``, field for field."""
    return cls(**{f.name: getattr(value, f.name) for f in fields(value) if f.init})


class Report(records.Report):
    """The analysis of a model (``core.records.Report``): layers, totals, separable candidates.

    ``to_dict()`` gives the JSON schema of ``sepconv analyze --format json``; ``render(fmt)`` any other
    format (``"table"``, ``"markdown"``, ``"csv"``, ``"html"``)."""

    def to_dict(self, depth: int | None = None, sort: str = "order", top: int | None = None) -> dict:
        """The report as JSON-ready data; ``depth``/``sort``/``top`` add the ``view`` key, as the CLI's."""
        from sepconv_cli.render.json import report_dict
        from sepconv_cli.render.views import SortKey, ViewOptions

        return report_dict(self, ViewOptions(depth=depth, sort=SortKey(sort), top=top))

    def render(self, fmt: str = "table", width: int = 100, depth: int | None = None, sort: str = "order",
               top: int | None = None) -> str:
        """The report as text in format ``fmt`` (``table`` is ``width`` columns wide, without colour)."""
        from sepconv_cli.render import OutputFormat, RenderOptions, render
        from sepconv_cli.render.views import SortKey, ViewOptions

        view = ViewOptions(depth=depth, sort=SortKey(sort), top=top)
        return render(self, OutputFormat(fmt), RenderOptions(view=view, width=width))

    def __repr__(self) -> str:
        inputs = ", ".join(f"{t.name} {t.dtype}[{records.format_shape(t.shape)}]" for t in self.model.inputs)
        return (f"Report({self.model.path!r} ({self.model.format}), inputs: {inputs or '?'}, "
                f"params={self.params:,}, macs={self.macs:,}{' + ' + self.not_counted if self.not_counted else ''}, "
                f"layers={len(self.layers)}, candidates={len(self.candidates)})")


class CheckResult(checks.CheckResult):
    """Budget outcomes of ``check`` (``core.checks.CheckResult``); ``ok`` is True when all hold."""

    def to_dict(self) -> dict:
        """The JSON of ``sepconv check --format json``."""
        from sepconv_cli.render.check import check_dict

        return check_dict(self)

    def __repr__(self) -> str:
        from sepconv_cli.render.check import summary_line

        return f"CheckResult(ok={self.ok}: {summary_line(self)})"


def _parse_shape(text: str) -> Shape:
    """``"1x3x224x224"`` -> ``(1, 3, 224, 224)``; symbolic dims stay names (``"Nx3x224x224"``)."""
    dims: list[int | str] = []
    for part in text.replace(",", "x").split("x"):
        part = part.strip()
        if part.isdigit() and int(part) > 0:
            dims.append(int(part))
        elif part.isidentifier():
            dims.append(part)
        else:
            raise UsageError(f"bad shape {text!r}: expected e.g. 1x3x224x224")
    return tuple(dims)


_CONVERSION: list[type] = []


def conversion_type() -> type:
    """``Conversion``: the convert pipeline's ``ConversionResult`` with ``to_dict`` and a short ``repr``.
    Built on first use, since the pipeline imports numpy and the planner."""
    if _CONVERSION:
        return _CONVERSION[0]
    from sepconv_cli.pipeline.convert import ConversionResult

    class Conversion(ConversionResult):
        """What `convert` did: ``before``/``after`` reports, ``plan``, ``verification``, ``latency``, the
        ``output`` written (None for a plan only) and its ``manifest``."""

        def to_dict(self) -> dict:
            """The JSON of ``sepconv convert --format json``."""
            from sepconv_cli.render.convert import result_dict

            return result_dict(self)

        def __repr__(self) -> str:
            after = self.after
            figures = (f"params {self.before.params:,} -> {after.params:,}, MACs {self.before.macs:,} -> "
                       f"{after.macs:,}" if after is not None else
                       f"planned: {self.plan.params_saved:,} params and {self.plan.macs_saved:,} MACs saved")
            return (f"Conversion({self.before.model.path!r} -> {self.output!r}, {len(self.plan.layers)} "
                    f"layer(s), {figures})")

    Conversion.__module__ = __name__
    _CONVERSION.append(Conversion)
    return Conversion


def _shapes(spec: ShapeSpec) -> tuple[tuple[str | None, Shape], ...]:
    def one(value: str | Sequence[int]) -> Shape:
        return _parse_shape(value) if isinstance(value, str) else tuple(int(d) for d in value)

    if spec is None:
        return ()
    if isinstance(spec, Mapping):
        return tuple((str(name), one(value)) for name, value in spec.items())
    return ((None, one(spec)),)


def _load_options(input_shape: ShapeSpec, options: Mapping[str, Any], device: str = "auto") -> LoadOptions:
    from sepconv_cli.backends.base import LoadOptions

    kwargs = options.get("kwargs") or {}
    return LoadOptions(input_shapes=_shapes(input_shape), kwargs_json=json.dumps(kwargs) if kwargs else "",
                       arch=options.get("arch"), trust_pickle=bool(options.get("trust_pickle", False)),
                       engine=str(options.get("engine", "sepconv")), device=str(options.get("device", device)))


ANALYZE_OPTIONS = frozenset({"energy", "rank_by", "depthwise_bias", "fold_bn", "kwargs", "arch", "trust_pickle",
                             "engine", "device"})


def _is_module(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _is_onnx(model: Any) -> bool:
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(model, onnx.ModelProto)


def _load_module(model: Any, load: LoadOptions):
    """Count an in-memory module (its training mode is restored afterwards)."""
    from sepconv_cli.backends.torch.analyze import analyze_module

    device = next((str(t.device.type) for t in model.parameters()), "cpu")
    info = records.ModelInfo(path=f"<{type(model).__name__}>", format="module", device=device)
    training = model.training
    try:
        return analyze_module(model, info, load)
    finally:
        model.train(training)


def analyze(model: Any, input_shape: ShapeSpec = None, **options: Any) -> Report:
    """Analyse ``model``: every layer's params and MACs, the totals, and the separable candidates.

    ``model``: a file path, an entry point ``"package.module:factory"``, a ``torch.nn.Module`` or an
    ``onnx.ModelProto`` (analysed through a private temporary file; the report names it
    ``<onnx.ModelProto>`` and has no file size). ``input_shape``: see ``ShapeSpec``; PyTorch models need
    one unless they carry ``example_input_shapes``. ``options``: ``energy`` (0.9), ``rank_by`` (``"macs"``),
    ``depthwise_bias`` (False), ``fold_bn`` (True), and for PyTorch ``kwargs`` (a dict for the factory),
    ``arch``, ``trust_pickle``, ``engine`` (``"sepconv"``/``"fvcore"``), ``device`` (``"auto"``).
    """
    from sepconv_cli.pipeline.analyze import with_candidates
    from sepconv_cli.planner import CandidateOptions, RankBy

    unknown = set(options) - ANALYZE_OPTIONS
    if unknown:
        raise UsageError(f"analyze() got unknown option(s): {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(ANALYZE_OPTIONS))})")
    candidate_options = CandidateOptions(energy=float(options.get("energy", 0.9)),
                                         rank_by=RankBy(options.get("rank_by", "macs")),
                                         depthwise_bias=bool(options.get("depthwise_bias", False)),
                                         fold_bn=bool(options.get("fold_bn", True)))
    load = _load_options(input_shape, options)
    if _is_module(model):
        return _copy_into(Report, with_candidates(_load_module(model, load), candidate_options))
    if _is_onnx(model):
        from sepconv_cli.pipeline.memory_models import onnx_file

        with onnx_file(model) as path:
            report = with_candidates(_load_path(path, load), candidate_options)
        info = records.ModelInfo(path="<onnx.ModelProto>", format="onnx", inputs=report.model.inputs,
                                 outputs=report.model.outputs)
        return _copy_into(Report, _with_model(report, info))
    return _copy_into(Report, with_candidates(_load_path(_path(model), load), candidate_options))


def _with_model(report: records.Report, info: records.ModelInfo) -> records.Report:
    from dataclasses import replace

    return replace(report, model=info)


def _path(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    raise UsageError(f"model must be a path, an entry point, a torch.nn.Module or an onnx.ModelProto, "
                     f"got {type(model).__name__}")


def _load_path(path: str, load: LoadOptions):
    from sepconv_cli.backends.registry import load as load_model

    return load_model(path, load)


def check(models: str | os.PathLike | Iterable[str | os.PathLike], budgets: Mapping[str, Any],
          baseline: str | None = None, max_growth: float | str | None = None,
          input_shape: ShapeSpec = None) -> CheckResult:
    """Check each model against ``budgets`` (``{"max-params": "5M", "max_macs": 600e6, ...}``: the flag
    names, dashes or underscores, values as the flags take them) and, with ``baseline`` (a report from
    ``sepconv analyze --format json``), against its figures grown by at most ``max_growth`` (``"5%"``).
    A model that cannot be loaded becomes an entry of ``errors``; nothing is printed."""
    from sepconv_cli.pipeline.budgets import check_models

    paths = [os.fspath(models)] if isinstance(models, (str, os.PathLike)) else [os.fspath(m) for m in models]
    mapping = {str(k).replace("_", "-"): v for k, v in budgets.items()}
    result = check_models(paths, mapping, baseline, max_growth, _load_options(input_shape, {}))
    return _copy_into(CheckResult, result)


def convert(model: Any, output: str | os.PathLike | None = None, input_shape: ShapeSpec = None,
            **options: Any) -> Any:
    """Convert ``model`` (a path or an entry point) and write it to ``output``; without ``output``, plan
    only (nothing is written). ``options`` are ``PlanOptions`` fields (``rank``, ``energy``, ``max_error``,
    ``full_rank``, ``select``, ``exclude``, ``top``, ``min_saving``, ``init``, ``fold_bn``,
    ``depthwise_bias``) and ``verify`` (True), ``inputs`` (an ``.npz`` path), ``tolerance``, ``force``
    (False), ``seed`` (0), ``kwargs``/``arch``/``trust_pickle`` for PyTorch sources. Returns a
    ``Conversion`` (``.before``, ``.after``, ``.plan``, ``.verification``; ``.to_dict()`` is the JSON of
    ``sepconv convert --format json``)."""
    from sepconv_cli.pipeline.memory_models import run_conversion

    cls = conversion_type()
    if _is_module(model):
        raise UsageError("convert() takes a model file or an entry point; for an in-memory module, give "
                         "its factory as 'package.module:factory' (or save it with torch.export)")
    if _is_onnx(model):
        from sepconv_cli.pipeline.memory_models import onnx_file

        with onnx_file(model) as path:
            return _copy_into(cls, run_conversion(path, output, _load_options(input_shape, options, "cpu"), options))
    return _copy_into(cls, run_conversion(_path(model), output, _load_options(input_shape, options, "cpu"), options))


def load_converted(arch_or_module: Any, manifest_path: str | os.PathLike, state_dict_path: str | os.PathLike,
                   kwargs: Mapping[str, Any] | None = None) -> Any:
    """Rebuild a model converted to a state_dict (``sepconv convert ... -o model.pt``): build the original
    architecture (``arch_or_module``: an ``nn.Module``, changed in place, a factory, or an entry point
    ``"package.module:factory"`` called with ``kwargs``), give it the converted structure the manifest
    records, load the converted weights (strictly) and return it in eval mode."""
    from sepconv_cli.pipeline.restore import load_converted as restore

    return restore(arch_or_module, os.fspath(manifest_path), os.fspath(state_dict_path), dict(kwargs or {}))


__all__ = ["CheckResult", "Report", "ShapeSpec", "analyze", "check", "convert", "load_converted"]
