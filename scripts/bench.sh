#!/usr/bin/env bash
# Benchmark livekit_events against livekit's EventEmitter, psygnal, pyee,
# blinker and a compiled floor.
#
#   bash scripts/bench.sh                   # the full comparison (about 10 minutes, plus the install)
#   bash scripts/bench.sh --quick           # smoke run (a minute or two, plus the install)
#   bash scripts/bench.sh --update-results  # the full comparison, then copy it into benchmarks/results/
#   bash scripts/bench.sh [compare.py options...]   e.g. --only 'fanout-*' --rounds 81
#                                   or --max-handlers 30000 (registration-scaling sizes)
#   bash scripts/bench.sh pytest [pytest args...]   # the pytest-benchmark suites instead
#
# It runs nox's `bench` and `bench_ft` sessions (noxfile.py), bootstrapping nox
# into .venv-nox first if needed (scripts/nox.sh).  `bench` makes a virtualenv
# under .nox/ with the `bench` dependency group, installs the package with its
# compiled core required (not editable, so the installed build is what gets
# timed), builds the floor extension, runs benchmarks/compare.py (table,
# targets, plots) and the thread benchmark (benchmarks/bench_threads.py);
# `bench_ft` runs the thread benchmark again on free-threaded CPython 3.13t
# with the GIL off, when one is found ($FT_PYTHON, python3.13t on PATH, or the
# one scripts/build-freethreaded-python.sh caches).
#
# Every run writes to a new directory, build/bench-results/<UTC time>/ (git
# ignores build/).  The committed benchmarks/results/ changes only with
# --update-results (nox's `bench_publish` session), and only from a full run.
# REUSE_VENV=1 keeps the benchmark virtualenvs (reinstalling the package).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/nox.sh

update=""
args=()
for arg in "$@"; do
    if [ "$arg" = "--update-results" ]; then update=1; else args+=("$arg"); fi
done
nox_args=(--no-error-on-missing-interpreters)
[ -z "${REUSE_VENV:-}" ] || nox_args+=(--reuse-venv=yes)
LIVEKIT_EVENTS_BENCH_DIR="build/bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
export LIVEKIT_EVENTS_BENCH_DIR
sessions=(bench bench_ft)
[ -z "$update" ] || sessions+=(bench_publish)
if [ -n "$update" ]; then
    for arg in ${args[@]+"${args[@]}"}; do
        case "$arg" in
            --quick|--only*|--max-handlers*)
                echo "bench.sh: --update-results takes a full run, not $arg" >&2
                exit 2 ;;
        esac
    done
fi
if [ "${args[0]:-}" = "pytest" ]; then
    [ -z "$update" ] || { echo "bench.sh: --update-results needs a comparison run, not pytest" >&2; exit 2; }
    sessions=(bench)
fi
echo "scripts/bench.sh: $NOX -s ${sessions[*]} (results: $LIVEKIT_EVENTS_BENCH_DIR)" >&2
exec "$NOX" "${nox_args[@]}" -s "${sessions[@]}" -- ${args[@]+"${args[@]}"}
