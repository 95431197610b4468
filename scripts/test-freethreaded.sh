#!/usr/bin/env bash
# Test on free-threaded CPython 3.13t with the GIL off: nox's `freethreaded` session (noxfile.py), nox bootstrapped into .venv-nox.
set -euo pipefail; cd "$(dirname "$0")/.."; source scripts/nox.sh; exec "$NOX" -s freethreaded -- "$@"
