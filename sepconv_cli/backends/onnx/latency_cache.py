"""Per-machine cache of measured layer latencies: one JSON file, never a source of errors.

Location: ``$SEPCONV_CACHE_DIR/latency-v1.json``, else ``$XDG_CACHE_HOME/sepconv/latency-v1.json``, else
``~/.cache/sepconv/latency-v1.json``. Layout::

    {"version": 1, "machines": {MACHINE: {PROBE_KEY: {"original": s, "T:form": s, ...}}}}

``MACHINE`` names the CPU model, the onnxruntime version and the thread count, so timings taken elsewhere
are never reused. Values are seconds per run (batch 1). A missing, unreadable or malformed file reads as
empty; a file that cannot be written is left alone. Entries of a probe are written together, as measured
side by side in one run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
from pathlib import Path

FILE_NAME = "latency-v1.json"
VERSION = 1

Entries = dict[str, float]


def cache_path() -> Path:
    """Where the cache file lives (see the module docstring)."""
    folder = os.environ.get("SEPCONV_CACHE_DIR")
    if folder:
        return Path(folder) / FILE_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sepconv" / FILE_NAME


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def machine_key(threads: int) -> str:
    """``"CPU | onnxruntime VERSION | threads=N"``: timings are only comparable within one key."""
    import onnxruntime as ort

    return f"{cpu_model()} | onnxruntime {ort.__version__} | threads={threads}"


def _clean(entries: object) -> Entries:
    """The well-formed ``name -> seconds`` pairs of ``entries`` (positive finite numbers only)."""
    if not isinstance(entries, dict):
        return {}
    return {str(k): float(v) for k, v in entries.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0}


class LatencyCache:
    """The cache file's contents for one machine key; ``load`` and ``save`` never raise."""

    def __init__(self, machine: str, path: Path | None = None):
        self.machine = machine
        self.path = path or cache_path()
        self._probes: dict[str, Entries] = {}
        self._changed: set[str] = set()

    def load(self) -> LatencyCache:
        """Read this machine's entries from the file (nothing when it is missing or malformed)."""
        self._probes = {key: _clean(entries) for key, entries in self._read().get(self.machine, {}).items()}
        return self

    def get(self, probe_key: str) -> Entries:
        """Cached ``name -> seconds`` of one probe (empty when none)."""
        return dict(self._probes.get(probe_key, {}))

    def put(self, probe_key: str, entries: Entries) -> None:
        """Replace the entries of one probe (written by ``save``)."""
        self._probes[probe_key] = _clean(entries)
        self._changed.add(probe_key)

    def save(self) -> bool:
        """Merge the changed probes into the file (other machines and probes kept); False when it could not."""
        if not self._changed:
            return True
        machines = self._read()
        mine = machines.setdefault(self.machine, {})
        mine.update({key: self._probes[key] for key in self._changed})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".latency-", suffix=".tmp")
        except OSError:
            return False
        try:  # write aside, then rename: a reader never sees half a file
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({"version": VERSION, "machines": machines}, out, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        self._changed.clear()
        return True

    def _read(self) -> dict[str, dict]:
        """Every machine's probes from the file, or {} when it cannot be used."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON
            return {}
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("machines"), dict):
            return {}
        return {str(m): {str(k): v for k, v in probes.items() if isinstance(v, dict)}
                for m, probes in data["machines"].items() if isinstance(probes, dict)}
