"""Per-layer comparison of two reports (original vs converted, main vs a pull request): `sepconv diff`.

Layers are matched by name first, then by module path (``/layer1/layer1.0/conv1/Conv`` and
``layer1.0.conv1`` are one layer), then by position and op among the rest (an alignment of their op
sequences, so a renamed layer in the same place still matches). A removed layer whose name the added
layers extend (``/b/conv/Conv`` -> ``/b/conv/Conv/depthwise`` + ``/b/conv/Conv/pointwise``; module ``0``
-> ``0.depthwise`` + ``0.pointwise``) is one change, a ``split``. Everything else unmatched is ``added``
or ``removed``. Units: params in elements, MACs; sizes in bytes. No printing; pure data.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import Enum

from sepconv_cli.core.names import module_path
from sepconv_cli.core.records import Layer, Report


class Change(str, Enum):
    """What happened to one layer between the two models."""

    SAME = "same"
    CHANGED = "changed"
    SPLIT = "split"
    ADDED = "added"
    REMOVED = "removed"


class MatchedBy(str, Enum):
    """How a layer of the first model was paired with the second's (``NONE`` for added/removed)."""

    NAME = "name"
    MODULE = "module path"
    POSITION = "position and op"
    PREFIX = "name prefix"
    NONE = ""


@dataclass(frozen=True)
class LayerChange:
    """One row of a diff: the layer before (None when added), the layers after (none when removed; several
    for a split), how they were matched, and what changed."""

    change: Change
    before: Layer | None
    after: tuple[Layer, ...]
    matched_by: MatchedBy = MatchedBy.NONE

    @property
    def name(self) -> str:
        """The layer's name: the one before, else the first one after."""
        return self.before.name if self.before is not None else self.after[0].name

    @property
    def params(self) -> tuple[int, int]:
        """(params before, params after), 0 for a side that has no layer."""
        return (self.before.params if self.before else 0), sum(x.params for x in self.after)

    @property
    def macs(self) -> tuple[int | None, int | None]:
        """(MACs before, MACs after); None where a side's MACs are unknown."""
        before = 0 if self.before is None else self.before.macs
        after_values = [x.macs for x in self.after]
        after = None if any(v is None for v in after_values) else sum(v or 0 for v in after_values)
        return before, after

    @property
    def output_shapes(self) -> tuple[tuple, tuple]:
        """Output shapes before and after (of the last layer after, for a split)."""
        before = self.before.output_shapes if self.before is not None else ()
        return before, (self.after[-1].output_shapes if self.after else ())

    @property
    def shape_changed(self) -> bool:
        """True when a layer that exists on both sides has another output shape."""
        before, after = self.output_shapes
        return self.before is not None and bool(self.after) and before != after


@dataclass(frozen=True)
class ModelDiff:
    """Two reports and their per-layer changes, in the second model's order (removed layers where they
    stood in the first)."""

    before: Report
    after: Report
    changes: tuple[LayerChange, ...]

    def count(self, change: Change) -> int:
        """How many rows have this change."""
        return sum(1 for c in self.changes if c.change is change)

    @property
    def changed(self) -> tuple[LayerChange, ...]:
        """Every row that is not ``same``."""
        return tuple(c for c in self.changes if c.change is not Change.SAME)


def _differs(a: Layer, b: Layer) -> bool:
    return (a.op, a.params, a.macs, a.output_shapes, a.input_shapes, a.conv) != \
        (b.op, b.params, b.macs, b.output_shapes, b.input_shapes, b.conv)


def _pair_by_key(a: list[Layer], b: list[Layer], key, pairs: dict[int, tuple[int, MatchedBy]],
                 how: MatchedBy) -> None:
    """Pair unmatched layers whose ``key`` is equal and unique on both sides."""
    taken = {j for j, _ in pairs.values()}
    left: dict[str, list[int]] = {}
    right: dict[str, list[int]] = {}
    for i, layer in enumerate(a):
        if i not in pairs:
            left.setdefault(key(layer), []).append(i)
    for j, layer in enumerate(b):
        if j not in taken:
            right.setdefault(key(layer), []).append(j)
    for k, lefts in left.items():
        if len(lefts) == 1 and len(right.get(k, ())) == 1:
            pairs[lefts[0]] = (right[k][0], how)


def _pair_by_position(a: list[Layer], b: list[Layer], pairs: dict[int, tuple[int, MatchedBy]]) -> None:
    """Align the op sequences of the still unmatched layers; equal runs pair up in order."""
    taken = {j for j, _ in pairs.values()}
    left = [i for i in range(len(a)) if i not in pairs]
    right = [j for j in range(len(b)) if j not in taken]
    matcher = difflib.SequenceMatcher(a=[a[i].op for i in left], b=[b[j].op for j in right], autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            pairs[left[block.a + k]] = (right[block.b + k], MatchedBy.POSITION)


def _extends(prefix: str, name: str) -> bool:
    return name.startswith((prefix + "/", prefix + "."))


def _splits(a: list[Layer], b: list[Layer], pairs: dict[int, tuple[int, MatchedBy]]) -> dict[int, list[int]]:
    """Removed layers of ``a`` whose name the added layers of ``b`` extend: index in a -> indices in b."""
    taken = {j for j, _ in pairs.values()}
    added = [j for j in range(len(b)) if j not in taken]
    out: dict[int, list[int]] = {}
    for i in (i for i in range(len(a)) if i not in pairs):
        parts = [j for j in added if _extends(a[i].name, b[j].name)]
        if parts:
            out[i] = parts
            added = [j for j in added if j not in parts]
    return out


def _row(a: list[Layer], b: list[Layer], i: int, j: int, how: MatchedBy) -> LayerChange:
    change = Change.CHANGED if _differs(a[i], b[j]) else Change.SAME
    return LayerChange(change, a[i], (b[j],), how)


def diff_reports(before: Report, after: Report) -> ModelDiff:
    """The per-layer changes from ``before`` to ``after`` (see module docstring)."""
    a, b = list(before.layers), list(after.layers)
    pairs: dict[int, tuple[int, MatchedBy]] = {}
    _pair_by_key(a, b, lambda x: x.name, pairs, MatchedBy.NAME)
    _pair_by_key(a, b, lambda x: module_path(x.name), pairs, MatchedBy.MODULE)
    splits = _splits(a, b, pairs)
    _pair_rest(a, b, pairs, splits)
    by_b = {j: (i, how) for i, (j, how) in pairs.items()}
    split_at = {parts[0]: i for i, parts in splits.items()}
    in_split = {j for parts in splits.values() for j in parts}
    rows: list[LayerChange] = []
    done_a: set[int] = set()

    def flush_removed(upto: int) -> None:
        for i in range(upto):
            if i not in done_a and i not in pairs and i not in splits:
                rows.append(LayerChange(Change.REMOVED, a[i], ()))
                done_a.add(i)

    for j in range(len(b)):
        if j in by_b:
            i, how = by_b[j]
            flush_removed(i)
            rows.append(_row(a, b, i, j, how))
            done_a.add(i)
        elif j in split_at:
            i = split_at[j]
            flush_removed(i)
            rows.append(LayerChange(Change.SPLIT, a[i], tuple(b[k] for k in splits[i]), MatchedBy.PREFIX))
            done_a.add(i)
        elif j not in in_split:
            rows.append(LayerChange(Change.ADDED, None, (b[j],)))
    flush_removed(len(a))
    return ModelDiff(before, after, tuple(rows))


def _pair_rest(a: list[Layer], b: list[Layer], pairs: dict[int, tuple[int, MatchedBy]],
               splits: dict[int, list[int]]) -> None:
    """Position-and-op pairing of what neither names nor splits matched (added to ``pairs``)."""
    shadow = dict(pairs)
    for i, parts in splits.items():  # split layers and their parts take no part in the alignment
        shadow[i] = (parts[0], MatchedBy.PREFIX)
        for j in parts:
            shadow[-1 - j] = (j, MatchedBy.PREFIX)
    known = set(shadow)
    _pair_by_position(a, b, shadow)
    pairs.update({i: value for i, value in shadow.items() if i not in known})
