#!/usr/bin/env bash
# Run the test suite against an installed build of livekit_events, with the
# compiled core required.  Does all the set-up: makes a fresh virtualenv
# (default .venv-test, or $VENV), builds and installs the package with its
# `test` extra, then runs pytest against the *installed* package, so the
# uncompiled source directory can't be tested by mistake.
#
#   bash scripts/test.sh [pytest args...]
#
# PYTHON picks the interpreter (default: python3).  Set
# LIVEKIT_EVENTS_TEST_PURE=1 to build without the extension and test only
# the pure-Python twin.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv-test}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ -n "${LIVEKIT_EVENTS_TEST_PURE:-}" ]; then
    LIVEKIT_EVENTS_NO_EXTENSIONS=1 "$VENV/bin/python" -m pip install --quiet ".[test]"
    set -- --no-c-extensions "$@"
else
    # Fail the install, not just the tests, if the extension doesn't build.
    LIVEKIT_EVENTS_REQUIRE_EXTENSIONS=1 "$VENV/bin/python" -m pip install --quiet ".[test]"
fi
# The console script (not `python -m pytest`) keeps the source tree off
# sys.path; conftest.py fails the run if the compiled core is expected but
# not what got imported.
exec "$VENV/bin/pytest" "$@"
