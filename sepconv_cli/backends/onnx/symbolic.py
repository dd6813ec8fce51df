"""MACs as an exact formula in the symbolic dims that stay symbolic (H, W, a sequence length).

The rows are counted at a grid of pinned sizes on a lattice (multiples of the model's total stride,
``lattice_step``), each row's MACs are interpolated exactly as a polynomial (``core.symbolic``), and the
fit is verified at one more pinned size off the grid. A fit that does not verify is retried at a
higher degree, then on a coarser lattice or from a larger smallest size; if none verifies, the rows stay
unknown and the report says why. A row whose polynomial is a constant gets that constant as its MACs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import onnx

from sepconv_cli.backends.onnx.counting import Counted, Counter
from sepconv_cli.backends.onnx.dims import Dims
from sepconv_cli.core.records import Layer, SymbolicMacs
from sepconv_cli.core.symbolic import MAX_DEGREE, Lattice, Polynomial, fit

STRIDED = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool", "ConvInteger", "QLinearConv"})
COARSER = (1, 2, 4)  # lattice step multipliers tried after the graph's total stride
STARTS = (1, 2, 4, 8)  # smallest multiples tried when small sizes are impossible for the model
CHECKS = 2  # sizes off the grid each fit is verified at


def lattice_step(graph: onnx.GraphProto, order: list[int]) -> int:
    """The largest product of strides along any path (conv and pooling strides, SpaceToDepth blocks):
    sizes that are multiples of it keep every intermediate size an affine function of the input size."""
    factor: dict[str, int] = {}
    best = 1
    for index in order:
        node = graph.node[index]
        before = max((factor.get(i, 1) for i in node.input if i), default=1)
        after = before * _stride(node)
        for out in node.output:
            factor[out] = after
        best = max(best, after)
    return best


def _stride(node: onnx.NodeProto) -> int:
    for attr in node.attribute:
        if node.op_type in STRIDED and attr.name == "strides" and attr.ints:
            return max(int(s) for s in attr.ints)
        if node.op_type in ("SpaceToDepth",) and attr.name == "blocksize":
            return int(attr.i)
    return 1


@dataclass(frozen=True)
class Fitted:
    """Rows with the fitted formulas written in, and the model's formula (None with ``problem`` set)."""

    layers: tuple[Layer, ...]
    macs: SymbolicMacs | None
    source: str = ""
    problem: str = ""


class _Grid:
    """Counts at lattice points, each size counted once."""

    def __init__(self, counter: Counter, sk: onnx.ModelProto, dims: Dims):
        self.counter, self.sk, self.dims = counter, sk, dims
        self.cache: dict[tuple[int, ...], Counted | None] = {}

    def counts(self, lattice: Lattice, points: list[tuple[int, ...]]) -> list[Counted | None]:
        sizes = [tuple(lattice.sizes(p).values()) for p in points]
        todo = list(dict.fromkeys(s for s in sizes if s not in self.cache))
        if todo:
            found = self.counter.at_points(self.sk, self.dims, [dict(zip(lattice.symbols, s)) for s in todo])
            self.cache.update(zip(todo, found))
        return [self.cache[s] for s in sizes]


def fit_macs(counter: Counter, sk: onnx.ModelProto, dims: Dims, layers: tuple[Layer, ...]) -> Fitted:
    """Fit every row's MACs in ``dims.symbols``; ``layers`` are the rows at symbolic sizes (shown as is)."""
    grid = _Grid(counter, sk, dims)
    base = lattice_step(counter.graph, counter.order)
    problem = "no size on the lattice could be counted"
    for step in (base * m for m in COARSER):
        # a batch-like symbol (leading dim only) goes through no stride: any size
        steps = tuple(1 if all(axis == 0 for _, axis in dims.places[s]) else step for s in dims.symbols)
        for start in STARTS:
            lattice = Lattice(dims.symbols, start=start, steps=steps)
            result = _try(grid, lattice)
            if isinstance(result, str):
                problem = result
                if result == "impossible sizes":
                    continue  # a larger smallest size may work
                break  # counted but no polynomial fits: try a coarser lattice
            return _apply(_with_dims(grid, lattice, layers), lattice, *result)
    names = ", ".join(dims.symbols)
    return Fitted(layers, None, problem=f"MACs depend on {names}; no exact formula found ({problem}); "
                                        "pin them with --input-shape")


def _with_dims(grid: _Grid, lattice: Lattice, layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Rows whose symbolic dims read as affine expressions in the input's symbols (``H/4``, not the
    ``unk__3`` that inference invents), fitted from the shapes at the degree-1 grid points."""
    points = lattice.grid(1)
    counted = grid.counts(lattice, points)
    out = []
    for index, layer in enumerate(layers):
        pinned_in = [c.layers[index].input_shapes for c in counted]  # type: ignore[union-attr]
        pinned_out = [c.layers[index].output_shapes for c in counted]  # type: ignore[union-attr]
        inputs = _dims(lattice, points, layer.input_shapes, pinned_in)
        operands = tuple(replace(o, shape=shape) for o, shape in zip(layer.operands, inputs))
        out.append(replace(layer, input_shapes=inputs, operands=operands + layer.operands[len(operands):],
                           output_shapes=_dims(lattice, points, layer.output_shapes, pinned_out)))
    return tuple(out)


def _dims(lattice: Lattice, points: list[tuple[int, ...]], shapes: tuple, pinned: list[tuple]) -> tuple:
    fitted = []
    for j, shape in enumerate(shapes):
        if shape is None or all(isinstance(d, int) for d in shape):
            fitted.append(shape)
            continue
        dims = []
        for axis, dim in enumerate(shape):
            values = {p: _at(pin, j, axis) for p, pin in zip(points, pinned)}
            known = not isinstance(dim, int) and all(isinstance(v, int) for v in values.values())
            dims.append(fit(lattice, 1, values).expression() if known else dim)  # type: ignore[arg-type]
        fitted.append(tuple(dims))
    return tuple(fitted)


def _at(shapes: tuple, j: int, axis: int) -> int | None:
    shape = shapes[j] if j < len(shapes) else None
    return shape[axis] if shape is not None and axis < len(shape) else None


_Found = tuple[list[Polynomial | None], tuple[Layer, ...], dict[str, int], str]


def _try(grid: _Grid, lattice: Lattice) -> _Found | str:
    """Per-row polynomials verified at two check points off the grid, or why not (a short phrase)."""
    for degree in range(1, MAX_DEGREE + 1):
        fitting = lattice.grid(degree)
        checks = [lattice.check_point(degree, which) for which in range(CHECKS)]
        counted = grid.counts(lattice, fitting + checks)
        if any(c is None for c in counted):
            return "impossible sizes"
        problems = [c.problem for c in counted if c.problem]  # type: ignore[union-attr]
        if problems:
            return f"shapes unknown and the probe did not run: {problems[0]}"
        rows = [tuple(layer.macs for layer in c.layers) for c in counted]  # type: ignore[union-attr]
        polys = _fit_rows(lattice, degree, fitting, rows[:len(fitting)])
        verified = all(p is None or p(lattice.sizes(point)) == m
                       for point, row in zip(checks, rows[len(fitting):]) for p, m in zip(polys, row))
        if verified:
            source = next((c.source for c in counted if c.source), "")  # type: ignore[union-attr]
            first = counted[len(fitting)]
            return polys, first.layers, lattice.sizes(checks[0]), source  # type: ignore[union-attr, return-value]
    return f"no polynomial of degree <= {MAX_DEGREE} per dim matches at {lattice.describe()}"


def _fit_rows(lattice: Lattice, degree: int, points: list[tuple[int, ...]],
              rows: list[tuple[int | None, ...]]) -> list[Polynomial | None]:
    """One polynomial per row (None for a row not counted at some point: it has no formula)."""
    polys: list[Polynomial | None] = []
    for index in range(len(rows[0])):
        values = {p: r[index] for p, r in zip(points, rows)}
        polys.append(None if any(v is None for v in values.values()) else fit(lattice, degree, values))  # type: ignore[arg-type]
    return polys


def _apply(layers: tuple[Layer, ...], lattice: Lattice, polys: list[Polynomial | None], sample: tuple[Layer, ...],
           check: dict[str, int], source: str) -> Fitted:
    """``layers`` with each fitted row's polynomial written in (``sample``: the rows at a pinned size,
    whose formulas name the operands); the model's polynomial is their sum."""
    total = Polynomial(lattice.symbols, ())
    rows = []
    for layer, poly, pinned in zip(layers, polys, sample):
        if poly is None:
            rows.append(layer)
            continue
        total = total + poly
        rows.append(_row(layer, poly, pinned))
    return Fitted(tuple(rows), total.record(lattice, check), source)


def _row(layer: Layer, poly: Polynomial, pinned: Layer) -> Layer:
    """The row with its polynomial: a constant becomes its MACs (with the pinned row's formula), else
    the formula and the note carry the polynomial."""
    symbols = [s for i, s in enumerate(poly.symbols) if any(powers[i] for powers, _ in poly.terms)]
    if not symbols:
        value = poly({s: 0 for s in poly.symbols})
        return replace(layer, macs=int(value), note=pinned.note, formula=pinned.formula)
    expression = poly.expression()
    generic = " = ".join(pinned.formula.split(" = ")[:2]) if pinned.formula else "MACs"
    return replace(layer, macs=None, macs_symbolic=expression, note=f"depends on {', '.join(symbols)}: {expression}",
                   formula=f"{generic} = {expression}")


__all__ = ["Fitted", "fit_macs", "lattice_step"]
