#!/usr/bin/env bash
# Build a free-threaded CPython (3.13t, GIL off) from Debian's python3.13
# source package, for testing the extension with the GIL disabled.  No
# interpreter of that kind is on these machines and pyenv can't download one;
# Debian's trixie source package carries the pristine CPython tarball.
#
#   bash scripts/build-freethreaded-python.sh [PREFIX]
#
# Prints the interpreter's path on stdout (progress goes to stderr).  PREFIX
# defaults to $LIVEKIT_EVENTS_FT_PREFIX, else ~/.cache/freethreaded-python/3.13t
# (outside the checkout, so that CI and later runs reuse it); the interpreter
# is PREFIX/bin/python3.13t.  A second run with the interpreter present does
# nothing.  About 10 minutes on 2 cores.  Needs root for apt, and Debian's
# package sources (a Debian machine, as .ci/run's).
set -euo pipefail
PREFIX="${1:-${LIVEKIT_EVENTS_FT_PREFIX:-$HOME/.cache/freethreaded-python/3.13t}}"
PY="$PREFIX/bin/python3.13t"
if [ -x "$PY" ] && "$PY" -c 'import sys; sys.exit(sys._is_gil_enabled())'; then
    echo "$PY"
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A deb-src entry for trixie, with the URI of the Debian source this machine
# already uses.
uri="$(grep -m1 -E '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}')"
[ -n "$uri" ] || uri="$(grep -m1 -E '^deb ' /etc/apt/sources.list | awk '{print $2}')"
cat > /etc/apt/sources.list.d/ft-python-src.sources <<SRC
Types: deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
echo "building a free-threaded CPython 3.13 into $PREFIX (5-10 minutes)" >&2
apt-get update -qq >/dev/null
cd "$work"
apt-get source --download-only python3.13/trixie >/dev/null 2>&1
tarball="$(ls python3.13_*.orig.tar.xz | head -n1)"
tar xf "$tarball"
cd Python-3.13.*/
./configure --disable-gil --prefix="$PREFIX" --with-ensurepip=install >"$work/configure.log" 2>&1
make -j"$(nproc)" >"$work/make.log" 2>&1
make install >"$work/install.log" 2>&1
"$PY" -c 'import sys; assert not sys._is_gil_enabled(), "GIL is on"; print(sys.version)' >&2
echo "$PY"
