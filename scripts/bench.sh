#!/usr/bin/env bash
# Benchmark livekit_events against livekit's EventEmitter, psygnal, pyee,
# blinker and a compiled floor.  Does all the set-up on a fresh machine: makes
# a fresh virtualenv (default .venv-bench, or $VENV), builds and installs the
# package with its compiled core required (non-editable, so the installed
# wheel is what gets timed) and the `bench` extra, builds the floor extension,
# then runs the comparison (benchmarks/compare.py: table, targets, plot in
# benchmarks/results/), then the thread benchmark (benchmarks/bench_threads.py:
# thread scaling against the floor's, and sustained emit rates and RSS with
# two emitting threads and a writer), on this interpreter and, when one is
# found ($FT_PYTHON, python3.13t on PATH, or the one
# scripts/build-freethreaded-python.sh caches), on free-threaded 3.13t with
# the GIL off.  The thread figures go to build/bench-results/threads-*.json.
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
"$VENV/bin/python" benchmarks/compare.py "$@"

quick=""
for arg in "$@"; do [ "$arg" = "--quick" ] && quick="--quick"; done
mkdir -p build/bench-results
results="$(pwd)/build/bench-results"
venv_python="$(cd "$VENV" && pwd)/bin/python"
(cd benchmarks && "$venv_python" bench_threads.py $quick --json "$results/threads-gil.json")

ft="${FT_PYTHON:-}"
[ -n "$ft" ] || ft="$(command -v python3.13t || true)"
[ -n "$ft" ] || ft="$HOME/.cache/freethreaded-python/3.13t/bin/python3.13t"
if [ -x "$ft" ]; then
    FT_VENV="${FT_VENV:-.venv-bench-ft}"
    rm -rf "$FT_VENV"
    "$ft" -m venv "$FT_VENV"
    "$FT_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$FT_VENV/bin/python" -m pip install --quiet --only-binary :all: "Cython>=3.1,<4" "setuptools>=64"
    "$FT_VENV/bin/python" -m pip install --quiet --no-deps .
    ft_python="$(cd "$FT_VENV" && pwd)/bin/python"
    (cd benchmarks && "$ft_python" bench_threads.py $quick --json "$results/threads-ft.json")
else
    echo "(no free-threaded CPython found: set FT_PYTHON, or build one with" \
         "bash scripts/build-freethreaded-python.sh)"
fi
