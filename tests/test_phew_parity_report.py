"""benchmarks/authors_parity.py's PHEW section: models, old records without seconds, the rendered table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import authors_parity


def _row(model: str, **extra: object) -> dict[str, object]:
    return {"model": model, "prune_perc": 98.0, "seed": 0, "their_target_count": 10, "kept_theirs": 10,
            "kept_ours": 10, "differing": 0, "jaccard": 1.0, **extra}  # fmt: skip


def test_phew_section_renders_old_and_new_records() -> None:
    record = {"phew_parity": {
        "model": "ours", "parity": [_row("lenet5"), _row("vgg19", their_seconds=1800.0, our_walk_seconds=2.5,
                                                          load_before=2.1)],
        "information_exact_count": [_row("vgg19", our_seconds=6.0),
                                    {k: v for k, v in _row("lenet5").items() if k != "model"}],
    }}  # fmt: skip
    lines = authors_parity.layerwise_markdown(record)
    assert "| lenet5 | 98 | 0 | 10 | 10 | 10 | **0** | – | – | – |" in lines
    assert "| vgg19 | 98 | 0 | 10 | 10 | 10 | **0** | 1800.0 | 2.50 | 2.10 |" in lines
    assert "| vgg19 | 98 | 0 | 10 | 10 | 1.0000 | 6.00 |" in lines
    assert "| lenet5 | 98 | 0 | 10 | 10 | 1.0000 | – |" in lines  # an old record: no model, no seconds


def test_phew_models_and_their_cases() -> None:
    assert authors_parity.PHEW_MODEL_CASES["vgg19"] == ((98.0, 0),)
    model, example = authors_parity._phew_model("vgg19")
    assert example.shape == (1, 3, 32, 32) and model(example).shape == (1, 10)
    with pytest.raises(SystemExit):
        authors_parity.parse(["--phew-repo", ".", "--phew-models", "resnet50"])
