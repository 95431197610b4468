#!/usr/bin/env bash
# Run the test suite against an installed build of livekit_events, with the
# compiled core required, on both cores (the compiled core and its pure-Python
# twin, which ships in the same install).
#
#   bash scripts/test.sh [pytest args...]
#
# It runs nox's `tests` session (noxfile.py) for one interpreter, python3 or
# $PYTHON, bootstrapping nox into .venv-nox first if needed (scripts/nox.sh).
# The session makes a fresh virtualenv under .nox/, builds and installs the
# package with its `test` and `typing` dependency groups, and runs pytest
# against the *installed* package, so the uncompiled source can't be tested
# by mistake.  LIVEKIT_EVENTS_TEST_PURE=1 runs the `tests_pure` session
# instead: a build without the extension, testing the pure-Python twin only.
# For other interpreters and tasks: .venv-nox/bin/nox -l.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/nox.sh

version="$("${PYTHON:-python3}" -c 'import sys, sysconfig
t = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
print("%d.%d%s" % (sys.version_info[0], sys.version_info[1], t))')"
session=tests
[ -z "${LIVEKIT_EVENTS_TEST_PURE:-}" ] || session=tests_pure
echo "scripts/test.sh: $NOX -s $session --force-python $version" >&2
exec "$NOX" -s "$session" --force-python "$version" -- "$@"
