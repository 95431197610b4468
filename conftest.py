"""The code blocks of README.md and docs/*.md, run as tests.

pytest-markdown-docs (in the ``test-runner`` dependency group) runs every ```` ```python ````
block; a block marked ```` ```python notest ```` is a fragment and is not run.
``testpaths`` in pyproject.toml lists README.md and docs/, so a plain
``pytest`` from the repository root runs them.  Only these Markdown files are
collected (the plugin's own ``--markdown-docs`` switch would also scan every
``.py`` file's docstrings).

A block that names a fixture in its info string (```` ```python fixture:room ````)
gets it as a global: ``room`` is a ``Room`` (an ``EventEmitter`` subclass, the
shape of livekit's ``rtc.Room``), ``em`` a plain ``EventEmitter``.  After each
block, ``install()`` is undone if the block made it.  Under
pytest-run-parallel they run in one thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).parent
DOCS = ROOT / "docs"


def _is_doc(path: Path) -> bool:
    return path.suffix == ".md" and (path == ROOT / "README.md" or path.parent == DOCS)


def _asked_for(file_path: Path, config: pytest.Config) -> bool:
    # Whether the run's arguments (or testpaths) name this file or a folder it is in.
    for arg in config.args:
        target = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if file_path == target or target in file_path.parents:
            return True
    return False


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Optional[pytest.Collector]:
    if not _is_doc(file_path) or getattr(parent.config.option, "markdowndocs", False):
        return None  # with --markdown-docs the plugin collects them itself
    try:
        from pytest_markdown_docs.plugin import MarkdownTextFile
    except ImportError:
        if not _asked_for(file_path, parent.config):
            return None  # (pytest offers the root's files even for `pytest tests/x.py`)
        raise pytest.UsageError(
            f"{file_path.name}: its code blocks are tests, run by pytest-markdown-docs: "
            "pip install pytest-markdown-docs (it is in the `test` extra)"
        ) from None
    collector: pytest.Collector = MarkdownTextFile.from_parent(parent, path=file_path)
    return collector


def _have_livekit() -> bool:
    import importlib.util

    return importlib.util.find_spec("livekit") is not None


def pytest_collection_modifyitems(items: "list[pytest.Item]") -> None:
    no_livekit = None if _have_livekit() else pytest.mark.skip(reason="livekit is not installed")
    for item in items:
        if _is_doc(Path(str(item.path))):
            # pytest-run-parallel: run these once, not in a thread pool.
            item._parallel_custom_item = True  # type: ignore[attr-defined]
            code = str(getattr(item, "code", ""))
            if no_livekit and ("install()" in code or "from livekit " in code):
                item.add_marker(no_livekit)  # install() needs livekit (a separate install)


def _doc_room() -> Any:
    from livekit_events import EventEmitter

    class Room(EventEmitter[str]):
        """Stands in for livekit's ``rtc.Room`` in the docs' examples."""

    return Room()


@pytest.fixture
def room() -> Any:
    return _doc_room()


@pytest.fixture
def em() -> Any:
    from livekit_events import EventEmitter

    return EventEmitter()


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _is_doc(Path(str(item.path))):
        import livekit_events

        if livekit_events.is_installed():
            livekit_events.uninstall()
