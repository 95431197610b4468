"""Side-by-side comparison of every implementation, in one process.

    python benchmarks/compare.py [--quick] [--rounds N] [--batch-ms MS]
                                 [--only NAME[,NAME...]] [--max-handlers N]
                                 [--output DIR] [--no-plot]

(``scripts/bench.sh`` does the set-up and runs this.)  Run it as a script,
not with ``python -m``: the source tree must not shadow the installed
package, whose compiled core is what gets timed.

For each scenario (scenarios.py) every available implementation and the floor
are timed in the same process, interleaved: each round runs one batch of each
(about a millisecond, shorter than a scheduler time slice) in a shuffled
order.  Reported: each implementation's best round (ns per emit), and ratios
(to the floor, to livekit's class, to the pure twin) between best rounds.
Other processes only ever add time, so on a shared machine the best of many
short interleaved batches is the estimate they disturb least (timeit's
advice); results.json keeps the medians, the medians of per-round ratios
and, with --raw, every round.

Prints a Markdown table and the targets (met or missed), and writes
``results.md``, ``results.json``, ``fanout.png`` (ns per emit against fan-out,
log scales) and ``scaling.png`` (ns per ``on``/``off`` against the number of
handlers registered, log scales) to a new directory,
``build/bench-results/<UTC time>/`` (or ``--output``).  The committed
``benchmarks/results/`` is updated from a full run only when asked
(``bash scripts/bench.sh --update-results``); a partial run (``--quick``,
``--only``, ``--max-handlers``) is refused there.

The registration-scaling scenarios (``scenarios_scaling.py``, ``scale-*``)
build emitters with up to 100,000 handlers; ``--max-handlers N`` leaves out
the sizes above N (a quick run stops at 1,000 unless told otherwise).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
#: The results the docs show, updated from a full run only when asked.
COMMITTED_RESULTS = os.path.join(HERE, "results")
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import build_floor  # noqa: E402
import harness  # noqa: E402
import implementations  # noqa: E402
import scenarios  # noqa: E402

FLOOR = "floor"
#: A quick run's largest registration-scaling size (unless --max-handlers).
QUICK_MAX_HANDLERS = 1000
#: Rounds an implementation always gets, whatever a scenario's time budget.
MIN_ROUNDS = 5
ORDER = ["floor", "compiled", "pure", "livekit", "psygnal", "pyee", "blinker"]
LABELS = {
    "floor": "floor",
    "compiled": "compiled",
    "pure": "pure twin",
    "livekit": "livekit",
    "psygnal": "psygnal",
    "pyee": "pyee",
    "blinker": "blinker",
}


# -- measuring -----------------------------------------------------------------------


def _ratio(rounds: Dict[str, List[float]], top: str, bottom: str) -> Optional[float]:
    """``top``'s time over ``bottom``'s, each its best round (as timeit advises:
    other processes only ever add time, so the minimum is the estimate least
    disturbed by them; the rounds are interleaved, so each minimum comes from
    the same stretch of the run)."""
    if top not in rounds or bottom not in rounds:
        return None
    return min(rounds[top]) / min(rounds[bottom])


def _median_round_ratio(rounds: Dict[str, List[float]], top: str, bottom: str) -> Optional[float]:
    """The median of per-round ratios (in the JSON, as a cross-check)."""
    if top not in rounds or bottom not in rounds:
        return None
    return statistics.median(t / b for t, b in zip(rounds[top], rounds[bottom]))


def measure_time(
    scenario: scenarios.Scenario,
    adapters: List[implementations.Adapter],
    floor: Any,
    *,
    rounds: int,
    batch_ns: float,
    rng: random.Random,
) -> Dict[str, Any]:
    cases: Dict[str, scenarios.Case] = {}
    skipped: Dict[str, str] = {}
    if scenario.build_floor is not None:
        cases[FLOOR] = scenario.build_floor(floor)
    for adapter in adapters:
        try:
            assert scenario.build is not None
            cases[adapter.key] = scenario.build(adapter)
        except scenarios.Skip as skip:
            skipped[adapter.key] = str(skip)
    try:
        for key, case in cases.items():
            harness.precheck(case, f"{scenario.name}/{key}")
        runners = {key: harness.Runner(case) for key, case in cases.items()}
        with harness.gc_paused():
            sizes = {key: runner.calibrate(batch_ns) for key, runner in runners.items()}
            for key, runner in runners.items():  # warm up (specialisation, caches)
                runner.ns_per_unit(sizes[key])
            samples: Dict[str, List[float]] = {key: [] for key in runners}
            spent = {key: 0.0 for key in runners}
            budget = scenario.max_seconds
            keys = list(runners)
            for i in range(rounds):
                rng.shuffle(keys)
                for key in keys:
                    if budget is not None and i >= MIN_ROUNDS and spent[key] > budget:
                        continue  # this implementation has had its share
                    t0 = time.perf_counter()
                    samples[key].append(runners[key].ns_per_unit(sizes[key]))
                    spent[key] += time.perf_counter() - t0
    finally:
        for case in cases.values():
            if case.cleanup is not None:
                case.cleanup()
    result: Dict[str, Any] = {"kind": "time", "unit": scenario.unit, "skipped": skipped, "impl": {}}
    for key, values in samples.items():
        entry: Dict[str, Any] = {
            "ns": min(values),
            "median_ns": statistics.median(values),
            "iterations_per_batch": sizes[key],
            "rounds": len(values),
            "rounds_ns": [round(v, 2) for v in values],
            **cases[key].info,
        }
        if key != FLOOR:
            entry["x_floor"] = _ratio(samples, key, FLOOR)
            entry["x_floor_median_of_rounds"] = _median_round_ratio(samples, key, FLOOR)
        result["impl"][key] = entry
    pairs = {
        "compiled_vs_livekit": ("livekit", "compiled"),
        "compiled_vs_pure": ("pure", "compiled"),
        "pure_vs_livekit": ("livekit", "pure"),
        "compiled_per_livekit": ("compiled", "livekit"),
        **{f"{o}_vs_compiled": (o, "compiled") for o in ("psygnal", "pyee", "blinker")},
    }
    for name, (top, bottom) in pairs.items():
        result[name] = _ratio(samples, top, bottom)
        result[name + "_median_of_rounds"] = _median_round_ratio(samples, top, bottom)
    return result


def measure_memory(
    scenario: scenarios.Scenario, adapters: List[implementations.Adapter]
) -> Dict[str, Any]:
    result: Dict[str, Any] = {"kind": "memory", "unit": "bytes", "skipped": {}, "impl": {}}
    assert scenario.measure is not None
    for adapter in adapters:
        try:
            # tracemalloc is deterministic up to allocator noise: take the median of 3.
            values = sorted(scenario.measure(adapter) for _ in range(3))
            result["impl"][adapter.key] = {"bytes": values[1]}
        except scenarios.Skip as skip:
            result["skipped"][adapter.key] = str(skip)
    return result


# -- reporting -----------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.1f} µs"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns" if ns >= 100 else f"{ns:.1f} ns"


def fmt_x(x: Optional[float], digits: int = 2) -> str:
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:.0f}×"
    if x >= 10:
        return f"{x:.1f}×"
    if x < 0.01:
        return f"{x:.2g}×"  # not 0.00×: a core thousands of times slower than livekit's
    return f"{x:.{digits}f}×"


def table(results: Dict[str, Dict[str, Any]], present: List[str]) -> str:
    columns = [k for k in ORDER if k in present]
    head = (
        ["scenario", "unit"]
        + [LABELS[k] for k in columns]
        + ["compiled vs livekit", "compiled vs pure", "pure vs livekit"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in results.items():
        scenario = scenarios.SCENARIOS[name]
        cells = [f"`{name}`", res["unit"]]
        for key in columns:
            entry = res["impl"].get(key)
            if entry is None:
                cells.append("skip" if key in res["skipped"] else "–")
            elif res["kind"] == "memory":
                cells.append(f"{entry['bytes']:.0f} B")
            else:
                text = fmt_ns(entry["ns"])
                if entry.get("x_floor") is not None:
                    text += f" ({fmt_x(entry['x_floor'])})"
                cells.append(text)
        if res["kind"] == "memory":
            impl = res["impl"]
            ratio = (
                impl["livekit"]["bytes"] / impl["compiled"]["bytes"]
                if "livekit" in impl and "compiled" in impl and impl["compiled"]["bytes"]
                else None
            )
            pure = (
                impl["pure"]["bytes"] / impl["compiled"]["bytes"]
                if "pure" in impl and "compiled" in impl and impl["compiled"]["bytes"]
                else None
            )
            cells += [
                fmt_x(ratio) + " smaller" if ratio else "–",
                fmt_x(pure) if pure else "–",
                "–",
            ]
        else:
            cells += [
                fmt_x(res.get("compiled_vs_livekit")),
                fmt_x(res.get("compiled_vs_pure")),
                fmt_x(res.get("pure_vs_livekit")),
            ]
        lines.append("| " + " | ".join(cells) + " |")
        del scenario
    return "\n".join(lines)


def targets(results: Dict[str, Dict[str, Any]]) -> List[Tuple[str, str, Optional[bool]]]:
    """(target, measured, met) for the emit and registration targets, from this run's results."""
    out: List[Tuple[str, str, Optional[bool]]] = []

    def x_floor(name: str, key: str = "compiled") -> Optional[float]:
        entry = results.get(name, {}).get("impl", {}).get(key)
        return entry.get("x_floor") if entry else None

    for name, limit in (("fanout-100", 1.05), ("fanout-1", 1.35)):
        x = x_floor(name)
        out.append(
            (
                f"compiled emit ≤ {limit:.2f}× the floor at {name}",
                fmt_x(x, 3),
                None if x is None else x <= limit,
            )
        )
    for key, limit in (("compiled_vs_livekit", 200), ("pure_vs_livekit", 40)):
        who = "compiled" if key.startswith("compiled") else "pure twin"
        x = results.get("trim-10", {}).get(key)
        out.append(
            (
                f"{who} ≥ {limit}× faster than livekit's class at trim-10 (3 args emitted, handlers take none)",
                fmt_x(x),
                None if x is None else x >= limit,
            )
        )
    for other in ("psygnal", "pyee", "blinker"):
        worst = None
        missing = []
        for n in scenarios.FANOUTS:
            x = results.get(f"fanout-{n}", {}).get(f"{other}_vs_compiled")
            if x is None:
                missing.append(n)
                continue
            worst = x if worst is None else min(worst, x)
        measured = (f"slowest margin {fmt_x(worst)}" if worst is not None else "not measured") + (
            f" (fan-out {missing} not measured)" if missing and worst is not None else ""
        )
        out.append(
            (
                f"compiled faster than {other} at every fan-out",
                measured,
                None if worst is None else worst > 1.0,
            )
        )
    for name in ("register-function", "register-method"):
        x = results.get(name, {}).get("compiled_per_livekit")
        out.append(
            (
                f"{name}: on+off no slower than livekit's class (compiled/livekit ≤ 1)",
                fmt_x(x),
                None if x is None else x <= 1.0,
            )
        )
    for name in ("memory-empty", "memory-5x2"):
        impl = results.get(name, {}).get("impl", {})
        if "compiled" in impl and "livekit" in impl:
            c, lk = impl["compiled"]["bytes"], impl["livekit"]["bytes"]
            out.append(
                (
                    f"{name}: memory per emitter no larger than livekit's",
                    f"{c:.0f} B vs {lk:.0f} B",
                    c <= lk,
                )
            )
        else:
            out.append(
                (f"{name}: memory per emitter no larger than livekit's", "not measured", None)
            )
    out += scaling_targets(results)
    return out


# -- registration scaling ------------------------------------------------------------

#: Per-operation cost at SCALING_TOP handlers at most SCALING_LIMIT times that
#: at SCALING_BASE; compiled at most SCALING_LIMIT times livekit's at every size.
SCALING_LIMIT = 2.0
SCALING_BASE = 100
SCALING_TOP = 100_000


def _scaling_module() -> Any:
    # Imported once load_extra_scenarios() has, so that the scenario order is
    # the registry's (extra modules in file-name order).
    import scenarios_scaling

    return scenarios_scaling


def scaling_results(results: Dict[str, Dict[str, Any]]) -> Dict[Tuple[str, int], Dict[str, Any]]:
    """``(mode, handlers) -> result`` of the registration-scaling scenarios measured."""
    out = {}
    for res in results.values():
        params = res.get("params", {})
        if res.get("kind") == "time" and "handlers" in params and "mode" in params:
            out[(params["mode"], params["handlers"])] = res
    return out


def _ns(res: Optional[Dict[str, Any]], key: str) -> Optional[float]:
    entry = (res or {}).get("impl", {}).get(key)
    return entry["ns"] if entry else None


def scaling_targets(results: Dict[str, Dict[str, Any]]) -> List[Tuple[str, str, Optional[bool]]]:
    """(target, measured, met) for the registration-scaling targets."""
    sc = _scaling_module()
    data = scaling_results(results)
    top, base = sc.size_label(SCALING_TOP), sc.size_label(SCALING_BASE)
    sizes = sorted({n for _, n in data})
    largest = f" (largest size measured: {sc.size_label(sizes[-1])})" if sizes else ""
    rows: List[Tuple[str, str, Optional[bool]]] = []
    for key, who in (("compiled", "compiled"), ("pure", "pure twin")):
        parts, missing, met = [], [], True
        for mode in sc.MODES:
            at_top, at_base = (
                _ns(data.get((mode, SCALING_TOP)), key),
                _ns(data.get((mode, SCALING_BASE)), key),
            )
            if at_top is None or at_base is None:
                missing.append(mode)
                continue
            x = at_top / at_base
            parts.append(f"{mode} {fmt_x(x)}")
            met = met and x <= SCALING_LIMIT
        measured = ", ".join(parts) if parts else "not measured" + largest
        if parts and missing:
            measured += f" ({', '.join(missing)} not measured)"
        rows.append(
            (
                f"{who}: each registration operation's cost at {top} handlers ≤ "
                f"{SCALING_LIMIT:g}× its cost at {base} (on, off oldest, off newest, rotation)",
                measured,
                met if parts else None,
            )
        )
    worst, where, measured_sizes = None, "", set()
    for (mode, n), res in data.items():
        x = res.get("compiled_per_livekit")
        if x is None:
            continue
        measured_sizes.add(n)
        if worst is None or x > worst:
            worst, where = x, f"{mode} at {sc.size_label(n)}"
    missing_sizes = [sc.size_label(n) for n in sc.SIZES if n not in measured_sizes]
    if worst is None:
        measured = "not measured"
    else:
        measured = f"slowest {fmt_x(worst)} livekit's ({where})" + (
            f" (sizes {', '.join(missing_sizes)} not measured)" if missing_sizes else ""
        )
    rows.append(
        (
            f"compiled registration operations ≤ {SCALING_LIMIT:g}× livekit's class at every "
            f"size ({', '.join(sc.size_label(n) for n in sc.SIZES)} handlers)",
            measured,
            None if worst is None else worst <= SCALING_LIMIT,
        )
    )
    return rows


def scaling_information(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """Figures reported without a target: the pure twin against livekit's class."""
    sc = _scaling_module()
    data = scaling_results(results)
    ratios = []
    for (mode, n), res in sorted(data.items(), key=lambda item: item[0][1]):
        pure, livekit = _ns(res, "pure"), _ns(res, "livekit")
        if pure is not None and livekit is not None:
            ratios.append((pure / livekit, f"{mode} at {sc.size_label(n)}"))
    if not ratios:
        return []
    worst, best = max(ratios), min(ratios)
    return [
        f"pure twin's registration operations against livekit's class (no target): from "
        f"{fmt_x(best[0])} livekit's time ({best[1]}) to {fmt_x(worst[0])} ({worst[1]})"
    ]


def scaling_table(results: Dict[str, Dict[str, Any]]) -> str:
    """Per size: ns per on and per off (oldest), and the set-up time, for compiled,
    pure twin and livekit."""
    data = scaling_results(results)
    sizes = sorted({n for _, n in data})
    if not sizes:
        return ""
    keys = ["compiled", "pure", "livekit"]
    head = ["handlers"]
    for key in keys:
        head += [f"{LABELS[key]} on", f"{LABELS[key]} off"]
    head += ["set-up: " + " / ".join(LABELS[k] for k in keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sizes:
        cells = [f"{n:,}"]
        for key in keys:
            for mode in ("on", "off"):
                ns = _ns(data.get((mode, n)), key)
                cells.append(fmt_ns(ns) if ns is not None else "–")
        setups = []
        for key in keys:
            setup = next(
                (
                    res["impl"][key]["setup_s"]
                    for (mode, size), res in data.items()
                    if size == n and "setup_s" in res["impl"].get(key, {})
                ),
                None,
            )
            setups.append("–" if setup is None else _fmt_seconds(setup))
        cells.append(" / ".join(setups))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.1f} s"
    return f"{seconds * 1e3:.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} µs"


def plot_scaling(
    results: Dict[str, Dict[str, Any]], path: str, machine: Dict[str, Any]
) -> Optional[str]:
    """ns per operation against handlers, log-log: on (left), off (right; oldest
    solid, newest dotted), one colour per implementation."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib not installed ({exc}): no scaling plot"
    data = scaling_results(results)
    sizes = sorted({n for _, n in data})
    if len(sizes) < 2:
        return "fewer than two registration-scaling sizes measured: no scaling plot"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.5), sharey=True)
    colours = {key: f"C{i}" for i, key in enumerate(k for k in ORDER if k != FLOOR)}
    colours[FLOOR] = "black"
    panels = (
        (left, (("on", "-"),), "on: register a new handler"),
        (
            right,
            (("off", "-"), ("off-newest", ":")),
            "off: remove the oldest (solid) or the newest (dotted)",
        ),
    )
    for ax, modes, title in panels:
        for key in ORDER:
            for mode, linestyle in modes:
                xs, ys = [], []
                for n in sizes:
                    ns = _ns(data.get((mode, n)), key)
                    if ns is not None:
                        xs.append(n)
                        ys.append(ns)
                if not xs:
                    continue
                label = LABELS[key] if linestyle == "-" else None
                ax.plot(
                    xs,
                    ys,
                    color=colours[key],
                    linestyle="--" if key == FLOOR else linestyle,
                    marker="s" if key == FLOOR else "o",
                    markersize=4,
                    label=label,
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("handlers registered on the event")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    left.set_ylabel("ns per operation (best of interleaved rounds)")
    left.legend(fontsize=8)
    fig.suptitle(
        f"registration scaling: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['implementation']} {machine['python']} ({machine['date']})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def scaling_report(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """The registration-scaling section of results.md (empty if none measured)."""
    text = scaling_table(results)
    if not text:
        return []
    sc = _scaling_module()
    several = [
        f"{sc.size_label(n)} handlers on {sc.layout(n)[0]} emitters"
        for n in sorted({n for _, n in scaling_results(results)})
        if sc.layout(n)[0] > 1
    ]
    return [
        "Registration scaling (`scale-*`): ns per operation with that many "
        "handlers on one event, best round; `off` removes the oldest handler (the table "
        "above also has `off-newest` and `rotate`); set-up: registering the handlers with "
        "`on`, once per implementation and size"
        + (f" ({', '.join(several)})" if several else "")
        + ".",
        "",
        text,
        "",
    ]


def detection_information(results: Dict[str, Dict[str, Any]]) -> List[str]:
    """What slow-handler detection adds per handler call (aim: ≤ 60 ns),
    from slow-detect-10 against fanout-10 in the same run."""
    lines = []
    for key, label in (("compiled", "compiled"), ("pure", "pure twin")):
        on = results.get("slow-detect-10", {}).get("impl", {}).get(key)
        off = results.get("fanout-10", {}).get("impl", {}).get(key)
        if on and off:
            added = (on["ns"] - off["ns"]) / 10
            lines.append(
                f"slow-handler detection on adds {fmt_ns(added)} per handler call ({label}: "
                f"slow-detect-10 {fmt_ns(on['ns'])} against fanout-10 {fmt_ns(off['ns'])} per emit)"
            )
    return lines


def targets_markdown(rows: List[Tuple[str, str, Optional[bool]]]) -> str:
    mark = {True: "met", False: "**missed**", None: "not measured"}
    lines = ["| target | measured | |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {mark[ok]} |" for t, m, ok in rows]
    return "\n".join(lines)


def plot(results: Dict[str, Dict[str, Any]], path: str, machine: Dict[str, Any]) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"matplotlib not installed ({exc}): no plot"
    fanouts = [n for n in scenarios.FANOUTS if n > 0 and f"fanout-{n}" in results]
    if len(fanouts) < 2:
        return "fewer than two fan-outs measured: no plot"
    fig, ax = plt.subplots(figsize=(8, 5.5))
    styles = {"floor": dict(color="black", linestyle="--", marker="s", zorder=3)}
    for key in ORDER:
        xs, ys = [], []
        for n in fanouts:
            entry = results[f"fanout-{n}"]["impl"].get(key)
            if entry is not None:
                xs.append(n)
                ys.append(entry["ns"])
        if xs:
            style = {"marker": "o", **styles.get(key, {})}
            ax.plot(xs, ys, label=LABELS[key], **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("handlers (fan-out)")
    ax.set_ylabel("ns per emit (best of interleaved rounds)")
    ax.set_title(
        f"emit, 1 argument: {machine['cpu']}, {machine['cores']} cores,\n"
        f"{machine['implementation']} {machine['python']} ({machine['date']})",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# -- main ------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few short rounds")
    parser.add_argument(
        "--rounds", type=int, help="interleaved rounds per scenario (default 101, quick 7)"
    )
    parser.add_argument(
        "--batch-ms", type=float, help="length of one timed batch (default 1, quick 0.5)"
    )
    parser.add_argument("--only", help="comma-separated scenario names or globs")
    parser.add_argument(
        "--output",
        help="results directory (default: a new build/bench-results/<UTC time>/)",
    )
    parser.add_argument(
        "--max-handlers",
        type=int,
        help="registration scaling: leave out the sizes above N handlers "
        f"(default: none, quick {QUICK_MAX_HANDLERS})",
    )
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="seed of the round order shuffle")
    parser.add_argument(
        "--raw", action="store_true", help="keep every round's time in results.json"
    )
    args = parser.parse_args(argv)
    partial = bool(args.quick or args.only or args.max_handlers is not None)
    if args.output is None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        args.output = os.path.join(os.path.dirname(HERE), "build", "bench-results", stamp)
    elif partial and os.path.realpath(args.output) == os.path.realpath(COMMITTED_RESULTS):
        raise SystemExit(f"a partial run never replaces the committed results in {COMMITTED_RESULTS}")
    rounds = args.rounds or (7 if args.quick else 101)
    batch_ns = (args.batch_ms or (0.5 if args.quick else 1.0)) * 1e6

    started = time.perf_counter()
    machine = harness.machine_info()
    floor = build_floor.ensure_floor()
    adapters = implementations.ADAPTERS()
    import livekit_events

    for key in ("compiled", "pure"):
        if not implementations.adapter(key).available:
            raise SystemExit(f"{key}: {implementations.adapter(key).note}")
    extra = scenarios.load_extra_scenarios()

    print(f"# livekit_events benchmark ({'quick' if args.quick else 'full'} run)\n")
    print(f"Machine: {harness.describe_machine(machine)}")
    print(
        f"livekit_events {livekit_events.__version__}, implementation {livekit_events.IMPLEMENTATION}, from {os.path.dirname(livekit_events.__file__)}"
    )
    for a in adapters:
        print(f"  {a.key:9} {a.version if a.available else a.note}")
    if extra:
        print(f"Extra scenario modules: {', '.join(extra)}")
    print(f"{rounds} interleaved rounds per scenario, batches of ~{batch_ns / 1e6:g} ms\n")
    sys.stdout.flush()

    selected = list(scenarios.SCENARIOS)
    if args.only:
        patterns = args.only.split(",")
        selected = [n for n in selected if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if args.quick:
        selected = [n for n in selected if not scenarios.SCENARIOS[n].full_only]
    max_handlers = args.max_handlers
    cap_note = ""
    if max_handlers is None and args.quick:
        max_handlers = QUICK_MAX_HANDLERS
    if max_handlers is not None:
        dropped = [
            n for n in selected if scenarios.SCENARIOS[n].params.get("handlers", 0) > max_handlers
        ]
        selected = [n for n in selected if n not in dropped]
        if dropped:
            cap_note = (
                f"Registration scaling: sizes above {max_handlers:,} handlers left out "
                f"({'quick run' if args.max_handlers is None else '--max-handlers'}): "
                f"{', '.join(dropped)}."
            )
            print(cap_note + "\n")
    rng = random.Random(args.seed)
    available = [a for a in adapters if a.available]
    results: Dict[str, Dict[str, Any]] = {}
    setups_shown: Set[Tuple[str, int]] = set()
    for name in selected:
        scenario = scenarios.SCENARIOS[name]
        t0 = time.perf_counter()
        if scenario.kind == "memory":
            results[name] = measure_memory(scenario, available)
        else:
            scenario_rounds = rounds
            if scenario.rounds is not None and args.rounds is None:
                scenario_rounds = min(rounds, scenario.rounds)
            results[name] = measure_time(
                scenario, available, floor, rounds=scenario_rounds, batch_ns=batch_ns, rng=rng
            )
        for a in adapters:
            if not a.available:
                results[name]["skipped"][a.key] = a.note
        results[name]["title"] = scenario.title
        results[name]["params"] = scenario.params
        compiled = results[name]["impl"].get("compiled", {})
        summary = (
            f"{compiled['bytes']:.0f} B"
            if "bytes" in compiled
            else f"{fmt_ns(compiled['ns'])} ({fmt_x(compiled.get('x_floor'))} floor)"
            if compiled
            else "–"
        )
        slow_setups = [  # each size's emitters are built once, by its first scenario
            f"{LABELS.get(key, key)} {_fmt_seconds(entry['setup_s'])}"
            for key, entry in results[name]["impl"].items()
            if entry.get("setup_s", 0) >= 0.5 and (key, entry["handlers"]) not in setups_shown
        ]
        setups_shown.update(
            (key, entry["handlers"])
            for key, entry in results[name]["impl"].items()
            if "setup_s" in entry
        )
        print(
            f"  {name:20} compiled {summary:28} [{time.perf_counter() - t0:.1f} s]"
            + (f" (set-up: {', '.join(slow_setups)})" if slow_setups else ""),
            file=sys.stderr,
        )
    if not args.raw:
        for res in results.values():
            for entry in res["impl"].values():
                entry.pop("rounds_ns", None)
    try:
        machine["loadavg_end"] = os.getloadavg()
    except OSError:
        pass

    present = sorted({k for r in results.values() for k in r["impl"]} | {FLOOR}, key=ORDER.index)
    rows = targets(results)
    information = scaling_information(results) + detection_information(results)
    notes = sorted(
        {f"{LABELS.get(k, k)}: {why}" for r in results.values() for k, why in r["skipped"].items()}
    )
    command = (
        "python benchmarks/compare.py"
        + (" --quick" if args.quick else "")
        + (f" --max-handlers {args.max_handlers}" if args.max_handlers is not None else "")
    )
    scaling_rounds = sorted(
        {
            entry["rounds"]
            for res in scaling_results(results).values()
            for entry in res["impl"].values()
        }
    )
    scaling_note = (
        f"; registration scaling: {scaling_rounds[0]}"
        + (f"–{scaling_rounds[-1]}" if len(scaling_rounds) > 1 else "")
        + " rounds (fewer for an implementation once its rounds of a scenario passed "
        "its time budget)"
        if scaling_rounds
        else ""
    )
    report = "\n".join(
        [
            f"Machine: {harness.describe_machine(machine)}.  ",
            f"Run: `{command}`, {machine['date']}, {rounds} interleaved rounds per scenario "
            f"(batches of ~{batch_ns / 1e6:g} ms){scaling_note}; each figure is the best round.",
            *([cap_note] if cap_note else []),
            "",
            "Cells: time per emit (or per unit), and in parentheses the ratio to the floor "
            "(the same handlers called from a bare compiled loop).  "
            "Ratios and speed-ups are taken between best rounds "
            "(results.json also has medians, and medians of per-round ratios).",
            "",
            table(results, present),
            "",
            *scaling_report(results),
            "Targets:",
            "",
            targets_markdown(rows),
            "",
            *[f"For information: {line}.  " for line in information],
            *([""] if information else []),
            "Skipped:",
            "",
            *[f"- {n}" for n in notes],
        ]
    )
    print(report)
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write(report + "\n")
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(
            {
                "machine": machine,
                "command": command,
                "partial": partial,
                "rounds": rounds,
                "batch_ms": batch_ns / 1e6,
                "versions": {a.key: (a.version if a.available else None) for a in adapters},
                "results": results,
                "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in rows],
                "information": information,
            },
            f,
            indent=1,
            ensure_ascii=False,
        )
    plots = []
    if not args.no_plot:
        for filename, draw in (("fanout.png", plot), ("scaling.png", plot_scaling)):
            problem = draw(results, os.path.join(args.output, filename), machine)
            if problem:
                print(problem, file=sys.stderr)
            else:
                plots.append(filename)
    print(
        f"\nwrote {args.output}/results.md, results.json"
        + "".join(f", {name}" for name in plots)
        + f" in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
