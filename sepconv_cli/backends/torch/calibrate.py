"""Calibrated refit for PyTorch models: ``nn.Module`` sources and ``.pt2`` programs.

Both networks are walked forward once over the sample chunks (``walk.FxWalker``): the original up to each
layer's target (the conv's output, or the folded BatchNorm's output), the converted one up to the cut
before each layer's depthwise conv, whose input is then read from the live values. ``nn.Module`` graphs
come from ``torch.fx.symbolic_trace``; a module fx cannot trace (data-dependent control flow) falls back
to forward hooks that stop the pass once the wanted tensor exists, which reruns the prefix per layer.
``.pt2`` programs are walked through ``ExportedProgram.module()`` and exported again at the end with the
converted program's example inputs and dynamic dims. Where the factors live: ``calib_layouts``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.utils._pytree import tree_leaves

from sepconv_cli.backends.torch.calib_hooks import HookDriver
from sepconv_cli.backends.torch.calib_layouts import ModuleLayout, ProgramLayout, relu_only_users
from sepconv_cli.backends.torch.export import program_examples
from sepconv_cli.backends.torch.pt2 import _reexport
from sepconv_cli.backends.torch.runtime import quiet, to_numpy
from sepconv_cli.backends.torch.walk import FxWalker
from sepconv_cli.calibration.loop import CalibResult, Chunks, LayerTask, run_calibration
from sepconv_cli.calibration.solve import CalibOptions
from sepconv_cli.core.plans import Plan
from sepconv_cli.errors import UsageError


class FxDriver:
    """Runs and edits traced graphs for the calibration loop (see ``calibration.loop.Driver``)."""

    def __init__(self, graphs: tuple[fx.GraphModule, fx.GraphModule], layout: Any, plan: Plan,
                 inputs: dict[str, np.ndarray], step: int = 1):
        self.original, self.converted = graphs
        self.layout, self.plan, self.inputs, self.step = layout, plan, inputs, step
        self._walk: dict[bool, FxWalker] = {}
        self._targets: dict[fx.Node, list[torch.Tensor | None]] = {}
        self._done: set[str] = set()
        self.factors, self.install = layout.factors, layout.install

    def _args(self, indices: np.ndarray) -> list[torch.Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(a[indices])) for a in self.inputs.values()]

    def order(self) -> list[str]:
        """Planned layer names in the order the converted graph runs their depthwise convs."""
        position = {n: i for i, n in enumerate(self.converted.graph.nodes)}
        return sorted((p.name for p in self.plan.layers),
                      key=lambda name: position[self.layout.depthwise_node(self.converted, name)])

    def begin(self, chunks: Chunks) -> None:
        feeds = [self._args(i) for i in chunks.indices]
        self._walk = {False: FxWalker(self.original, feeds), True: FxWalker(self.converted, feeds)}
        self._targets, self._done = {}, set()

    def depthwise(self, name: str, kernel: np.ndarray | None = None) -> Iterator[np.ndarray]:
        walker, node = self._walk[True], self.layout.depthwise_node(self.converted, name)
        kernel = self.factors(name)[0] if kernel is None else kernel
        for index in range(len(walker.live)):
            walker.advance_chunk(index, walker.index[node])  # a chunk reaches the layer's cut as its turn comes
            with torch.no_grad():
                yield to_numpy(self.layout.apply_depthwise(name, walker.live[index][node.args[0]], kernel))

    def targets(self, name: str) -> Iterator[np.ndarray]:
        node, walker = self.layout.target_node(self.original, name), self._walk[False]
        wanted = [self.layout.target_node(self.original, p.name) for p in self.plan.layers if p.name not in self._done]
        count = len(walker.live)
        for index in range(count):
            if self._targets.get(node, [None] * count)[index] is None:
                taken = walker.advance_chunk(index, max(walker.index[node] + 1, walker.at[index]), wanted)
                for want, value in taken.items():
                    stored = self._targets.setdefault(want, [None] * count)
                    stored[index] = value if stored[index] is None else stored[index]
            yield to_numpy(self._targets[node][index])

    def relu_follows(self, name: str) -> bool:
        return relu_only_users(self.layout.target_node(self.original, name), self.original)

    def advance(self, name: str) -> None:
        self._done.add(name)
        self._targets.pop(self.layout.target_node(self.original, name), None)

    def outputs(self, converted: bool, indices: np.ndarray) -> list[np.ndarray]:
        model = self.converted if converted else self.original
        parts = []
        with torch.no_grad():
            for start in range(0, len(indices), self.step):
                result = model(*self._args(indices[start:start + self.step]))
                parts.append([to_numpy(t) for t in tree_leaves(result) if isinstance(t, torch.Tensor)])
        return [np.concatenate(chunk) for chunk in zip(*parts)]


def _tasks(names: list[str], plan: Plan, layout: Any, search: bool) -> list[LayerTask]:
    tasks = []
    for name in names:
        weight, groups, transposed = layout.folded_weight(name)
        rank = next(p.rank for p in plan.layers if p.name == name)
        tasks.append(LayerTask(name, groups, rank, transposed, weight if search else None))
    return tasks


def _trace(model: nn.Module) -> fx.GraphModule | None:
    """``model`` traced by ``torch.fx`` (None when it cannot be traced: data-dependent control flow...)."""
    try:
        with quiet():
            return fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means: use the hook driver instead
        return None


def calibrate_torch(original: nn.Module, converted: nn.Module, plan: Plan, inputs: dict[str, np.ndarray],
                    options: CalibOptions = CalibOptions()) -> CalibResult:
    """Refit every planned layer of ``converted`` (a deep copy; the argument is left untouched).
    ``inputs`` are passed to ``forward`` positionally, in dict order."""
    if not isinstance(original, nn.Module) or not isinstance(converted, nn.Module):
        raise UsageError("calibration needs nn.Module models here; .pt2 programs go through calibrate_pt2")
    count = min(options.samples, min(len(a) for a in inputs.values()))
    inputs = {k: v[:count] for k, v in inputs.items()}
    model = copy.deepcopy(converted).eval()
    layout = ModuleLayout(model, original.eval(), plan)
    graphs = (_trace(layout.original), _trace(model))
    driver: Any
    if graphs[0] is not None and graphs[1] is not None:
        driver = FxDriver(graphs, layout, plan, inputs)
    else:
        driver = HookDriver(layout, plan, inputs)
    tasks = _tasks(driver.order(), plan, layout, options.max_output_error is not None)
    with torch.no_grad():
        report, ranks, energies = run_calibration(driver, tasks, count, options)
    return CalibResult(model=model, report=report, ranks=ranks, energies=energies)


def fixed_step(program: Any) -> int:
    """1 when the program's batch dim is dynamic, else its example batch size."""
    _, args, dynamic = program_examples(program)
    free = dynamic is not None and all(spec and 0 in spec for spec in dynamic)
    return 1 if free else max(1, int(args[0].shape[0]))


def calibrate_pt2(original: Any, converted: Any, plan: Plan, inputs: dict[str, np.ndarray],
                  options: CalibOptions = CalibOptions()) -> CalibResult:
    """Refit every planned layer of the converted ``ExportedProgram`` (a new program is returned)."""
    count = min(options.samples, min(len(a) for a in inputs.values()))
    inputs = {k: v[:count] for k, v in inputs.items()}
    with quiet():
        graphs = (original.module(), converted.module())
    layout = ProgramLayout(graphs[1], graphs[0], plan)
    driver = FxDriver(graphs, layout, plan, inputs, fixed_step(original))
    tasks = _tasks(driver.order(), plan, layout, options.max_output_error is not None)
    with torch.no_grad():
        report, ranks, energies = run_calibration(driver, tasks, count, options, driver.step)
    return CalibResult(model=_reexport(graphs[1], converted), report=report, ranks=ranks, energies=energies)


__all__ = ["FxDriver", "calibrate_pt2", "calibrate_torch"]
