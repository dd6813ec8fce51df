"""The one-time shape probe: run the graph once in onnxruntime on zeros, read every intermediate shape.

Used only when static inference (with onnx's data propagation) leaves shapes unknown that a formula
needs, e.g. pads computed from the input shape at run time (TF-style 'same' padding in legacy exports).
The probe runs the *skeleton* (big weights are typed inputs, fed zeros: no weight bytes are read), cut
down to the nodes that compute the values whose shape is unknown, those values added as graph outputs,
at one or more pinned input sizes. Nothing downstream of a data-dependent op is asked for, so a ``Loop``
(endless or not) never runs in a probe.

Bounded (the graph is untrusted): the memory it needs is predicted from the inferred shapes (every value
is kept, since every value is an output) and the probe is refused above ``ProbeLimits.memory``; it runs in
a child process under a wall-clock timeout and, where the OS has it, ``RLIMIT_AS``; onnxruntime's logs are
silenced. The bounds are the command's (``--max-memory``, ``--run-timeout``: ``current_limits``). The
child (``probe_run``) imports onnxruntime and numpy only, never torch. Values downstream of an op whose output
shape depends on the data (NonZero, Unique, ...) are not taken from the probe: zeros say nothing there.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from math import prod

import onnx

from sepconv_cli.backends.onnx.subgraphs import ancestors
from sepconv_cli.backends.onnx.weights import dtype_bytes
from sepconv_cli.core.records import Shape, is_static

DATA_DEPENDENT = frozenset({"NonZero", "Unique", "NonMaxSuppression", "Compress", "Loop", "If", "StringSplit"})
"""Ops whose output shapes (or values fed to shapes) depend on the input data, not only on its shape."""

SOURCE = "one onnxruntime run on zeros"
"""How ``ModelInfo.shape_source`` names shapes that came from the probe."""


@dataclass(frozen=True)
class ProbeLimits:
    """Bounds of one probe: predicted bytes (refused above), wall-clock seconds, address space cap."""

    memory: int = 2 * 2**30
    seconds: float = 60.0
    address_space: int = 8 * 2**30


PROBE_SECONDS = 60.0
"""Longest a probe may run, whatever ``--run-timeout`` allows: it runs once, on zeros, only the nodes the
unknown shapes need (seconds)."""

RUNTIME_OVERHEAD = 2 * 2**30
"""Address space the child needs besides the tensors (interpreter, numpy, onnxruntime, thread stacks)."""


def current_limits() -> ProbeLimits:
    """The bounds a probe runs under now: the command's run limits (``--max-memory``, ``--run-timeout``,
    ``backends.limits``), the time capped at ``PROBE_SECONDS``."""
    from sepconv_cli.backends.limits import active

    run = active()
    return ProbeLimits(memory=run.memory, seconds=min(run.seconds, PROBE_SECONDS),
                       address_space=run.memory + RUNTIME_OVERHEAD)


@dataclass(frozen=True)
class Probe:
    """What the probe found: per point, ``name -> shape`` of every value it could read, or the one-line
    reason it did not run (``error``); ``source`` says where shapes came from (``SOURCE`` when it ran)."""

    shapes: tuple[dict[str, Shape], ...] = ()
    error: str = ""
    source: str = ""


def tainted(graph: onnx.GraphProto) -> set[str]:
    """Values whose shape (or shape-carrying value) may depend on the input data: outputs of
    ``DATA_DEPENDENT`` ops and everything computed from them."""
    bad: set[str] = set()
    for node in graph.node:  # a skeleton keeps the file's order, which exporters write topologically
        if node.op_type in DATA_DEPENDENT or any(i in bad for i in node.input if i):
            bad.update(o for o in node.output if o)
    return bad


def predicted_bytes(sk: onnx.ModelProto, shapes: dict[str, Shape | None], dtypes: dict[str, int]) -> int:
    """Bytes the probe holds at once: every input and every node output (all are outputs), a value of
    unknown shape taken as large as the largest known one."""
    names = [i.name for i in sk.graph.input] + [o for n in sk.graph.node for o in n.output if o]
    static = [(n, shapes.get(n)) for n in names]
    known = [dtype_bytes(dtypes.get(n, 1) or 1, prod(s)) for n, s in static if is_static(s)]  # type: ignore[arg-type]
    largest = max(known, default=0)
    unknown = sum(1 for n in names if not is_static(shapes.get(n)))
    return sum(known) + unknown * largest


def probe(sk: onnx.ModelProto, feeds: list[dict[str, tuple[tuple[int, ...], int]]], outputs: dict[str, int],
          limits: ProbeLimits, predicted: int) -> Probe:
    """Run ``sk`` once per entry of ``feeds`` (input name -> (shape, ONNX elem type), zeros) and return
    the shapes of ``outputs`` (name -> elem type); refused when ``predicted`` bytes exceed the limit."""
    if predicted > limits.memory:
        return Probe(error=f"it would hold about {predicted / 2**30:.1f} GiB (limit {limits.memory / 2**30:.1f} GiB)")
    import json
    import tempfile  # here, not at the top: analysing a model that needs no probe never pays for these

    model = onnx.ModelProto()
    model.CopyFrom(sk)
    graph = model.graph
    keep, read = ancestors(sk.graph, set(outputs))  # nothing else runs: no Loop, no op the outputs do not need
    del graph.node[:]
    graph.node.extend(keep)
    inputs = [i for i in sk.graph.input if i.name in read]
    del graph.input[:]
    graph.input.extend(inputs)
    feeds = [{k: v for k, v in f.items() if k in read} for f in feeds]
    del graph.output[:]
    graph.output.extend(onnx.helper.make_tensor_value_info(n, t, None) for n, t in outputs.items())
    graph.ClearField("value_info")
    with tempfile.TemporaryDirectory(prefix="sepconv-probe-") as folder:
        path = os.path.join(folder, "model.onnx")
        onnx.save_model(model, path)
        with open(os.path.join(folder, "feeds.json"), "w", encoding="utf-8") as fh:
            json.dump([{k: [list(s), t] for k, (s, t) in f.items()} for f in feeds], fh)
        return _run_child(folder, limits)


def _limit_memory(address_space: int):
    def apply() -> None:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        except (ImportError, ValueError, OSError):  # no RLIMIT_AS here: the timeout still bounds the run
            pass
    return apply


def _run_child(folder: str, limits: ProbeLimits) -> Probe:
    import json
    import subprocess

    command = [sys.executable, "-m", "sepconv_cli.backends.onnx.probe_run", folder]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ORT_LOGGING_LEVEL": "3"}
    try:
        done = subprocess.run(command, capture_output=True, timeout=limits.seconds, env=env, check=False,
                              preexec_fn=_limit_memory(limits.address_space) if os.name == "posix" else None)
    except subprocess.TimeoutExpired:
        return Probe(error=f"it ran past {limits.seconds:g} s")
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        return Probe(error=lines[-1][:200] if lines else f"the run ended with status {done.returncode}")
    found = json.loads(done.stdout)
    return Probe(shapes=tuple({k: tuple(v) for k, v in point.items()} for point in found), source=SOURCE)
