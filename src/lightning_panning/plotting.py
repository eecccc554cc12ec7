"""Matplotlib helpers shared by the pruning summary and the RLPanning figures (Agg canvas, no display needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["agg_figure", "figure_to_array"]


def agg_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A matplotlib ``Figure`` of ``width × height`` inches on an Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB rendering of ``fig``.

    Example:
        >>> figure_to_array(agg_figure(2.0, 1.0, dpi=10)).shape
        (10, 20, 3)
    """
    canvas = fig.canvas
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
    return np.ascontiguousarray(rgba[..., :3])
