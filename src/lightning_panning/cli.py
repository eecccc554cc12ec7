"""Command line: a LightningCLI for ``fit/validate/test/predict`` plus ``train-agent`` for RLPanning.

Installed as two console scripts, ``lightning`` and ``lightning-panning``::

    lightning fit --config examples/vgg19_cifar10.yaml
    lightning-panning fit --config examples/lenet5_mnist.yaml --data.init_args.data_dir ../shared/datasets
    lightning-panning train-agent --total-steps 200000 --out runs/agent

Any LightningModule and LightningDataModule can be given by ``class_path``; the pruning callbacks are configured
under ``trainer.callbacks``. Logging defaults to a CSV logger in Lightning's own layout,
``<default_root_dir>/lightning_logs/version_N/``; Weights & Biases is one line of config
(``trainer.logger: {class_path: lightning.pytorch.loggers.WandbLogger, init_args: {project: x}}``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

__all__ = ["PanningCLI", "cli_main", "main"]

_EXTRA_COMMANDS = {"train-agent": "train (or resume) the RLPanning TD3 agent; see `train-agent --help`"}


class PanningCLI(LightningCLI):
    """LightningCLI with subclass mode for models and data, CSV logging by default and the config saved per run."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"description": "lightning-panning: prune before training, then train."})
        super().__init__(args=list(args) if args is not None else None, run=run, **kwargs)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer; where the config leaves Lightning's default logger, a CSV logger in the same directory.

        Lightning's default is a TensorBoard logger in ``<default_root_dir>/lightning_logs/version_N``; a CSV logger
        there needs no TensorBoard to read. Any logger the config names (or ``logger: false``) is kept as it is.
        """
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True) and "logger" not in kwargs:
            kwargs["logger"] = CSVLogger(save_dir=config.get("default_root_dir") or os.getcwd())
        return super().instantiate_trainer(**kwargs)


def cli_main(args: Sequence[str] | None = None, run: bool = True) -> PanningCLI:
    """Build (and by default run) the CLI; returns it so tests can inspect the trainer, model and callbacks.

    Args:
        args: the arguments without the program name; ``None`` reads ``sys.argv`` (as a console script does).
        run: run the subcommand.
    """
    return PanningCLI(args=args, run=run)


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning`` and ``lightning-panning``.

    Args:
        args: command-line arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "train-agent":
        from lightning_panning.rl.train import main as train_agent

        return int(train_agent(argv[1:]) or 0)
    if argv and argv[0] in ("-h", "--help"):
        extra = "\n".join(f"  {name:<12} {text}" for name, text in _EXTRA_COMMANDS.items())
        sys.stdout.write(f"Extra subcommands of lightning-panning:\n{extra}\n\n")
    # from the console script, LightningCLI reads sys.argv itself (passing it as `args` too makes it warn)
    cli_main(None if args is None else argv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
