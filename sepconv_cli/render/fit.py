"""Tables that fit the terminal, the same way in every command.

A table has one *name* column (layer names, budget names) that gives way first: its cells are cut in the
middle (``text.fit_names``) to what the other columns leave, never below ``MIN_NAME`` characters. Below
``BAR_MIN_WIDTH`` columns the decorative bar columns go (the share next to them stays). If the table
still does not fit, droppable columns go in their ``drop`` order, and ``FittedTable.hidden`` names them so
that the caller says so: a column is never dropped silently. No cell wraps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sepconv_cli.render import text as tx

BAR_MIN_WIDTH = 100
"""Terminals narrower than this get no bar columns."""
MIN_NAME = 12
"""Narrowest the name column gets, however long the other columns are."""


class Role(str, Enum):
    """What a column holds: the shortenable name, data, or a decorative bar."""

    NAME = "name"
    DATA = "data"
    BAR = "bar"


@dataclass(frozen=True)
class Column:
    """One column: header, alignment, role, and when it may go (``drop``: 0 never, else lower goes
    first). ``label`` names it in the "not shown" note (default: the header)."""

    header: str
    right: bool = False
    role: Role = Role.DATA
    drop: int = 0
    label: str = ""


@dataclass(frozen=True)
class Cell:
    """A name cell: the name, its indentation level (two spaces each) and its style."""

    name: str
    level: int = 0


@dataclass(frozen=True)
class FittedTable:
    """The rich table and the labels of the columns left out to fit (empty when all fit)."""

    table: Table
    hidden: tuple[str, ...] = ()


def new_table() -> Table:
    """A report table: a rule under the bold header, no borders, one space between columns."""
    return Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, header_style="bold",
                 show_edge=False)


def _build(columns: Sequence[Column], rows: Sequence[Sequence], styles: Sequence[str], names: Sequence[str]):
    table = new_table()
    for column in columns:
        table.add_column(column.header, justify="right" if column.right else "left", no_wrap=True,
                         overflow="ellipsis")
    for row, style, name in zip(rows, styles, names):
        cells = [name if column.role is Role.NAME else cell for column, cell in zip(columns, row)]
        table.add_row(*(c if isinstance(c, Text) else Text(str(c)) for c in cells), style=style)
    return table


def _width(table: Table) -> int:
    return Console(width=100_000).measure(table).maximum


def _name_cells(cells: Sequence[Cell], width: int) -> list[str]:
    """Names cut to ``width`` minus their indentation, rows of one level cut together (``fit_names``)."""
    out = [""] * len(cells)
    for level in sorted({c.level for c in cells}):
        index = [i for i, c in enumerate(cells) if c.level == level]
        fitted = tx.fit_names([cells[i].name for i in index], max(MIN_NAME - 2 * level, width - 2 * level, 4))
        for i, name in zip(index, fitted):
            out[i] = "  " * level + name
    return out


def fit_table(columns: Sequence[Column], rows: Sequence[Sequence], width: int,
              styles: Sequence[str] | None = None) -> FittedTable:
    """``rows`` (one cell per column; the name column's cells are ``Cell``s) as a table of at most
    ``width`` characters where possible (see module docstring)."""
    styles = list(styles) if styles is not None else [""] * len(rows)
    keep = [i for i, c in enumerate(columns) if not (c.role is Role.BAR and width < BAR_MIN_WIDTH)]
    name_at = next((i for i, c in enumerate(columns) if c.role is Role.NAME), None)
    cells = [row[name_at] for row in rows] if name_at is not None else []
    natural = max([len("  " * c.level + c.name) for c in cells] + [len(columns[name_at].header)]) \
        if name_at is not None else 0
    hidden: list[str] = []
    while True:
        cols = [columns[i] for i in keep]
        sub = [[row[i] for i in keep] for row in rows]
        others = _width(_build(cols, sub, styles, [""] * len(rows)))
        room = width - others + (len(columns[name_at].header) if name_at is not None else 0)
        droppable = sorted((columns[i].drop, i) for i in keep if columns[i].drop > 0)
        if name_at is None and others <= width or room >= min(natural, MIN_NAME) or not droppable:
            break
        _, gone = droppable[0]
        keep.remove(gone)
        hidden.append(columns[gone].label or columns[gone].header)
    names = _name_cells(cells, max(room, len(columns[name_at].header))) if name_at is not None else []
    table = _build(cols, sub, styles, names or [""] * len(rows))
    return FittedTable(table, tuple(hidden))


def hidden_note(hidden: Sequence[str], width: int) -> str:
    """``"Not shown at 60 columns: saved at T, risk (widen the terminal or use --format json)."``"""
    if not hidden:
        return ""
    return f"Not shown at {width} columns: {', '.join(hidden)} (widen the terminal or use --format json)."
