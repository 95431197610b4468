#!/usr/bin/env bash
# Memory safety: run a representative part of the test suite, the soak and the
# thread hammer against the compiled core under valgrind memcheck, with
# PYTHONMALLOC=malloc (so every object allocation is a malloc valgrind sees),
# and summarise: invalid reads/writes/frees, uninitialised-value errors and
# definitely-lost blocks, in total and attributable to the extension (an
# error whose stack mentions _core_c).
#
#   bash scripts/valgrind.sh            # about 15 minutes on a 2-core box
#   QUICK=1 bash scripts/valgrind.sh    # the edge tests and the registry workload (a few minutes)
#
# Builds nothing: it uses the interpreter in $PYTHON, with livekit_events
# (compiled core) and the `test` dependency group installed.  nox's `valgrind`
# session (noxfile.py) makes that venv and runs this script with it:
#   .venv-nox/bin/nox -s valgrind        (QUICK=1 works there too)
# Logs go to $VALGRIND_OUT (default build/valgrind/).  Exit status 1 if there is any invalid
# read, write or free, or any error or definitely-lost block attributable to
# _core_c.  Needs valgrind (3.19 tested).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    echo "valgrind.sh: set PYTHON to an interpreter with the compiled core installed," \
         "or run: nox -s valgrind" >&2
    exit 2
fi
OUT="${VALGRIND_OUT:-build/valgrind}"
SUPP="scripts/valgrind-python.supp"
mkdir -p "$OUT"
rm -f "$OUT"/*.log

# -I: not from the checkout root, whose uncompiled package `-c` would import
# first (the cwd leads sys.path) instead of the installed one.
"$PYTHON" -I -c "import livekit_events._core_c" || {
    echo "valgrind.sh: the compiled core is not importable with $PYTHON; build it first" >&2
    exit 2
}

export PYTHONMALLOC=malloc
export LIVEKIT_EVENTS_HAMMER_SECONDS="${LIVEKIT_EVENTS_HAMMER_SECONDS:-3}"
export HYPOTHESIS_PROFILE=tiny  # tests/test_differential.py: a few dozen runs

VALGRIND=(
    valgrind --tool=memcheck
    --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite
    --num-callers=40 --suppressions="$SUPP"
)

run() {  # run NAME COMMAND...
    local name="$1"
    shift
    echo "== valgrind: $name: $*"
    # The exit status is the tests' own; errors are read from the log.
    "${VALGRIND[@]}" --log-file="$OUT/$name.log" "$@" >"$OUT/$name.out" 2>&1 || {
        echo "   (exit status $?; see $OUT/$name.out)"
        echo "$name" >>"$OUT/failed-runs"
    }
    tail -n 3 "$OUT/$name.out" | sed 's/^/   /'
}

rm -f "$OUT/failed-runs"
# The pytest script (not `python -m pytest`, which would put the source tree first
# on sys.path), run by $PYTHON so that valgrind traces the interpreter itself.
PYTEST=("$PYTHON" "$(dirname "$PYTHON")/pytest" -q -p no:cacheprovider -k "compiled or not pure")
run edges "${PYTEST[@]}" tests/test_edges.py
# The registry's own paths (index, compaction, once claims, removal during
# emit, wrappers, copy/pickle, re-entrant __eq__, GC finalizers, threads).
run registry "$PYTHON" scripts/valgrind_registry_workload.py --scale 300
if [ -z "${QUICK:-}" ]; then
    # The re-entrancy scenarios run in subprocesses under pytest (which
    # valgrind doesn't follow): run them here directly, with fewer rounds.
    for scenario in "finalizers 300" "unsubscribe_in_del 3000" "eq_and_hash 40" \
                    "lock_in_finalizer 300"; do
        set -- $scenario
        run "reentrancy-$1" "$PYTHON" tests/reentrancy_scenarios.py _core_c "$1" "$2"
    done
    core_tests=()
    for t in tests/test_emission.py tests/test_registration.py tests/test_removal.py \
             tests/test_surface.py tests/test_memory_threads.py tests/test_registry.py \
             tests/test_weak.py tests/test_subclassing.py tests/test_observability.py; do
        [ -f "$t" ] && core_tests+=("$t")
    done
    if [ "${#core_tests[@]}" -gt 0 ]; then
        run core-tests "${PYTEST[@]}" "${core_tests[@]}"
    fi
    run differential "${PYTEST[@]}" tests/test_differential.py
    run threads "${PYTEST[@]}" tests/test_threads.py
    run soak "$PYTHON" scripts/soak.py --impl compiled --emits 20000 --churn 2000 --no-tracemalloc \
        --max-rss-growth 67108864
fi

unset PYTHONMALLOC
exec "$PYTHON" - "$OUT" <<'EOF'
"""Summarise the memcheck logs."""
import collections
import pathlib
import re
import sys

out = pathlib.Path(sys.argv[1])
KINDS = [
    ("invalid read", re.compile(r"Invalid read of size")),
    ("invalid write", re.compile(r"Invalid write of size")),
    ("invalid free", re.compile(r"Invalid free|Mismatched free|free\(\) / delete")),
    ("uninitialised", re.compile(r"uninitialised|Syscall param")),
    ("overlap", re.compile(r"Source and destination overlap")),
    ("definitely lost", re.compile(r"are definitely lost in loss record")),
]
totals = collections.Counter()
ours = collections.Counter()
passing = collections.Counter()
examples = {}
for log in sorted(out.glob("*.log")):
    blocks, block = [], []
    for line in log.read_text(errors="replace").splitlines():
        text = re.sub(r"^==\d+== ?", "", line)
        if not text.strip():
            if block:
                blocks.append(block)
            block = []
        else:
            block.append(text)
    if block:
        blocks.append(block)
    for block in blocks:
        for kind, pattern in KINDS:
            if pattern.search(block[0]):
                totals[kind] += 1
                frames = [l for l in block[1:] if re.match(r"\s*(at|by) 0x", l)]
                if kind == "definitely lost":
                    # Allocated by the extension, or by a C API call it made:
                    # a _core_c frame comes before (inside) any Python frame
                    # evaluation.  (Objects that a handler's Python code
                    # allocates are the interpreter's business.)
                    core = [i for i, l in enumerate(frames) if "_core_c" in l]
                    evals = [i for i, l in enumerate(frames) if "_PyEval_" in l]
                    mine = bool(core) and (not evals or core[0] < evals[0])
                    if not mine and core:
                        passing[kind] += 1
                else:
                    # Committed by the extension: the innermost machine frame
                    # (with the frames inlined into it) is in _core_c.  Errors
                    # that merely pass through it (a handler calling gc.collect
                    # on a value CPython left uninitialised) are counted apart.
                    top = frames[0].split(":")[0].split()[-1] if frames else None
                    mine = any("_core_c" in l for l in frames if top and top in l)
                    if not mine and any("_core_c" in l for l in frames):
                        passing[kind] += 1
                if mine:
                    ours[kind] += 1
                    examples.setdefault(kind, (log.name, block))
                break
    summary = [l.strip() for b in blocks for l in b
               if l.strip().startswith(("ERROR SUMMARY", "definitely lost:"))]
    print(f"{log.name}: " + "; ".join(summary))

print()
print(f"{'kind':18s} {'all':>6s} {'in _core_c':>11s} {'through _core_c':>16s}")
for kind, _ in KINDS:
    print(f"{kind:18s} {totals[kind]:6d} {ours[kind]:11d} {passing[kind]:16d}")
for kind, (name, block) in examples.items():
    print(f"\nfirst {kind} attributable to _core_c ({name}):")
    print("\n".join("    " + line for line in block[:25]))
failed_runs = out / "failed-runs"
if failed_runs.exists():
    print("\nruns whose tests failed under valgrind:", ", ".join(failed_runs.read_text().split()))
bad = (
    totals["invalid read"] + totals["invalid write"] + totals["invalid free"]
    + sum(ours.values())
)
print("\nRESULT:", "FAIL" if bad or failed_runs.exists() else "clean",
      "(invalid reads/writes/frees anywhere, or any error or definitely-lost block in _core_c)")
sys.exit(1 if bad or failed_runs.exists() else 0)
EOF
