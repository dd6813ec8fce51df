"""The fuzz subset: 320 seeded cases of every class (mutated ONNX files, configs, baselines, hostile
PyTorch archives) run through the real command line, in worker processes and a few fresh processes. Not
one may print a traceback, reach the internal-error handler, hang, crash, print more than one error line,
leave files behind, run a payload, let library noise through or corrupt stdout. ``benchmarks/fuzz.py``
runs the long campaign with the same generators. The judge itself is tested on made-up results."""

from __future__ import annotations

import os
import sys

import pytest
from repo_paths import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from fuzz_cases import CLASSES, Case, generate  # noqa: E402
from fuzz_run import BAD, Plan, Result, Worker, _one, judge, run_cases, write_case  # noqa: E402

SEED = 2026
CASES = 320


def _classes() -> tuple[str, ...]:
    try:
        import torch  # noqa: F401
    except ImportError:  # an ONNX-only install: no archives to build
        return tuple(c for c in CLASSES if c != "pytorch")
    return tuple(CLASSES)


def test_the_generator_is_seeded_and_covers_every_class():
    first, again = generate(SEED, 60, _classes()), generate(SEED, 60, _classes())
    assert [(c.klass, c.mutation, c.files, c.argv) for c in first] == \
        [(c.klass, c.mutation, c.files, c.argv) for c in again]
    assert {c.klass for c in first} == set(_classes())
    assert generate(SEED + 1, 5, _classes())[0].files != first[0].files or \
        generate(SEED + 1, 5, _classes())[0].mutation != first[0].mutation


@pytest.mark.slow
def test_the_fuzz_subset_finds_nothing():
    verdicts = run_cases(generate(SEED, CASES, _classes()), Plan(jobs=2, fresh_every=50, timeout=120))
    assert len(verdicts) == CASES
    bad = [v for v in verdicts if v.outcome in BAD]
    report = "\n".join(f"{v.outcome}: case {v.case.index} ({v.case.klass}; {v.case.mutation[:80]}) "
                       f"sepconv {' '.join(v.case.argv)}: {v.detail}" for v in bad)
    assert bad == [], report
    # "worker died": a long-lived worker process died on a case that then ran cleanly in a fresh process
    assert {"ok", "clean error"} <= {v.outcome for v in verdicts} <= {"ok", "clean error", "worker died"}


CASE = Case("onnx-bytes", "made up", {"model.onnx": b"x", "out/.keep": b""}, ("analyze", "model.onnx", "--format",
                                                                                  "json"), expect_json=True)


@pytest.mark.parametrize(("result", "outcome"), [
    (Result(0, "{}", "", 0.1), "ok"),
    (Result(2, "", "sepconv: error: model.onnx: broken\n", 0.1), "clean error"),
    (Result(2, "", "sepconv: error: one\nsepconv: error: two\n", 0.1), "multi-line error"),
    (Result(2, "", "Traceback (most recent call last):\n  x\nValueError: y\n", 0.1), "traceback"),
    (Result(2, "", "sepconv: internal error: ValueError: y (set SEPCONV_DEBUG=1 for a traceback)\n", 0.1),
     "internal error"),
    (Result(None, "", "", 121.0, hung=True), "hang"),
    (Result(-11, "", "", 0.1), "crash"),
    (Result(0, "** On entry to DLASCL parameter number 4 had an illegal value\n{}", "", 0.1), "bad stdout"),
    (Result(0, "{}", "x.py:3: RuntimeWarning: overflow encountered in cast\n", 0.1), "library noise"),
    (Result(2, "{}", "sepconv: error: model.onnx: broken\n", 0.1), "bad stdout"),
])
def test_the_judge_names_each_outcome(tmp_path, result, outcome):
    folder, tmpdir = tmp_path / "case", tmp_path / "tmp"
    folder.mkdir()
    tmpdir.mkdir()
    before = write_case(CASE, str(folder))
    assert judge(CASE, result, str(folder), str(tmpdir), before).outcome == outcome


def test_the_judge_sees_leftovers_and_payloads(tmp_path):
    folder, tmpdir = tmp_path / "case", tmp_path / "tmp"
    folder.mkdir()
    tmpdir.mkdir()
    before = write_case(CASE, str(folder))
    failed = Result(2, "", "sepconv: error: model.onnx: broken\n", 0.1)
    (folder / "out" / ".sepconv-x1").mkdir()
    assert judge(CASE, failed, str(folder), str(tmpdir), before).outcome == "leftover files"
    (folder / "out" / ".sepconv-x1").rmdir()
    (tmpdir / "sepconv-run-1").mkdir()
    assert judge(CASE, failed, str(folder), str(tmpdir), before).outcome == "leftover files"
    (folder / CASE.marker).write_text("")
    assert judge(CASE, failed, str(folder), str(tmpdir), before).outcome == "payload ran"


class _DyingWorker(Worker):
    """A worker whose process died on the case (as a segfault in a long-lived worker would look)."""

    def run(self, case, folder, timeout):
        return Result(None, "", "worker died", 0.1)

    def last_words(self):
        return "Fatal Python error: Segmentation fault"


def test_a_case_whose_worker_died_is_judged_again_in_a_fresh_process(tmp_path):
    worker = _DyingWorker(str(tmp_path / "worker0"))
    verdict = _one(CASE, worker, Plan(fresh_every=0), str(tmp_path))
    assert verdict.outcome == "worker died", verdict
    assert "Segmentation fault" in verdict.detail and "in a fresh process: clean error" in verdict.detail

