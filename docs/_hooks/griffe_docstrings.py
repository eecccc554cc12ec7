"""Griffe extension: read the package's Google docstrings the way Napoleon (and the code's authors) mean them.

* ``Example:`` starts an examples section, as ``Examples:`` does (Google style allows both; Griffe alone treats the
  singular as an admonition, so the doctest lines would be read as Markdown).
* Sphinx roles (``:class:`PanningEnv```, ``:meth:`~PanningVecEnv.reset```) become code spans: the text is kept
  (the last dotted component for ``~``), the role markup goes.
* A paragraph ending in reStructuredText's literal-block marker ``::`` ends in ``:``.

Only the docstring text handed to the renderer changes; the sources are not touched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

EXAMPLE = re.compile(r"^([ \t]*)Example:[ \t]*$", re.MULTILINE)
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|data|mod|attr|exc|obj|const|ref|term):`(~?)([^`]+)`")
LITERAL_MARKER = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    text = match.group(2)
    return f"`{text.rsplit('.', 1)[-1] if match.group(1) else text}`"


def rewrite(docstring: str) -> str:
    """The docstring with the three rewrites above (tested in ``tests/test_docs.py``)."""
    docstring = EXAMPLE.sub(r"\1Examples:", docstring)
    docstring = ROLE.sub(_role, docstring)
    return LITERAL_MARKER.sub(r"\1:", docstring)


class NapoleonDocstrings(griffe.Extension):
    """Rewrite each docstring once its object exists, before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring in place."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
