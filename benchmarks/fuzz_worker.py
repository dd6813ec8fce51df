"""A fuzz worker: one Python process that runs many sepconv command lines, one after the other, the way
``python -m sepconv_cli`` would (``fuzz_run`` starts it, feeds it requests, kills it on a hang).

Each request is a JSON line ``{"argv": [...], "cwd": folder, "env": {...}}`` on stdin; the reply is a JSON
line ``{"code", "stdout", "stderr", "seconds"}`` on the original stdout. Faithful to a fresh process where
it matters: file descriptors 1 and 2 are redirected to files during the run (so output written by C
libraries, onnxruntime's logger or LAPACK, is caught too); warning filters, numpy's error state,
``sys.path``, the working folder and environment are restored between runs, and modules imported from a
case folder (a config's entry point) are forgotten, so a payload imported once would run again.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
import warnings


def _forget_modules(folder: str) -> None:
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if path.startswith(folder):
            del sys.modules[name]


def _run(argv: list[str]) -> int:
    from sepconv_cli.cli import main

    sys.argv = ["sepconv", *argv]
    try:
        main()
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - what a real process would print before dying
        traceback.print_exc()
        return 1
    return 0


def serve() -> None:
    """Answer requests until stdin closes. A fatal signal (segfault, abort) is written with the Python
    stack to ``$FUZZ_WORKER_LOG`` when set, with the command line being run, so a death can be told."""
    import faulthandler

    import numpy as np

    log = open(os.environ["FUZZ_WORKER_LOG"], "a", encoding="utf-8") if os.environ.get("FUZZ_WORKER_LOG") else None
    if log is not None:
        faulthandler.enable(file=log)

    reply = os.fdopen(os.dup(1), "w", encoding="utf-8")
    saved_out, saved_err = os.dup(1), os.dup(2)
    filters, path, environ, numpy_state = list(warnings.filters), list(sys.path), dict(os.environ), np.geterr()
    home = os.getcwd()
    for line in sys.stdin:
        request = json.loads(line)
        os.environ.clear()
        os.environ.update({**environ, **request.get("env", {})})
        warnings.filters[:] = filters
        warnings._filters_mutated()  # type: ignore[attr-defined]  # forget which warnings were shown
        np.seterr(**numpy_state)
        if log is not None:
            log.write(f"run: {request['argv']}\n")
            log.flush()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os.chdir(request["cwd"])
            start = time.perf_counter()
            try:
                code = _run(request["argv"])
            finally:
                seconds = time.perf_counter() - start
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved_out, 1)
                os.dup2(saved_err, 2)
                os.chdir(home)
                sys.path[:] = path
                _forget_modules(os.path.realpath(request["cwd"]))
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode("utf-8", "backslashreplace")
            stderr = err.read().decode("utf-8", "backslashreplace")
        reply.write(json.dumps({"code": code, "stdout": stdout, "stderr": stderr, "seconds": seconds}) + "\n")
        reply.flush()


if __name__ == "__main__":
    serve()
