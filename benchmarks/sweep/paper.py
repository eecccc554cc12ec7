"""The paper's numbers (Kang et al. 2022, METHOD.md §7: Tables 2, 5 and 6) and which of our methods they sit beside.

The paper's Panning and RLPanning numbers were produced with the authors' code, which differs from Algorithm 1 as
the paper writes it (SNIP/GraSP scored on the unmasked network, signed-saliency normalisation, their stage rule; see
METHOD.md §3). This project's ``panning`` is Algorithm 1 as written; ``panning_authors`` reproduces the authors'
code. So the paper's Panning row is shown beside ``panning_authors`` and never beside ``panning``
(:data:`PAPER_ROW_OF`).

Example:
    >>> paper_accuracy("lenet5-mnist", "panning", 0.999), paper_beside("lenet5-mnist", "panning_authors", 0.999)
    (95.51, 95.51)
    >>> paper_beside("lenet5-mnist", "panning", 0.999) is None
    True
"""

from __future__ import annotations

import math

__all__ = [
    "PAPER_DENSE",
    "PAPER_RESULTS",
    "PAPER_ROW_NOTES",
    "PAPER_ROW_OF",
    "PAPER_SOURCES",
    "paper_accuracy",
    "paper_beside",
]

#: Dense (unpruned) test accuracy (%) per paper setting.
PAPER_DENSE: dict[str, float] = {
    "lenet5-mnist": 99.40,
    "lenet5-fashionmnist": 91.98,
    "vgg19-cifar10": 94.20,
    "vgg19-tinyimagenet": 63.29,
    "resnet18-tinyimagenet": 63.92,
}

#: ``{setting: {paper row: {sparsity: test accuracy %}}}``. Rows are the paper's names: ``panning`` and
#: ``rlpanning`` (Tables 5 and 6); on VGG19/CIFAR-10 ``snip``/``grasp`` are Table 2's improved metrics ("Ours
#: SNIP/GraSP"), ``grasp_original``/``snip_original`` its original SNIP and GraSP.
PAPER_RESULTS: dict[str, dict[str, dict[float, float]]] = {
    "lenet5-mnist": {
        "panning": {0.9: 99.37, 0.95: 99.21, 0.98: 99.11, 0.99: 99.09, 0.999: 95.51, 0.9999: 40.85},
        "rlpanning": {0.9: 99.40, 0.95: 99.18, 0.98: 99.23, 0.99: 99.15, 0.999: 97.89, 0.9999: 45.43},
    },
    "lenet5-fashionmnist": {
        "panning": {0.9: 90.67, 0.95: 90.14, 0.98: 88.74, 0.99: 86.92, 0.999: 68.97, 0.9999: 26.67},
        "rlpanning": {0.9: 90.84, 0.95: 90.53, 0.98: 89.35, 0.99: 87.41, 0.999: 69.02, 0.9999: 30.26},
    },
    "vgg19-cifar10": {
        "panning": {0.9: 94.02, 0.95: 93.66, 0.98: 92.81, 0.99: 91.75, 0.999: 83.87, 0.9999: 62.32},
        "rlpanning": {0.9: 94.09, 0.95: 93.80, 0.98: 92.98, 0.99: 92.12, 0.999: 84.52, 0.9999: 64.51},
        "snip": {0.85: 94.05, 0.9: 93.98, 0.95: 93.86, 0.98: 91.83, 0.99: 10.0},
        "grasp": {0.85: 93.77, 0.9: 93.69, 0.95: 93.48, 0.98: 92.78, 0.99: 91.8},
        "grasp_original": {0.85: 93.59, 0.9: 93.50, 0.95: 92.90, 0.98: 92.39, 0.99: 91.0},
        "snip_original": {0.85: 93.91, 0.9: 93.82, 0.95: 93.72, 0.98: 91.16, 0.99: 10.0},
    },
    "vgg19-tinyimagenet": {
        "panning": {0.9: 61.67, 0.95: 60.25, 0.98: 58.33},
        "rlpanning": {0.9: 61.84, 0.95: 59.83, 0.98: 58.17},
    },
    "resnet18-tinyimagenet": {
        "rlpanning": {0.9: 61.07, 0.95: 58.73, 0.98: 55.82},
    },
}

#: Where each setting's numbers come from.
PAPER_SOURCES: dict[str, str] = {
    "lenet5-mnist": "Table 5 (mean of 3 runs, 80 epochs)",
    "lenet5-fashionmnist": "Table 5 (mean of 3 runs, 80 epochs)",
    "vgg19-cifar10": "Tables 2 and 5 (mean of 3 runs, 180 epochs)",
    "vgg19-tinyimagenet": "Table 6 (200 epochs)",
    "resnet18-tinyimagenet": "Table 6 (300 epochs)",
}

#: Sweep method → the paper row its numbers are shown beside. ``panning`` (Algorithm 1 as written) has none: the
#: paper's Panning numbers come from the authors' code, which ``panning_authors`` reproduces.
PAPER_ROW_OF: dict[str, str] = {
    "panning_authors": "panning",
    "rlpanning": "rlpanning",
    "snip": "snip",
    "grasp": "grasp",
    "grasp_original": "grasp_original",
}

#: How each paper row is labelled where it is shown.
PAPER_ROW_NOTES: dict[str, str] = {
    "panning": "the authors' code",
    "rlpanning": "the authors' code and their trained agent; ours uses the agent shipped in lightning_panning",
    "snip": "Table 2's improved SNIP, the authors' code",
    "grasp": "Table 2's improved GraSP, the authors' code",
    "grasp_original": "Table 2's original GraSP",
    "snip_original": "Table 2's original SNIP",
}


def _lookup(table: dict[float, float], sparsity: float) -> float | None:
    for s, acc in table.items():
        if math.isclose(s, sparsity, rel_tol=0.0, abs_tol=1e-9):
            return acc
    return None


def paper_accuracy(setting: str | None, row: str, sparsity: float) -> float | None:
    """The paper's test accuracy (%) of its row ``row`` at ``sparsity`` in ``setting``, or ``None``.

    ``row="dense"`` returns the setting's dense baseline at any sparsity.

    Example:
        >>> paper_accuracy("lenet5-fashionmnist", "rlpanning", 0.99), paper_accuracy("lenet5-mnist", "snip", 0.9)
        (87.41, None)
    """
    if setting is None:
        return None
    if row == "dense":
        return PAPER_DENSE.get(setting)
    return _lookup(PAPER_RESULTS.get(setting, {}).get(row, {}), sparsity)


def paper_beside(setting: str | None, method: str, sparsity: float) -> float | None:
    """The paper's number to show beside our sweep ``method`` (see :data:`PAPER_ROW_OF`), or ``None``.

    Example:
        >>> paper_beside("lenet5-mnist", "dense", 0.0), paper_beside("lenet5-mnist", "rlpanning", 0.9999)
        (99.4, 45.43)
    """
    if method == "dense":
        return paper_accuracy(setting, "dense", sparsity)
    row = PAPER_ROW_OF.get(method)
    return None if row is None else paper_accuracy(setting, row, sparsity)
