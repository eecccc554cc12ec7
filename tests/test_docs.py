"""The documentation: the site builds with warnings as errors, and every Python snippet in it runs.

Snippets are the ```python blocks of README.md and of every page under docs/. The blocks of one page run in order in
one namespace, in a temporary working directory. A block that cannot run here (it needs a dataset that is not
bundled, a GPU, several devices or the network) is marked by an HTML comment on the line before its fence,
``<!-- skip: what it needs -->``; each such block is reported as a skipped test that names the page, the line and the
reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import lightning_panning

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

#: The public packages the API reference documents, and the page of each (under docs/api/).
API_PAGES = {
    "lightning_panning": "lightning_panning",
    "lightning_panning.callbacks": "callbacks",
    "lightning_panning.fabric": "fabric",
    "lightning_panning.rl": "rl",
    "lightning_panning.compaction": "compaction",
    "lightning_panning.models": "models",
    "lightning_panning.data": "data",
    "lightning_panning.classifier": "classifier",
}

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
SKIP = re.compile(r"^\s*<!--\s*skip:(?P<reason>.*?)-->\s*$")


@dataclass(frozen=True)
class Snippet:
    """One fenced Python block of a page."""

    page: str  #: path relative to the repository
    line: int  #: 1-based line of the first line of code
    code: str
    skip: str | None  #: the reason given by a ``<!-- skip: ... -->`` marker, else None


def snippets(text: str, page: str) -> list[Snippet]:
    """The ```python / ```py blocks of a Markdown text, in order, with their skip markers.

    A block may be indented (inside a list item): the fence's indentation is removed from its lines. Raises
    ``ValueError`` for a skip marker without a reason, or one that is not followed by a Python block.
    """
    lines = text.splitlines()
    found: list[Snippet] = []
    pending_skip: tuple[int, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        skip = SKIP.match(line)
        if skip:
            if pending_skip is not None:
                raise ValueError(f"{page}:{pending_skip[0]}: skip marker not followed by a Python block")
            reason = skip.group("reason").strip()
            if not reason:
                raise ValueError(f"{page}:{i + 1}: `<!-- skip: -->` needs a reason")
            pending_skip = (i + 1, reason)
            i += 1
            continue
        fence = FENCE.match(line)
        if fence is None:
            if line.strip() and pending_skip is not None:
                raise ValueError(f"{page}:{pending_skip[0]}: skip marker not followed by a Python block")
            i += 1
            continue
        indent, marker = fence.group("indent"), fence.group("fence")
        language = fence.group("info").strip().split(" ")[0].lower() if fence.group("info").strip() else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^[ \t]*{re.escape(marker[0])}{{{len(marker)},}}\s*$", lines[j]):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if language in ("python", "py"):
            found.append(Snippet(page, i + 2, "\n".join(body) + "\n", pending_skip[1] if pending_skip else None))
        elif pending_skip is not None:
            raise ValueError(f"{page}:{pending_skip[0]}: skip marker not followed by a Python block")
        pending_skip = None
        i = j + 1
    if pending_skip is not None:
        raise ValueError(f"{page}:{pending_skip[0]}: skip marker not followed by a Python block")
    return found


def _relative(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _all_snippets() -> list[Snippet]:
    return [s for page in PAGES for s in snippets(page.read_text(encoding="utf-8"), _relative(page))]


SNIPPETS = _all_snippets()
RUN_PAGES = sorted({s.page for s in SNIPPETS if s.skip is None})
SKIPPED = [s for s in SNIPPETS if s.skip is not None]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A page runs in an empty directory with one intra-op thread, and leaves nothing behind.

    Lightning writes its logs and checkpoints to the working directory. Restored afterwards, for the tests that run
    later in this process: the environment (``seed_everything`` sets ``PL_GLOBAL_SEED``), the random number
    generators, and the method, scorer and schedule registries that a page may add to.
    """
    monkeypatch.chdir(tmp_path)
    environ = dict(os.environ)
    threads = torch.get_num_threads()
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    registries = [
        (registry, dict(registry))
        for registry in (getattr(lightning_panning, name, None) for name in ("METHODS", "SCORERS", "SCHEDULES"))
        if isinstance(registry, dict)
    ]
    torch.set_num_threads(1)
    try:
        yield tmp_path
    finally:
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(environ)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        for registry, content in registries:
            registry.clear()
            registry.update(content)


@pytest.mark.parametrize("page", RUN_PAGES)
def test_snippets_of_a_page_run_in_order(page: str, isolated: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for snippet in SNIPPETS:
        if snippet.page == page and snippet.skip is None:
            # padded so that a traceback gives the line number in the page
            code = compile("\n" * (snippet.line - 1) + snippet.code, str(ROOT / page), "exec")
            exec(code, namespace)


@pytest.mark.parametrize("snippet", SKIPPED, ids=[f"{s.page}:{s.line}" for s in SKIPPED])
def test_skipped_snippet(snippet: Snippet) -> None:
    pytest.skip(f"{snippet.page}:{snippet.line}: {snippet.skip}")


def test_every_page_with_python_runs_some_of_it() -> None:
    """A page whose every block is marked skipped shows no working code: at least one block per page must run."""
    pages = {s.page for s in SNIPPETS}
    assert pages - set(RUN_PAGES) == set(), "pages whose Python blocks are all skipped"
    assert len(RUN_PAGES) >= 8, RUN_PAGES


def test_snippet_extraction_reads_markers_and_indented_blocks() -> None:
    text = (
        "intro\n```python\na = 1\n```\n<!-- skip: needs CIFAR-10 -->\n```python\nb = 2\n```\n"
        "- item\n\n  ```py\n  c = a + 1\n  ```\n```bash\nd = 4\n```\n"
    )
    found = snippets(text, "page.md")
    assert [(s.line, s.code, s.skip) for s in found] == [
        (3, "a = 1\n", None),
        (7, "b = 2\n", "needs CIFAR-10"),
        (12, "c = a + 1\n", None),
    ]
    with pytest.raises(ValueError, match="needs a reason"):
        snippets("<!-- skip: -->\n```python\nx\n```\n", "page.md")
    with pytest.raises(ValueError, match="not followed by a Python block"):
        snippets("<!-- skip: GPU -->\ntext\n```python\nx\n```\n", "page.md")
    with pytest.raises(ValueError, match="not followed by a Python block"):
        snippets("<!-- skip: GPU -->\n```bash\nx\n```\n", "page.md")


LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_relative_links_resolve_in_the_repository() -> None:
    """README.md is not part of the site, and GitHub reads every page as a file: each relative link must exist."""
    broken = []
    for page in PAGES:
        in_fence = False
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if FENCE.match(line):
                in_fence = not in_fence
                continue
            for target in [] if in_fence else LINK.findall(line):
                path = target.split("#", 1)[0]
                if not path or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", path):
                    continue
                if not (page.parent / path).exists():
                    broken.append(f"{_relative(page)}:{number}: {target}")
    assert not broken, broken


def _hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", DOCS / "_hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstring_rewrite_for_the_api_reference() -> None:
    rewrite = _hook("griffe_docstrings").rewrite
    text = "Use :class:`PanningEnv` or :meth:`~a.B.reset`::\n\n    Example:\n        >>> 1\n        1\n"
    assert rewrite(text) == "Use `PanningEnv` or `reset`:\n\n    Examples:\n        >>> 1\n        1\n"
    assert rewrite("Example: a sentence.") == "Example: a sentence."  # only a section title is renamed


def test_site_builds_strictly_and_documents_every_public_name(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml")]
    done = subprocess.run(
        [*command, "--site-dir", str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for module_name, page in API_PAGES.items():
        html = (site / "api" / page / "index.html").read_text(encoding="utf-8")
        anchors = set(re.findall(r'id="([^"]+)"', html))
        public = [name for name in importlib.import_module(module_name).__all__ if not name.startswith("_")]
        missing = [name for name in public if f"{module_name}.{name}" not in anchors]
        assert not missing, f"docs/api/{page}.md does not document {missing} of {module_name}.__all__"
    # GitHub needs `\|` in a table's code spans; the site shows a plain pipe (docs/_hooks/repo_files.py)
    methods = (site / "guide" / "methods" / "index.html").read_text(encoding="utf-8")
    assert "<code>|S| / RMS(S)</code>" in methods and "\\|" not in methods
    # the pages' links to benchmark results became links to copies in the site
    benchmarks = (site / "benchmarks" / "index.html").read_text(encoding="utf-8")
    assert "../repo/benchmarks/results/prune_speed/" in benchmarks
    assert (site / "repo" / "benchmarks" / "results" / "prune_speed" / "index.html").is_file()
