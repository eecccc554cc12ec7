"""The LightningCLI, the shipped configs and the quickstart (issue 4)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_panning.callbacks import BasePruningCallback
from lightning_panning.cli import cli_main, main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "examples").glob("*.yaml"))


def test_every_paper_setting_has_a_config() -> None:
    names = {p.stem for p in CONFIGS}
    for name in [
        "lenet5_mnist",
        "lenet5_fashionmnist",
        "vgg19_cifar10",
        "resnet18_cifar100",
        "vgg19_tinyimagenet",
        "resnet18_tinyimagenet",
    ]:
        assert name in names
        assert f"{name}_rlpanning" in names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_and_instantiates(config: Path, tmp_path: Path) -> None:
    cli = cli_main(["--config", str(config), "--trainer.default_root_dir", str(tmp_path)], run=False)
    callbacks = [c for c in cli.trainer.callbacks if "Panning" in type(c).__name__]
    assert len(callbacks) == 1
    assert callbacks[0].target == pytest.approx(0.98)
    text = yaml.safe_load(config.read_text())
    assert cli.trainer.max_epochs == text["trainer"]["max_epochs"]


def small_config(config: Path, tmp_path: Path, data_dir: Path | None) -> Path:
    """A copy of a shipped config with 3 pruning rounds, CSV logs under tmp_path and the given data directory."""
    text = yaml.safe_load(config.read_text())
    for cb in text["trainer"]["callbacks"]:
        if "Panning" in cb["class_path"]:
            cb["init_args"].setdefault("options", {})["rounds"] = 3
            cb["init_args"]["verbose"] = False
    if data_dir is not None:
        text["data"]["init_args"]["data_dir"] = str(data_dir)
        text["data"]["init_args"]["download"] = False
        text["data"]["init_args"]["train_subset"] = 2000
    out = tmp_path / config.name
    out.write_text(yaml.safe_dump(text))
    return out


@pytest.mark.parametrize("name", ["lenet5_mnist", "lenet5_fashionmnist", "lenet5_mnist_rlpanning"])
def test_config_fits_with_fast_dev_run(name: str, datasets_root: Path, tmp_path: Path) -> None:
    config = small_config(ROOT / "examples" / f"{name}.yaml", tmp_path, datasets_root)
    cli = cli_main(
        ["fit", "--config", str(config), "--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(tmp_path)]
    )
    pruner = next(c for c in cli.trainer.callbacks if isinstance(c, BasePruningCallback))
    assert pruner.summary["nominal_sparsity"] == pytest.approx(0.98, abs=1e-5)


def test_main_runs_fit_on_the_offline_config(tmp_path: Path) -> None:
    config = small_config(ROOT / "examples" / "lenet5_digits.yaml", tmp_path, None)
    args = ["fit", "--config", str(config), "--trainer.fast_dev_run", "true"]
    assert main([*args, "--trainer.default_root_dir", str(tmp_path)]) == 0


def test_plain_lightning_fit_no_args_warning_and_one_log_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    config = small_config(ROOT / "examples" / "lenet5_digits.yaml", tmp_path, None)
    argv = ["lightning", "fit", "--config", str(config), "--trainer.max_steps", "1", "--trainer.max_epochs", "1",
            "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    assert main() == 0  # exactly what the console script runs
    assert not [w for w in recwarn if "args parameter" in str(w.message)]
    logs = tmp_path / "lightning_logs"
    assert (logs / "version_0" / "metrics.csv").is_file() and (logs / "version_0" / "pruning_summary.json").is_file()
    assert not (logs / "lightning_logs").exists()


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    config = small_config(ROOT / "examples" / "vgg19_cifar10.yaml", tmp_path, tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        cli_main(["fit", "--config", str(config), "--trainer.fast_dev_run", "true"])


@pytest.mark.parametrize("script", ["lightning", "lightning-panning"])
def test_console_scripts_help(script: str) -> None:
    exe = shutil.which(script) or str(Path(sys.executable).parent / script)
    if not Path(exe).exists():
        pytest.skip(f"{script} is not installed (pip install -e .)")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "fit" in result.stdout and "train-agent" in result.stdout
    result = subprocess.run([exe, "fit", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "--trainer.callbacks" in result.stdout


def test_train_agent_subcommand_is_wired() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train-agent", "--help"])
    assert exit_info.value.code == 0


def test_quickstart_runs_end_to_end() -> None:
    # CI budget: fewer epochs and rounds than the README's default run (15 epochs, 100 rounds)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--epochs", "2", "--rounds", "10"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout and "effective sparsity" in result.stdout
    assert "0.9800" in result.stdout
