#!/usr/bin/env bash
# Test livekit_events on free-threaded CPython 3.13t with the GIL off.
#
#   bash scripts/test-freethreaded.sh [pytest args...]
#
# Uses $FT_PYTHON if set, else builds (once, cached outside the checkout) a
# 3.13t interpreter from Debian's python3.13 source package with
# scripts/build-freethreaded-python.sh.  Then, in a fresh venv (default
# .venv-ft, or $VENV): installs the package with its compiled core required,
# checks that importing it leaves the GIL off, runs the whole suite, runs it
# again with every thread-safe test in 4 threads at once
# (pytest-run-parallel), and runs the concurrency hammer
# (tests/concurrency_hammer.py) on both cores, each run bounded by a timeout
# so that a hang fails instead of stalling.
set -euo pipefail
cd "$(dirname "$0")/.."

FT_PYTHON="${FT_PYTHON:-$(bash scripts/build-freethreaded-python.sh)}"
VENV="${VENV:-.venv-ft}"
HAMMER_RUNS="${HAMMER_RUNS:-3}"
HAMMER_SECONDS="${HAMMER_SECONDS:-5}"

"$FT_PYTHON" -c 'import sys; assert not sys._is_gil_enabled(), "not a free-threaded build"'
rm -rf "$VENV"
"$FT_PYTHON" -m venv "$VENV"
VENV="$(cd "$VENV" && pwd)"  # (used from tests/ below)
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Binary wheels only for the test dependencies: hypothesis's newest releases
# build a Rust part from source on free-threaded CPython.
"$VENV/bin/python" -m pip install --quiet --only-binary :all: \
    "pytest>=8" "hypothesis>=6.100" "pytest-run-parallel>=0.4" "livekit>=1.1.20,<1.3"
LIVEKIT_EVENTS_REQUIRE_EXTENSIONS=1 "$VENV/bin/python" -m pip install --quiet --no-deps .

echo "== importing the compiled core leaves the GIL off"
(cd tests && "$VENV/bin/python" -W error::RuntimeWarning -c '
import sys, livekit_events, livekit_events._core_c
assert livekit_events.IMPLEMENTATION == "compiled", livekit_events.IMPLEMENTATION
assert not sys._is_gil_enabled(), "importing livekit_events turned the GIL on"
print(sys.version.split()[0], "free-threaded, GIL off after import:", livekit_events.IMPLEMENTATION)')

echo "== the whole suite"
"$VENV/bin/pytest" -q -p no:cacheprovider "$@"
echo "== every thread-safe test in 4 threads at once"
"$VENV/bin/pytest" -q -p no:cacheprovider --parallel-threads=4 "$@"

echo "== the concurrency hammer: $HAMMER_RUNS runs of ${HAMMER_SECONDS}s per core"
for run in $(seq "$HAMMER_RUNS"); do
    for core in compiled pure; do
        (cd tests && timeout $((HAMMER_SECONDS + 120)) "$VENV/bin/python" concurrency_hammer.py \
            --core "$core" --seconds "$HAMMER_SECONDS") || {
            echo "hammer run $run on the $core core failed (exit $?)" >&2
            exit 1
        }
    done
done
