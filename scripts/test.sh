#!/usr/bin/env bash
# Create a fresh virtual environment, install sepconv with its dev extra (torch pinned), lint (ruff), type-check
# the pure layers (mypy), then run the tests. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-test
. .venv-test/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt -e ".[dev]"
python -m ruff check .
python -m mypy
set +e
python -m pytest -q -rs "$@"  # -rs: say why a test was skipped (e.g. no chromium for the browser test)
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "no tests were collected: failing" >&2
  exit 1
fi
exit "$rc"
