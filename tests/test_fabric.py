"""FabricPanning: prune after ``fabric.setup``, keep sparse, carry the masks through ``fabric.save``/``fabric.load``."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric import Fabric
from torch import nn
from torch.utils.data import TensorDataset

from lightning_panning import Panning, get_pruner
from lightning_panning.core.batch import ClassificationLoss
from lightning_panning.fabric import FabricPanning
from test_sharded import LAUNCH_VARIABLES

ROOT = Path(__file__).resolve().parents[1]


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def dataset(seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(64, 8, generator=g), torch.arange(4).repeat(16))


def setup(fabric: Fabric) -> tuple[Any, Any]:
    model = net()
    return fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))


def train_steps(model: Any, optimizer: Any, steps: int = 3) -> None:
    x, y = dataset(1).tensors
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def assert_pruned_zero(model: Any, masks: dict[str, torch.Tensor]) -> None:
    params = dict(model.module.named_parameters())
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0, name


@pytest.fixture
def fabric() -> Fabric:
    return Fabric(accelerator="cpu", devices=1)


def test_prunes_like_the_engine_and_keeps_weights_zero_after_steps(fabric: Fabric) -> None:
    model, optimizer = setup(fabric)
    pruning = FabricPanning(target=0.9, rounds=5, verbose=False)
    masks = pruning.setup(fabric, model, optimizer, data=dataset())
    expected = Panning(rounds=5, progress=False, loss_fn=ClassificationLoss(200.0)).prune(net(), dataset(), 0.9)
    assert set(masks) == set(expected.masks)
    assert all(torch.equal(masks[n], expected.masks[n]) for n in masks)
    assert pruning.summary["world_size"] == 1 and pruning.summary["nominal_sparsity"] == pytest.approx(0.9, abs=1e-3)
    train_steps(model, optimizer)
    assert_pruned_zero(model, masks)
    params = dict(model.module.named_parameters())
    kept = torch.cat([params[n][m] for n, m in masks.items()])
    assert torch.count_nonzero(kept) == kept.numel()  # the kept weights train


def test_save_and_load_resume_without_pruning_again(fabric: Fabric, tmp_path: Path) -> None:
    model, optimizer = setup(fabric)
    pruning = FabricPanning(target=0.8, method="snip", verbose=False)
    masks = pruning.setup(fabric, model, [optimizer], data=dataset())
    train_steps(model, optimizer)
    fabric.save(tmp_path / "ckpt", {"model": model, "optimizer": optimizer, "pruning": pruning})

    model2, optimizer2 = setup(fabric)  # dense again, other masks would come from other data
    resumed = FabricPanning(target=0.8, method="snip", verbose=False)
    fabric.load(tmp_path / "ckpt", {"model": model2, "optimizer": optimizer2, "pruning": resumed})
    loaded = resumed.setup(fabric, model2, [optimizer2], data=dataset(seed=7))
    assert resumed.result is None  # not pruned again
    assert all(torch.equal(loaded[n], masks[n]) for n in masks)
    assert resumed.summary == pruning.summary
    train_steps(model2, optimizer2)
    assert_pruned_zero(model2, masks)


def test_load_after_setup_reinstalls_the_loaded_masks(fabric: Fabric, tmp_path: Path) -> None:
    model, optimizer = setup(fabric)
    first = FabricPanning(target=0.8, method="random", verbose=False)
    masks = first.setup(fabric, model, [optimizer], data=dataset())
    fabric.save(tmp_path / "ckpt", {"pruning": first})

    model2, optimizer2 = setup(fabric)
    other = FabricPanning(target=0.8, method="random", verbose=False)
    other_masks = other.setup(fabric, model2, [optimizer2], data=dataset())
    with torch.no_grad():
        for p in model2.parameters():
            p.fill_(1.0)
    fabric.load(tmp_path / "ckpt", {"pruning": other})
    assert all(torch.equal(other.masks[n], masks[n]) for n in masks)  # type: ignore[index]
    assert other_masks is not other.masks
    train_steps(model2, optimizer2)
    assert_pruned_zero(model2, masks)


def test_loading_masks_made_with_other_settings_is_an_error(fabric: Fabric, tmp_path: Path) -> None:
    model, optimizer = setup(fabric)
    pruning = FabricPanning(target=0.8, method="snip", verbose=False)
    pruning.setup(fabric, model, [optimizer], data=dataset())
    fabric.save(tmp_path / "ckpt", {"pruning": pruning})
    with pytest.raises(ValueError, match=r"`target` is 0.8 in the checkpoint but 0.5 here"):
        fabric.load(tmp_path / "ckpt", {"pruning": FabricPanning(target=0.5, method="snip")})


def test_masks_that_do_not_fit_the_model_are_an_error(fabric: Fabric, tmp_path: Path) -> None:
    model, optimizer = setup(fabric)
    pruning = FabricPanning(target=0.8, method="magnitude", verbose=False)
    pruning.setup(fabric, model, [optimizer])
    fabric.save(tmp_path / "ckpt", {"pruning": pruning})
    other = fabric.setup(nn.Sequential(nn.Linear(8, 3)))
    resumed = FabricPanning(target=0.8, method="magnitude", verbose=False)
    fabric.load(tmp_path / "ckpt", {"pruning": resumed})
    with pytest.raises(ValueError, match=r"FabricPanning: the pruning masks do not fit Sequential"):
        resumed.setup(fabric, other)


def test_bf16_true_model_is_scored_as_its_float32_twin() -> None:
    fabric = Fabric(accelerator="cpu", devices=1, precision="bf16-true")
    with fabric.init_module():
        model = net()
    model, optimizer = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert model.module[0].weight.dtype == torch.bfloat16
    twin = copy.deepcopy(model.module).float()  # the same bf16 weights, held in float32
    masks = FabricPanning(target=0.9, method="snip", verbose=False).setup(fabric, model, optimizer, data=dataset())
    expected = get_pruner("snip", progress=False, loss_fn=ClassificationLoss(200.0)).prune(twin, dataset(), 0.9)
    assert all(torch.equal(masks[n], expected.masks[n]) for n in expected.masks)
    assert model.module[0].weight.dtype == torch.bfloat16  # cast back
    train_steps(model, optimizer)
    assert_pruned_zero(model, masks)


def test_data_methods_without_data_name_the_fix(fabric: Fabric) -> None:
    model, optimizer = setup(fabric)
    with pytest.raises(ValueError, match=r"need data, but `data` is None"):
        FabricPanning(target=0.8, method="snip").setup(fabric, model, [optimizer])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": 1.5}, r"target"),
        ({"method": "nope"}, r"`method` must be one of .* got 'nope'"),
        ({"loss": "auto"}, r"`loss` must be 'classification' or a callable .* got 'auto'"),
        ({"rounds": 0}, r"`rounds`"),
        ({"verbose": 1}, r"`verbose` must be True or False, got 1"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FabricPanning(**kwargs)


def setup_two_layer(fabric: Fabric) -> tuple[Any, Any]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    return fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))


def _env() -> dict[str, str]:
    """This environment for a child that launches its own ranks: our sources, no rendezvous left by other tests."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


RANK_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from lightning.fabric import Fabric
    from lightning_panning.fabric import FabricPanning

    out, same = sys.argv[1], sys.argv[2] == "same"
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp")
    fabric.launch()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    model, optimizer = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    g = torch.Generator().manual_seed(100 + (0 if same else fabric.global_rank))
    data = TensorDataset(torch.randn(64, 8, generator=g), torch.arange(4).repeat(16))
    pruning = FabricPanning(target=0.9, method="snip", verbose=False)
    masks = pruning.setup(fabric, model, [optimizer], data=data)
    x, y = data.tensors
    for _ in range(3):
        optimizer.zero_grad()
        fabric.backward(nn.functional.cross_entropy(model(x), y))
        optimizer.step()
    weights = {n: p.detach().clone() for n, p in model.module.named_parameters()}
    torch.save({"masks": masks, "weights": weights}, f"{out}/rank{fabric.global_rank}.pt")
    """
)


def run_ranks(tmp_path: Path, data: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path), data], capture_output=True, text=True, timeout=600,
        env={**_env(), "OMP_NUM_THREADS": "1"},
    )


def test_two_processes_share_the_scoring_and_end_with_one_process_masks(tmp_path: Path) -> None:
    """Each rank scores its half of the same set (one chunk each); the masks are one process's with those chunks."""
    result = run_ranks(tmp_path, "same")
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    alone = FabricPanning(target=0.9, method="snip", micro_batch=32, verbose=False)
    fabric = Fabric(accelerator="cpu", devices=1)
    model, optimizer = setup_two_layer(fabric)
    g = torch.Generator().manual_seed(100)
    data = TensorDataset(torch.randn(64, 8, generator=g), torch.arange(4).repeat(16))
    own = alone.setup(fabric, model, [optimizer], data=data)
    for name, mask in rank0["masks"].items():
        assert torch.equal(mask, rank1["masks"][name]), name  # identical on both ranks
        assert torch.equal(mask, own[name]), name  # and one process's with the same two chunks of 32
        assert torch.count_nonzero(rank0["weights"][name][~mask]) == 0
        assert torch.count_nonzero(rank1["weights"][name][~mask]) == 0


def test_ranks_given_different_scoring_data_is_an_error_naming_them(tmp_path: Path) -> None:
    result = run_ranks(tmp_path, "different")
    assert result.returncode != 0
    assert "rank" in result.stderr and "scoring set" in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("devices", [1, 2])
def test_example_runs_and_resumes(devices: int, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fabric_digits.py"), "--devices", str(devices), "--rounds", "3",
         "--checkpoint", str(tmp_path / "digits.ckpt")],
        capture_output=True, text=True, timeout=600, env={**_env(), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"on {devices} process(es)" in out
    assert "masks identical on every rank: True" in out
    assert "resumed masks equal the saved ones: True; pruned again: False" in out
    assert out.count("pruned weights still zero after training: 1.0000") == 2
