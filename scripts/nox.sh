# Sourced by scripts/test.sh, scripts/bench.sh and .ci/run (from the checkout
# root): makes sure nox, at the version pyproject.toml's `nox` dependency group
# pins, is installed in .venv-nox (or $NOX_VENV), bootstrapping it there with
# python3 (or $NOX_PYTHON) when it isn't; sets NOX to its path.  Needs only
# the package registries.
NOX_VENV="${NOX_VENV:-.venv-nox}"
NOX="$NOX_VENV/bin/nox"
nox_pin="$(sed -n 's/^nox = \["nox==\([^"]*\)"\]$/\1/p' pyproject.toml)"
if [ "$("$NOX" --version 2>/dev/null)" != "$nox_pin" ]; then
    echo "bootstrapping nox $nox_pin into $NOX_VENV" >&2
    rm -rf "$NOX_VENV"
    "${NOX_PYTHON:-python3}" -m venv "$NOX_VENV"
    "$NOX_VENV/bin/python" -m pip install --quiet --upgrade pip  # --group: pip 25.1+
    "$NOX_VENV/bin/python" -m pip install --quiet --group nox
fi
unset nox_pin
