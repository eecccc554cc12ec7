"""MkDocs hook: links from the docs to repository files outside ``docs/`` work on GitHub and in the site alike.

The pages link the benchmark results, examples and sources with paths relative to the page in the repository
(``../benchmarks/results/prune_speed.md`` from ``docs/benchmarks.md``), which GitHub follows. MkDocs only knows
the files under ``docs/``, so this hook adds every repository file such a link reaches (and, for Markdown files,
what their own links reach) to the site under ``repo/<path in the repository>``, and rewrites the links to it. A
linked Markdown file becomes a page of the site; any other file is copied as it is. A link to a file that does not
exist is left alone, so MkDocs reports it (an error under ``--strict``).

It also unescapes backslash-escaped pipes inside code spans of table rows: GitHub needs the escape there (it splits
a table row on every unescaped pipe, code spans included), Python-Markdown does not and would show the backslash.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

#: Where the copies of repository files live in the site.
PREFIX = "repo/"

#: Inline Markdown links and images: ``[text](target)`` / ``![alt](target "title")``.
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")

#: A code span: a run of backticks, its content, the same run.
CODE_SPAN = re.compile(r"(`+)(.+?)\1")

#: The opening or closing line of a fenced code block (``` or ~~~, three or more), whose contents are not Markdown.
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def _repo_root(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _docs_prefix(config: Any) -> str:
    docs = Path(config["docs_dir"]).resolve().relative_to(_repo_root(config))
    return docs.as_posix() + "/"


def _is_relative(target: str) -> bool:
    return not (re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("/", "#")))


def _prose(lines: list[str]) -> list[bool]:
    """For each line, whether it is Markdown text (not a fence line, not inside a fenced code block)."""
    prose, fence = [], ""
    for line in lines:
        match = FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
            prose.append(False)
        elif match:
            fence = match.group(1)
            prose.append(False)
        else:
            prose.append(True)
    return prose


def _links(markdown: str) -> list[tuple[int, re.Match[str]]]:
    """Inline links outside fenced code blocks, as (line index, match)."""
    lines = markdown.splitlines()
    prose = _prose(lines)
    return [(i, match) for i, line in enumerate(lines) if prose[i] for match in LINK.finditer(line)]


def _repo_path(src_uri: str, config: Any) -> str:
    """The repository path of a site file (a page under docs/ or a copy under ``repo/``)."""
    return src_uri[len(PREFIX) :] if src_uri.startswith(PREFIX) else _docs_prefix(config) + src_uri


def _site_path(repo_path: str, config: Any) -> str:
    """Where a repository file is in the site."""
    docs = _docs_prefix(config)
    return repo_path[len(docs) :] if repo_path.startswith(docs) else PREFIX + repo_path


def _resolve(page_repo_path: str, target: str) -> tuple[str, str]:
    """A link's repository path (normalised) and its ``#anchor``/``?query`` suffix."""
    cut = min((i for i in (target.find("#"), target.find("?")) if i >= 0), default=len(target))
    path, suffix = target[:cut], target[cut:]
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), path)) if path else ""
    return resolved, suffix


def on_files(files: Files, config: Any) -> Files:
    """Add every repository file outside docs/ that a page links (transitively through Markdown) to the site."""
    root = _repo_root(config)
    pending = [f.src_uri for f in files if f.src_uri.endswith(".md")]
    added: set[str] = set()
    while pending:
        src_uri = pending.pop()
        file = files.get_file_from_path(src_uri)
        if file is None or file.abs_src_path is None:
            continue
        page_repo_path = _repo_path(src_uri, config)
        for _, match in _links(Path(file.abs_src_path).read_text(encoding="utf-8")):
            if not _is_relative(match.group(2)):
                continue
            repo_path, _ = _resolve(page_repo_path, match.group(2))
            site_path = _site_path(repo_path, config)
            if not site_path.startswith(PREFIX) or site_path in added or repo_path.startswith(".."):
                continue
            if not (root / repo_path).is_file():
                continue  # MkDocs reports the broken link
            added.add(site_path)
            files.append(File.generated(config, site_path, abs_src_path=str(root / repo_path)))
            if repo_path.endswith(".md"):
                pending.append(site_path)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Rewrite links to repository files outside docs/ to their copies in the site; unescape table code pipes."""
    page_repo_path = _repo_path(page.file.src_uri, config)
    lines = markdown.splitlines(keepends=True)
    for index, match in reversed(_links(markdown)):
        target = match.group(2)
        if not _is_relative(target):
            continue
        repo_path, suffix = _resolve(page_repo_path, target)
        if not repo_path:
            continue
        site_path = _site_path(repo_path, config)
        if files.get_file_from_path(site_path) is None:
            continue
        new = posixpath.relpath(site_path, posixpath.dirname(page.file.src_uri) or ".") + suffix
        line = lines[index]
        lines[index] = line[: match.start(2)] + new + line[match.end(2) :]
    prose = _prose(lines)
    return "".join(_unescape_table_code(line) if prose[i] else line for i, line in enumerate(lines))


def _unescape_table_code(line: str) -> str:
    """The escaped pipes of a table row's code spans, unescaped for Python-Markdown (which shows the backslash)."""
    if not line.lstrip().startswith("|") or "\\|" not in line:
        return line
    return CODE_SPAN.sub(lambda m: m.group(1) + m.group(2).replace("\\|", "|") + m.group(1), line)
