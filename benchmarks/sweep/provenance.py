"""Where a result came from: the git commit of the code that ran it, and commands without machine paths.

Example:
    >>> state = git_state()
    >>> sorted(state), state["git_commit"] is None or len(state["git_commit"]) == 40
    (['git_commit', 'git_dirty'], True)
    >>> portable_path("/somewhere/else/runs", root="/repo")
    '<out>'
    >>> portable_path("/repo/benchmarks/results/x", root="/repo")
    'benchmarks/results/x'
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["REPO_ROOT", "git_state", "portable_path"]

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

    Returns:
        ``{"git_commit": <40 hex digits> | None, "git_dirty": bool | None}``; ``None`` where git or the repository
        is not available (for example a copy without ``.git``).
    """
    where = REPO_ROOT if root is None else Path(root)
    head = _git(["rev-parse", "HEAD"], where)
    if head is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", *_NOT_CODE], where)
    return {"git_commit": head.strip(), "git_dirty": None if status is None else bool(status.strip())}


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
