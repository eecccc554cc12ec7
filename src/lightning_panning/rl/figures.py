"""The paper's Figure 4 for one RLPanning run: actions and reward over the rounds, remaining ratio below."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lightning_panning.plotting import agg_figure, figure_to_array

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_to_array", "rl_rounds_figure"]


def rl_rounds_figure(steps: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """Actions ``a1..aκ`` (left axis) and reward ``r`` (right axis) per round; the remaining ratio below (log scale).

    Args:
        steps: per-round summaries as produced by :func:`lightning_panning.rl.agent.step_summary` (keys ``round``,
            ``a1``..``aκ``, ``reward``, ``remaining``).
        title: figure title.

    Returns:
        A matplotlib ``Figure`` on an Agg canvas (no display needed).
    """
    fig = agg_figure(7.0, 5.0)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1.0]})
    rounds = np.array([s["round"] for s in steps])
    first: Mapping[str, Any] = steps[0] if steps else {}
    keys = sorted((k for k in first if k[:1] == "a" and k[1:].isdigit()), key=lambda k: int(k[1:]))
    names = [k[2:] for k in first if k.startswith("p_")]  # scorer names in action order (from step_summary)
    for i, key in enumerate(keys):
        label = f"{key} ({names[i]})" if i < len(names) else key
        top.plot(rounds, [s[key] for s in steps], lw=1.4, label=label)
    top.set_ylabel("action a")
    top.set_ylim(-1.05, 1.05)
    twin = top.twinx()
    twin.plot(rounds, [s["reward"] for s in steps], color="black", lw=1.0, ls="--", label="reward r")
    twin.set_ylabel("reward r")
    handles = top.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = top.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    top.legend(handles, labels, loc="lower left", fontsize=7, ncol=2)
    top.grid(alpha=0.3)
    if title:
        top.set_title(title, fontsize=10)
    bottom.plot(rounds, [max(s["remaining"], 1e-12) for s in steps], color="tab:purple")
    bottom.set_yscale("log")
    bottom.set_ylabel("remaining ratio")
    bottom.set_xlabel("round t")
    bottom.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
