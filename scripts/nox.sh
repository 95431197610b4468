# Sourced by scripts/test.sh, scripts/bench.sh and .ci/run (from the checkout
# root): makes sure nox, at the version pyproject.toml's `nox` dependency group
# pins, is installed in .venv-nox (or $NOX_VENV), bootstrapping it there when
# it isn't, with $NOX_PYTHON or else the first of python3, python3.13 ...
# python3.10 that is Python 3.10+ (what nox runs on); sets NOX to its path.
# Needs only the package registries.
NOX_VENV="${NOX_VENV:-.venv-nox}"
NOX="$NOX_VENV/bin/nox"
nox_pin="$(sed -n 's/^nox = \["nox==\([^"]*\)"\]$/\1/p' pyproject.toml)"
if [ "$("$NOX" --version 2>&1)" != "$nox_pin" ]; then
    echo "bootstrapping nox $nox_pin into $NOX_VENV" >&2
    nox_python=""
    for candidate in ${NOX_PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            nox_python="$candidate"
            break
        fi
    done
    if [ -z "$nox_python" ]; then
        echo "nox needs Python 3.10 or later: set NOX_PYTHON" >&2
        exit 1
    fi
    rm -rf "$NOX_VENV"
    "$nox_python" -m venv "$NOX_VENV"
    "$NOX_VENV/bin/python" -m pip install --quiet --upgrade pip  # --group: pip 25.1+
    "$NOX_VENV/bin/python" -m pip install --quiet --group nox
fi
unset nox_pin nox_python candidate
