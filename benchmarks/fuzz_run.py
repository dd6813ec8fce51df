"""Running fuzz cases and judging what happened.

Two ways to run a case, both real processes: ``fresh`` starts ``python -m sepconv_cli`` for the one case;
a ``Worker`` (``fuzz_worker``) runs cases one after the other in one process, which skips the ~2 s start
of each run; a worker that hangs is killed and replaced. Each case runs in a fresh folder under its own
``TMPDIR``, and ``judge`` names the outcome (``OUTCOMES``): whether it exited as it should with one line,
printed a traceback or the internal-error line, hung, wrote more than one line, left files behind, ran a
payload, let library noise through, or put something other than its data on stdout.
"""

from __future__ import annotations

import json
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fuzz_cases import Case

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ENV = {"COLUMNS": "120", "NO_COLOR": "1", "PYTHONPATH": REPO, "SEPCONV_DEBUG": "", "PYTHONWARNINGS": ""}

OUTCOMES = ("ok", "clean error", "worker died", "traceback", "internal error", "hang", "crash", "multi-line error",
            "leftover files", "payload ran", "library noise", "bad stdout")
"""Every outcome, good ones first; all but the first three are failures. ``worker died``: a persistent
worker process died on the case, which then ran cleanly in a fresh process (told, not a failure)."""

BAD = OUTCOMES[3:]
THIRD_PARTY_TMP = frozenset({".ses"})
"""Files others leave in TMPDIR, not counted: onnxruntime's telemetry SDK keeps its session id in ``.ses``."""
NOISE = ("RuntimeWarning", "UserWarning", "DeprecationWarning", "FutureWarning", "\x1b[", ":onnxruntime:",
         "** On entry to", "Intel MKL ERROR", "Warning:")


@dataclass(frozen=True)
class Result:
    """What one run did: exit ``code`` (None: it hung or its process died), output, seconds."""

    code: int | None
    stdout: str
    stderr: str
    seconds: float
    hung: bool = False


@dataclass(frozen=True)
class Verdict:
    """The outcome of one case, with a one-line detail for the failures."""

    case: Case
    outcome: str
    detail: str = ""


def write_case(case: Case, folder: str) -> set[str]:
    """Write the case's files into ``folder``; returns the paths present before the run."""
    for rel, data in case.files.items():
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
    return _listing(folder)


def _listing(folder: str) -> set[str]:
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(root, name), folder))
    return found


def _leftovers(case: Case, before: set[str], folder: str, tmpdir: str, succeeded: bool) -> list[str]:
    new = _listing(folder) - before - {case.marker}
    allowed = set(case.outputs) if succeeded else set()
    left = sorted(p for p in new if p not in allowed or ".sepconv-" in p)
    return left + [f"TMPDIR/{name}" for name in sorted(os.listdir(tmpdir)) if name not in THIRD_PARTY_TMP]


def _json_ok(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def judge(case: Case, result: Result, folder: str, tmpdir: str, before: set[str]) -> Verdict:
    """The outcome of ``result`` (the worst thing that happened, in ``OUTCOMES`` order of failures)."""
    lines = result.stderr.strip().splitlines()
    first = lines[0][:200] if lines else ""
    if os.path.exists(os.path.join(folder, case.marker)):
        return Verdict(case, "payload ran", first)
    if result.hung:
        return Verdict(case, "hang", f"after {result.seconds:.0f} s")
    if result.code is None or result.code < 0 or result.code > 2:
        return Verdict(case, "crash", f"exit {result.code}: {first}")
    if "Traceback (most recent call last)" in result.stderr + result.stdout:
        return Verdict(case, "traceback", next((x for x in reversed(lines) if x.strip()), "")[:200])
    if "internal error" in result.stderr:
        return Verdict(case, "internal error", next(x for x in lines if "internal error" in x)[:200])
    leftovers = _leftovers(case, before, folder, tmpdir, result.code in (0, 1))
    if leftovers:
        return Verdict(case, "leftover files", ", ".join(leftovers[:5]))
    noisy = next((x for x in lines if any(n in x for n in NOISE)), None)
    if noisy is not None:
        return Verdict(case, "library noise", noisy[:200])
    if result.code == 2:
        if len(lines) != 1 or not lines[0].startswith("sepconv: error: "):
            return Verdict(case, "multi-line error", " | ".join(lines[:3])[:200])
        if result.stdout.strip():
            return Verdict(case, "bad stdout", f"exit 2 with stdout: {result.stdout[:80]!r}")
        return Verdict(case, "clean error", first)
    if case.expect_json and not _json_ok(result.stdout):
        return Verdict(case, "bad stdout", f"not JSON: {result.stdout[:80]!r}")
    return Verdict(case, "ok")


def run_fresh(case: Case, folder: str, tmpdir: str, timeout: float) -> Result:
    """The case in its own ``python -m sepconv_cli`` process."""
    env = {**os.environ, **ENV, "TMPDIR": tmpdir}
    start = _now()
    try:
        done = subprocess.run([sys.executable, "-m", "sepconv_cli", *case.argv], cwd=folder, env=env,
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return Result(None, _text(exc.stdout), _text(exc.stderr), _now() - start, hung=True)
    return Result(done.returncode, _text(done.stdout), _text(done.stderr), _now() - start)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "backslashreplace")


def _now() -> float:
    return time.perf_counter()


class Worker:
    """A ``fuzz_worker`` process with its own ``TMPDIR``; replaced after a hang or a death."""

    def __init__(self, tmpdir: str):
        self.tmpdir = tmpdir
        self.log = tmpdir.rstrip(os.sep) + ".log"  # beside its TMPDIR, which is cleared after every case
        self.proc: subprocess.Popen | None = None

    def last_words(self) -> str:
        """The end of the worker's log: the fatal signal and the stack, when it died of one."""
        try:
            with open(self.log, encoding="utf-8", errors="replace") as fh:
                lines = [line.strip() for line in fh.read().splitlines()[-8:] if line.strip()]
        except OSError:
            return ""
        return " | ".join(lines)[-300:]

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, **ENV, "TMPDIR": self.tmpdir, "FUZZ_WORKER_LOG": self.log}
        return subprocess.Popen([sys.executable, os.path.join(HERE, "fuzz_worker.py")], cwd=HERE, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def run(self, case: Case, folder: str, timeout: float) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        start = _now()
        request = {"argv": list(case.argv), "cwd": folder, "env": {"TMPDIR": self.tmpdir}}
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except BrokenPipeError:
            self.close()
            return Result(None, "", "worker died", _now() - start)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout + 30)  # start-up counts once
        line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line:
            hung = not ready
            self.close()
            return Result(None, "", "" if hung else "worker died", _now() - start, hung=hung)
        reply = json.loads(line)
        if reply["seconds"] > timeout:
            return Result(None, reply["stdout"], reply["stderr"], reply["seconds"], hung=True)
        return Result(reply["code"], reply["stdout"], reply["stderr"], reply["seconds"])

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass(frozen=True)
class Plan:
    """How to run a campaign: ``jobs`` parallel runners, every ``fresh_every``-th case in a fresh process
    (0: never), per-case ``timeout`` seconds, a worker replaced after ``recycle`` cases, no case started
    after ``budget_s`` seconds."""

    jobs: int = 2
    fresh_every: int = 10
    timeout: float = 120.0
    recycle: int = 200
    budget_s: float = float("inf")


def _one(case: Case, worker: Worker, plan: Plan, root: str) -> Verdict:
    folder = tempfile.mkdtemp(prefix=f"case{case.index}-", dir=root)
    tmpdir = worker.tmpdir
    before = write_case(case, folder)
    fresh = plan.fresh_every and case.index % plan.fresh_every == 0
    if fresh:
        tmpdir = tempfile.mkdtemp(prefix="tmp-", dir=root)
        result = run_fresh(case, folder, tmpdir, plan.timeout)
    else:
        result = worker.run(case, folder, plan.timeout)
    died = result.code is None and not result.hung and result.stderr == "worker died"
    if died:  # the worker carries state from earlier cases: the case itself is judged in a fresh process
        words = worker.last_words()
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        before = write_case(case, folder)
        tmpdir = tempfile.mkdtemp(prefix="tmp-", dir=root)
        result = run_fresh(case, folder, tmpdir, plan.timeout)
    verdict = judge(case, result, folder, tmpdir, before)
    if died:
        outcome = verdict.outcome if verdict.outcome in BAD else "worker died"
        verdict = Verdict(case, outcome, f"worker died ({words or 'no fatal signal logged'}); "
                                         f"in a fresh process: {verdict.outcome} {verdict.detail}".strip())
        fresh = True
    for path in (folder, tmpdir if fresh else None):
        if path:
            shutil.rmtree(path, ignore_errors=True)
    os.makedirs(worker.tmpdir, exist_ok=True)
    for name in os.listdir(worker.tmpdir):  # counted once, then cleared for the next case
        shutil.rmtree(os.path.join(worker.tmpdir, name), ignore_errors=True)
    return verdict


def run_cases(cases: Iterable[Case], plan: Plan = Plan(), progress: Callable[[Verdict], None] | None = None
              ) -> list[Verdict]:
    """Every case's verdict, in case order, ``plan.jobs`` at a time."""
    pending: queue.Queue = queue.Queue()
    for case in cases:
        pending.put(case)
    verdicts: list[Verdict] = []
    lock = threading.Lock()
    root = tempfile.mkdtemp(prefix="sepconv-fuzz-")
    stop_at = _now() + plan.budget_s

    def loop(slot: int) -> None:
        worker = Worker(tempfile.mkdtemp(prefix=f"worker{slot}-", dir=root))
        done = 0
        try:
            while _now() < stop_at:
                try:
                    case = pending.get_nowait()
                except queue.Empty:
                    return
                verdict = _one(case, worker, plan, root)
                done += 1
                if done % plan.recycle == 0:
                    worker.close()
                with lock:
                    verdicts.append(verdict)
                    if progress is not None:
                        progress(verdict)
        finally:
            worker.close()

    threads = [threading.Thread(target=loop, args=(slot,)) for slot in range(plan.jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shutil.rmtree(root, ignore_errors=True)
    return sorted(verdicts, key=lambda v: v.case.index)


__all__ = ["BAD", "OUTCOMES", "Plan", "Result", "Verdict", "judge", "run_cases", "run_fresh", "write_case"]
