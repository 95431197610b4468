"""``python -m livekit_events``: run a program with ``install()`` active in it
and in every Python process it starts, without changing its code.

    python -m livekit_events path/to/agent.py [args...]
    python -m livekit_events -m package.module [args...]
    python -m livekit_events --check

The first two run the program exactly as ``python path/to/agent.py ...`` or
``python -m package.module ...`` would (same interpreter, same interpreter
options, same ``sys.argv``, ``sys.path`` and ``__main__``; on POSIX the
launcher process *becomes* the program, with ``os.execve``), with one change:
the directory of livekit_events' startup hook (``_autoinstall/``) is put
first on ``PYTHONPATH``, the rest of the variable kept as it is.  Its
``sitecustomize`` runs at the start of the program and of every Python
process started from it (multiprocessing ``spawn`` and ``forkserver``
children, as livekit-agents' job processes are, and subprocesses), takes its
directory off ``sys.path`` again, and calls ``livekit_events.install()`` as
soon as ``livekit.rtc`` is imported there.  ``fork`` children inherit the
installed methods from their parent.  Other interpreters that inherit the
variable (Python 2, another virtual environment) only run their own
``sitecustomize``.

``--check`` starts a Python process the same way, imports ``livekit.rtc`` (and
``livekit.agents`` if it is installed) there, and prints the
``InstallReport``: which livekit, which core, which classes dispatch through
it.  Exit status 0 when it is installed, 1 when not (livekit missing
included: then it says what to install).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Dict, List, Mapping, Optional, Sequence

USAGE = """\
usage: python -m livekit_events SCRIPT [ARGS...]
       python -m livekit_events -m MODULE [ARGS...]
       python -m livekit_events --check

Runs SCRIPT (or MODULE) as python would, with livekit_events.install() called
in it and in every Python process it starts, as soon as livekit.rtc is imported
there.  --check prints what install() does in such a process.
"""

_CHECK = """\
import importlib.util, sys
try:
    import livekit.rtc  # the startup hook installs here
except ImportError as exc:
    print(
        f"livekit_events: livekit is not installed in this environment ({exc}); "
        "install it next to livekit_events: pip install livekit (or livekit-agents)",
        file=sys.stderr,
    )
    sys.exit(1)
if importlib.util.find_spec("livekit.agents") is not None:
    import livekit.agents
import livekit_events
report = livekit_events.install_report()
if report is None:
    print("livekit_events: NOT installed in this process (see the warning above)", file=sys.stderr)
    sys.exit(1)
print(report)
"""


def hook_directory() -> str:
    """The directory the launcher puts first on ``PYTHONPATH``."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_autoinstall")


def launch_environment(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """``environ`` (default ``os.environ``) with the hook directory put first
    on ``PYTHONPATH``.  The rest of the variable is kept as it is, empty
    entries (the working directory, to Python) included; if the hook directory
    is first already (a launched program launching another), nothing changes."""
    env = dict(os.environ if environ is None else environ)
    hook = hook_directory()
    current = env.get("PYTHONPATH", "")
    if not current:  # unset or empty: no entries, to Python 3
        env["PYTHONPATH"] = hook
    elif not _same_directory(current.split(os.pathsep)[0], hook):
        env["PYTHONPATH"] = hook + os.pathsep + current
    return env


def _same_directory(entry: str, directory: str) -> bool:
    if not entry:  # the working directory: never the hook's, as the launcher wrote it
        return False
    return os.path.normcase(os.path.abspath(entry)) == os.path.normcase(directory)


def _interpreter_options() -> List[str]:
    """The options this interpreter was started with (-X, -W, -O, -B, ...)."""
    original: Optional[List[str]] = getattr(sys, "orig_argv", None)  # 3.10+
    if original:
        i = 1
        while i < len(original):
            arg = original[i]
            if arg == "-m" and original[i + 1 : i + 2] == [__package__]:
                return original[1:i]
            if arg == f"-m{__package__}":
                return original[1:i]
            if arg in ("-X", "-W", "--check-hash-based-pycs"):
                i += 1  # its value
            elif not arg.startswith("-"):
                break
            i += 1
    # Rebuilt from sys.flags, as multiprocessing does for its children (the
    # -X options it doesn't know are lost).
    rebuild: Optional[Callable[[], List[str]]] = getattr(
        subprocess, "_args_from_interpreter_flags", None
    )
    return list(rebuild()) if rebuild is not None else []


def _run(command: List[str], env: Dict[str, str]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(command[0], command, env)  # does not return
    # Windows has no exec: run it as a child and hand back its exit status.
    with subprocess.Popen(command, env=env) as process:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:  # the child got it too: let it finish
                continue


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The launcher's command line; returns an exit status (on POSIX, running
    a program replaces this process and does not return)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if sys.flags.ignore_environment or sys.flags.no_site:
        print(
            "python -m livekit_events: this interpreter runs with -E, -I or -S, so the "
            "processes it starts would not run the startup hook (PYTHONPATH, site); "
            "run the launcher without those options",
            file=sys.stderr,
        )
        return 2
    if not sys.executable:
        print("python -m livekit_events: sys.executable is unknown", file=sys.stderr)
        return 2
    if args[0] == "--check":
        if len(args) != 1:
            print(USAGE, end="", file=sys.stderr)
            return 2
        target = ["-c", _CHECK]
    elif args[0] == "-m":
        if len(args) < 2:
            print(USAGE, end="", file=sys.stderr)
            return 2
        target = args
    elif args[0].startswith("-"):
        print(f"python -m livekit_events: unknown option {args[0]}\n{USAGE}", end="", file=sys.stderr)
        return 2
    else:
        target = args
    command = [sys.executable, *_interpreter_options(), *target]
    return _run(command, launch_environment())


if __name__ == "__main__":
    sys.exit(main())
