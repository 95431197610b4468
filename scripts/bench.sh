#!/usr/bin/env bash
# Benchmark livekit_events against livekit's EventEmitter, psygnal, pyee,
# blinker and a compiled floor.  Does all the set-up on a fresh machine: makes
# a fresh virtualenv (default .venv-bench, or $VENV), builds and installs the
# package with its compiled core required (non-editable, so the installed
# wheel is what gets timed) and the `bench` extra, builds the floor extension,
# then runs the comparison (benchmarks/compare.py: table, targets, plot in
# benchmarks/results/).
#
#   bash scripts/bench.sh                 # full comparison (a few minutes)
#   bash scripts/bench.sh --quick         # smoke run (writes build/bench-results/)
#   bash scripts/bench.sh [compare.py options...]   e.g. --only 'fanout-*' --rounds 81
#                                   or --max-handlers 30000 (registration-scaling sizes)
#   bash scripts/bench.sh pytest [pytest args...]   # the pytest-benchmark suites instead
#
# PYTHON picks the interpreter (default: python3).  REUSE_VENV=1 keeps an
# existing $VENV (reinstalling the package) instead of recreating it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv-bench}"

if [ -z "${REUSE_VENV:-}" ] || [ ! -x "$VENV/bin/python" ]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# Fail the install, not the benchmark, if the extension doesn't build.
export LIVEKIT_EVENTS_REQUIRE_EXTENSIONS=1
"$VENV/bin/python" -m pip install --quiet ".[bench]"
if [ -n "${REUSE_VENV:-}" ]; then
    # The version didn't change: make pip rebuild from the current sources.
    "$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps .
fi

# Run from benchmarks/ as scripts (never `python -m` from the repository
# root), so the source tree can't shadow the installed package.
"$VENV/bin/python" benchmarks/build_floor.py >/dev/null
if [ "${1:-}" = "pytest" ]; then
    shift
    exec "$VENV/bin/pytest" benchmarks/ "$@"
fi
exec "$VENV/bin/python" benchmarks/compare.py "$@"
