"""The fuzzing campaign against sepconv's command line (not a test; ``tests/test_fuzz.py`` runs a subset).

    python benchmarks/fuzz.py --cases 10000 [--seed S] [--jobs 2] [--minutes 15] [--save-failures DIR]

Generates the cases (``fuzz_cases``), runs them in real processes (``fuzz_run``: persistent workers, and
every tenth case in a fresh ``python -m sepconv_cli``), and prints a table: class -> cases -> outcome,
then one example per failing outcome (case index, mutation, first stderr line) to reproduce with the same
seed. Exits 1 when any case failed. ``--save-failures`` writes each failing case's files and command line.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fuzz_cases import CLASSES, generate  # noqa: E402
from fuzz_run import BAD, OUTCOMES, Plan, Verdict, run_cases  # noqa: E402


def table(verdicts: list[Verdict]) -> str:
    """Class -> count -> outcome counts (columns with no case left out), with a total row."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for v in verdicts:
        counts[v.case.klass][v.outcome] += 1
        counts["total"][v.outcome] += 1
    shown = [o for o in OUTCOMES if o in ("ok", "clean error") or counts["total"][o]]
    shown += [o for o in BAD if o not in shown]
    header = ["class", "cases", *shown]
    rows = [[k, str(sum(c.values())), *(str(c[o]) for o in shown)]
            for k, c in sorted(counts.items(), key=lambda kv: (kv[0] == "total", kv[0]))]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def examples(verdicts: list[Verdict]) -> list[str]:
    """One line per failing outcome: the first case that had it."""
    out = []
    for outcome in BAD:
        first = next((v for v in verdicts if v.outcome == outcome), None)
        if first is not None:
            out.append(f"{outcome}: case {first.case.index} ({first.case.klass}; {first.case.mutation[:80]}) "
                       f"`sepconv {' '.join(first.case.argv)}`: {first.detail}")
    return out


def save(verdicts: list[Verdict], folder: str) -> None:
    """Each failing case's files and command line under ``folder/case-N``."""
    for v in verdicts:
        if v.outcome not in BAD:
            continue
        target = os.path.join(folder, f"case-{v.case.index}")
        for rel, data in v.case.files.items():
            os.makedirs(os.path.dirname(os.path.join(target, rel)), exist_ok=True)
            with open(os.path.join(target, rel), "wb") as fh:
                fh.write(data)
        with open(os.path.join(target, "case.json"), "w", encoding="utf-8") as fh:
            json.dump({"argv": v.case.argv, "class": v.case.klass, "mutation": v.case.mutation,
                       "outcome": v.outcome, "detail": v.detail}, fh, indent=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=float("inf"), help="start no case after this long")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    parser.add_argument("--fresh-every", type=int, default=10, help="every N-th case in a fresh process")
    parser.add_argument("--classes", default=",".join(CLASSES), help="comma-separated case classes")
    parser.add_argument("--save-failures", metavar="DIR")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cases = generate(args.seed, args.cases, tuple(args.classes.split(",")))
    plan = Plan(jobs=args.jobs, fresh_every=args.fresh_every, timeout=args.timeout, budget_s=args.minutes * 60)
    done = [0]

    def progress(verdict: Verdict) -> None:
        done[0] += 1
        if done[0] % 100 == 0:
            print(f"  {done[0]} cases, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    verdicts = run_cases(cases, plan, progress)
    print(f"seed {args.seed}: {len(verdicts)} of {len(cases)} cases in {time.perf_counter() - start:.0f} s, "
          f"{args.jobs} jobs")
    print(table(verdicts))
    for line in examples(verdicts):
        print(line)
    if args.save_failures:
        save(verdicts, args.save_failures)
    return 1 if any(v.outcome in BAD for v in verdicts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
