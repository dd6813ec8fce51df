"""Child side of the shape probe (``python -m sepconv_cli.backends.onnx.probe_run FOLDER``).

Runs ``FOLDER/model.onnx`` in onnxruntime (logs silenced, no graph optimisation, one thread) on zeros, once
per feed set of ``FOLDER/feeds.json`` (``[{input: [shape, onnx elem type]}, ...]``), and prints the shape of
every output as JSON, one object per feed set. On failure: exit 1 and one line on stderr. Imports numpy
and onnxruntime only (not onnx, not torch) so that the child starts fast; the parent bounds its time and
memory (``shape_probe``).
"""

from __future__ import annotations

import json
import os
import sys

NUMPY_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}
"""ONNX elem type -> numpy dtype name, for the types a model input can have here."""


def run(folder: str) -> list[dict[str, list[int]]]:
    """Output shapes per feed set."""
    import numpy as np
    import onnxruntime as ort

    np.seterr(all="ignore")
    ort.set_default_logger_severity(3)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options, providers=["CPUExecutionProvider"])
    with open(os.path.join(folder, "feeds.json"), encoding="utf-8") as fh:
        feeds = json.load(fh)
    names = [o.name for o in session.get_outputs()]
    found = []
    for feed in feeds:
        inputs = {}
        for name, (shape, elem_type) in feed.items():
            if elem_type not in NUMPY_TYPES:
                raise TypeError(f"input {name!r} has element type {elem_type}, which a probe cannot make zeros of")
            inputs[name] = np.zeros(tuple(shape), dtype=NUMPY_TYPES[elem_type])
        values = session.run(None, inputs)
        found.append({n: [int(d) for d in np.shape(v)] for n, v in zip(names, values)})
    return found


def main(argv: list[str]) -> int:
    """Print the shapes as JSON; one line on stderr and status 1 when the run fails."""
    try:
        found = run(argv[1])
    except Exception as exc:  # noqa: BLE001 - the parent reads one line: why the run failed
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        sys.stderr.write(f"{type(exc).__name__}: {first}\n")
        return 1
    json.dump(found, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
