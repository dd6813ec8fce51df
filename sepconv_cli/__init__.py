"""sepconv: find, convert and budget the convolutions of a CNN (depthwise-separable rewrites).

The Python API (details in ``sepconv_cli.api``)::

    import sepconv_cli

    report = sepconv_cli.analyze("model.onnx")              # or an nn.Module / onnx.ModelProto
    report.macs, report.params, report.candidates           # MACs, elements, separable candidates
    report.to_dict()                                        # the JSON of `sepconv analyze --format json`
    result = sepconv_cli.check(["model.onnx"], {"max-params": "5M", "max-macs": "600M"})
    result.ok                                               # False when a budget is exceeded
    conversion = sepconv_cli.convert("model.onnx", "model.sep.onnx", rank=1)
    module = sepconv_cli.load_converted("nets:resnet18", "model.pt.manifest.json", "model.pt")

Everything is imported on first use (PEP 562): importing this package imports neither torch nor onnx,
and analysing an ONNX model never imports torch. Units: params in elements, MACs (1 MAC = 2 FLOPs), sizes
in bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names resolve through __getattr__
    from sepconv_cli.api import CheckResult, Report, analyze, check, convert, load_converted

__all__ = ["CheckResult", "Conversion", "Report", "__version__", "analyze", "check", "convert", "load_converted"]

_API = frozenset({"CheckResult", "Report", "analyze", "check", "convert", "load_converted"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from sepconv_cli import api

        return getattr(api, name)
    if name == "Conversion":
        from sepconv_cli.api import conversion_type

        return conversion_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
