"""Where an entry point is built to be counted: ``--device auto`` (the default) builds it on the CPU when
its weights fit in memory, so that energy and risk figures come with the counts, and on the meta device
(no weight memory, counts only) otherwise.

The weight bytes are estimated from a meta build (parameters and buffers, each tensor once: no memory is
allocated), and compared with ``FIT_SHARE`` of the memory available now (``MemAvailable`` on Linux, free
physical pages elsewhere). Units: bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sepconv_cli.core.units import format_bytes as size

FIT_SHARE = 0.5
"""Weights may take at most this share of the available memory to be built on the CPU by default."""

AUTO = "auto"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now; None when the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def weight_bytes(model) -> int:
    """Bytes of a module's parameters and buffers, each tensor once (works on the meta device)."""
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}.values()
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class Choice:
    """The device chosen, and the sentence that says why (a note for cpu, a warning for meta)."""

    device: str
    reason: str
    warn: bool = False


def choose(meta_model, available: int | None = None) -> Choice:
    """CPU when ``meta_model``'s weights fit in ``FIT_SHARE`` of ``available`` bytes (default: now)."""
    need = weight_bytes(meta_model)
    free = available_memory() if available is None else available
    if free is None or need <= FIT_SHARE * free:
        where = "" if free is None else f" of the {size(free)} available"
        return Choice("cpu", f"built on the cpu: its weights ({size(need)}) fit in memory{where}; "
                             "--device meta counts without them")
    return Choice("meta", f"built on the meta device: its weights ({size(need)}) would take more than "
                          f"{FIT_SHARE:.0%} of the {size(free)} of memory available, so there are no energy "
                          "figures (--device cpu builds it anyway)", warn=True)
