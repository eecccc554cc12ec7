"""Where a result came from: the git commit of the code that ran it, and commands without machine paths.

Example:
    >>> state = git_state()
    >>> sorted(state), state["git_commit"] is None or len(state["git_commit"]) == 40
    (['git_commit', 'git_dirty'], True)
    >>> portable_path("/somewhere/else/runs", root="/repo")
    '<out>'
    >>> portable_path("/repo/benchmarks/results/x", root="/repo")
    'benchmarks/results/x'
    >>> scrub_command("/usr/bin/python3 benchmarks/sweep.py --data-dir /data/sets --out /a/b/benchmarks/results/x")
    'python benchmarks/sweep.py --data-dir <data-dir> --out benchmarks/results/x'
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

__all__ = ["REPO_ROOT", "code_label", "git_state", "portable_path", "scrub_command", "scrub_traceback"]

#: The repository root (this file is ``benchmarks/sweep/provenance.py``).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Paths whose changes do not make the code dirty: the results the runs themselves write.
_NOT_CODE = (":(exclude)benchmarks/results",)


def _git(args: list[str], root: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def git_state(root: str | os.PathLike[str] | None = None) -> dict[str, str | bool | None]:
    """The commit checked out at ``root`` and whether tracked code differs from it (results folders excluded).

    Where ``LIGHTNING_PANNING_GIT_COMMIT`` is set it wins, with ``LIGHTNING_PANNING_GIT_DIRTY`` (``0`` or ``1``;
    unknown if unset): whoever copies the tree to another machine sets them from the checkout it copied. (The lent
    GPU machine gets the working tree with a ``.git`` of the session's *starting* commit, so git there names the wrong
    commit, dirty.)

    Returns:
        ``{"git_commit": <40 hex digits> | None, "git_dirty": bool | None}``; ``None`` where git or the repository
        is not available (for example a copy without ``.git``) and the variable is not set.

    Raises:
        ValueError: ``LIGHTNING_PANNING_GIT_COMMIT`` is not 40 hex digits, or ``LIGHTNING_PANNING_GIT_DIRTY`` is
            neither ``0`` nor ``1``.
    """
    given = _state_from_environment()
    if given["git_commit"] is not None:
        return given
    where = REPO_ROOT if root is None else Path(root)
    head = _git(["rev-parse", "HEAD"], where)
    if head is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", *_NOT_CODE], where)
    return {"git_commit": head.strip(), "git_dirty": None if status is None else bool(status.strip())}


def _state_from_environment() -> dict[str, str | bool | None]:
    commit = os.environ.get("LIGHTNING_PANNING_GIT_COMMIT")
    if not commit:
        return {"git_commit": None, "git_dirty": None}
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise ValueError(f"LIGHTNING_PANNING_GIT_COMMIT={commit!r}: expected a full commit hash (40 hex digits)")
    dirty = os.environ.get("LIGHTNING_PANNING_GIT_DIRTY")
    if dirty not in (None, "0", "1"):
        raise ValueError(f"LIGHTNING_PANNING_GIT_DIRTY={dirty!r}: expected 0 (clean) or 1 (uncommitted changes)")
    return {"git_commit": commit, "git_dirty": None if dirty is None else dirty == "1"}


def code_label(root: str | os.PathLike[str] | None = None) -> str:
    """:func:`git_state` as one string for a results file: ``"<commit>"``, ``"<commit> (with uncommitted changes)"``
    or ``"not recorded"`` (no git or no repository)."""
    state = git_state(root)
    if state["git_commit"] is None:
        return "not recorded"
    return str(state["git_commit"]) + (" (with uncommitted changes)" if state["git_dirty"] else "")


def portable_path(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None, placeholder: str = "<out>"
) -> str:
    """``path`` relative to the repository root when it lies inside it, else ``placeholder`` (no machine paths).

    Args:
        path: a file or folder.
        root: the repository root (default :data:`REPO_ROOT`).
        placeholder: what stands for a path outside the repository.
    """
    base = Path(REPO_ROOT if root is None else root).resolve()
    target = Path(path)
    target = (target if target.is_absolute() else Path.cwd() / target).resolve()
    try:
        return target.relative_to(base).as_posix()
    except ValueError:
        return placeholder


def scrub_command(command: str) -> str:
    """``command`` without machine paths: a Python interpreter's path becomes ``python``, a path into a checkout's
    ``benchmarks/`` folder becomes repository-relative, and any other absolute path the placeholder ``<option>``
    (the option it follows, else ``<path>``).
    """
    words = shlex.split(command)
    out: list[str] = []
    for index, word in enumerate(words):
        option, eq, value = word.partition("=") if word.startswith("--") else ("", "", word)
        if not value.startswith("/"):
            out.append(word)
            continue
        if index == 0 and re.search(r"/python[0-9.]*$", value):
            replaced = "python"
        elif "/benchmarks/" in value:
            replaced = value[value.index("/benchmarks/") + 1 :]
        elif eq:
            replaced = f"<{option.lstrip('-')}>"
        else:
            previous = words[index - 1] if index else ""
            replaced = f"<{previous.lstrip('-')}>" if previous.startswith("--") else "<path>"
        out.append(f"{option}={replaced}" if eq else replaced)
    return " ".join(w if re.fullmatch(r"(--[\w-]+=)?<[\w-]+>", w) else shlex.quote(w) for w in out)


def scrub_traceback(text: str, *, root: str | os.PathLike[str] | None = None) -> str:
    """A traceback's file names without machine paths: repository files relative to its root, installed packages
    from ``site-packages/`` on, any other file as ``<path>/<name>``.

    Example:
        >>> scrub_traceback('File "/srv/repo/benchmarks/x.py", line 1 / File "/usr/lib/site-packages/torch/a.py"',
        ...                 root="/srv/repo")
        'File "benchmarks/x.py", line 1 / File "site-packages/torch/a.py"'
    """
    base = str(Path(REPO_ROOT if root is None else root)).rstrip("/") + "/"

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith(base):
            name = name[len(base) :]
        elif "/site-packages/" in name:
            name = name[name.index("/site-packages/") + 1 :]
        elif "/benchmarks/" in name or "/src/lightning_panning/" in name:
            marker = "/benchmarks/" if "/benchmarks/" in name else "/src/lightning_panning/"
            name = name[name.index(marker) + 1 :]
        else:
            name = "<path>/" + Path(name).name
        return f'File "{name}"'

    return re.sub(r'File "(/[^"]+)"', one, text)
