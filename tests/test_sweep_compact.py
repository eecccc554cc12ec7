"""The sweep trains the compacted network exactly; its lean classifier trains as ImageClassifier does."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from benchmarks.sweep.cell import SweepConfig, build_datamodule, build_model
from benchmarks.sweep.exactness import StepLosses, compare_cell
from benchmarks.sweep.lean import SweepClassifier
from benchmarks.sweep.profiles import PROFILES, Cell
from benchmarks.sweep.records import BUDGET_FIELDS
from lightning_panning.classifier import ImageClassifier


def _config(tmp_path: Path) -> SweepConfig:
    # LeNet5 on the offline digits: 512 images, batch 64 -> 8 optimizer steps
    profile = PROFILES["smoke"].override(methods=("panning",), rounds=5)
    return SweepConfig(profile=profile, out_dir=tmp_path, accelerator="cpu", report_every_cell=False)


@pytest.mark.parametrize("sparsity", [0.9, 0.99, 0.999])
def test_compacted_and_masked_cells_have_the_same_losses(tmp_path: Path, sparsity: float) -> None:
    torch.set_num_threads(1)
    result = compare_cell(Cell("panning", sparsity, 0), _config(tmp_path))
    assert result["steps"] == 8 and len(result["losses_compacted"]) == 8
    assert result["compacted_parameters"] < result["parameters"]  # really a smaller network
    for masked, compacted in zip(result["losses_masked"], result["losses_compacted"], strict=True):
        assert math.isclose(masked, compacted, rel_tol=1e-5, abs_tol=1e-6)
    assert math.isclose(result["test_loss_masked"], result["test_loss_compacted"], rel_tol=1e-4, abs_tol=1e-6)
    assert result["test_acc_masked"] == pytest.approx(result["test_acc_compacted"], abs=0.5)  # at most 1 image


def test_compaction_is_on_in_the_cpu_and_full_budget_profiles_and_not_in_the_budget() -> None:
    for name in ("lenet5-mnist-cpu", "lenet5-fashionmnist-cpu", "lenet300-fashionmnist-cpu", "lenet5-mnist"):
        assert PROFILES[name].compact
    assert "compact" not in PROFILES["lenet5-mnist"].budget() and "compact" not in BUDGET_FIELDS


def test_the_sweep_classifier_trains_bit_for_bit_as_image_classifier(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = _config(tmp_path)
    curves = []
    for cls in (ImageClassifier, SweepClassifier):
        seed_everything(0, verbose=False)
        module = cls(build_model(config.profile), num_classes=10, lr=0.1, momentum=0.9, weight_decay=1e-4)
        recorder = StepLosses()
        trainer = Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder])  # fmt: skip
        trainer.fit(module, datamodule=build_datamodule(config.profile, config, 0))
        curves.append(recorder.losses)
    assert len(curves[0]) == 6 and curves[0] == curves[1]
