"""Data-parallel scoring (core/distributed.py): two CPU processes (gloo) against one process with the same chunks.

One ``torch.multiprocessing`` spawn runs every two-process case in turn (each rank writes what it saw); the tests
compare the ranks with each other and with single-process runs in this process.
"""

from __future__ import annotations

import datetime
import math
import os
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from lightning_panning.core import Panning, prune
from lightning_panning.core.distributed import DataParallel, mask_digest
from lightning_panning.core.scorers import Needs, Scorer, ScoringContext, ScoringSet
from lightning_panning.rl.agent import rl_prune
from lightning_panning.rl.episode import empty_loss

N, CLASSES, PER_CLASS = 2, 4, 6  # ranks; the scoring set is 24 samples, ordered by class
SET = CLASSES * PER_CLASS


# ---------------------------------------------------------------------------------------------------------------------
# module-level pieces (the spawned processes import this module)


def net(width: int = 16) -> nn.Module:
    """Conv + train-mode BatchNorm + dropout: chunking and dropout seeding both show in the scores."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * 6 * 6, width),
        nn.ReLU(), nn.Linear(width, CLASSES),
    )


def data(seed: int = 0, per_class: int = PER_CLASS) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(CLASSES).repeat_interleave(per_class)
    return torch.randn(CLASSES * per_class, 1, 8, 8, generator=g), y


class CountingLoss:
    """Cross-entropy (mean over the chunk) that counts the samples it is given."""

    def __init__(self) -> None:
        self.samples = 0

    def __call__(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        self.samples += int(x.shape[0])
        return F.cross_entropy(model(x) / 5.0, y)


class EqualWeights:
    """A policy with SB3's ``predict``: the same action every round."""

    def predict(self, obs: Any, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return np.zeros(3, dtype=np.float32), None


class OutputSensitivity(Scorer):
    """A scorer with passes of its own: chunk-weighted sums, then ``ctx.reduce``."""

    needs = Needs.DATA | Needs.OWN_PASSES

    def saliency(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        leaves = {n: t.detach().requires_grad_(True) for n, t in ctx.masked.items()}
        total = [torch.zeros_like(t) for t in leaves.values()]
        for chunk, share in zip(ctx.chunks, ctx.chunk_shares(), strict=True):
            out = ctx.forward(lambda m, b: m(b[0]).pow(2).mean(), chunk, leaves)
            for acc, g in zip(total, torch.autograd.grad(out, list(leaves.values())), strict=True):
                acc.add_(g, alpha=share)
        summed = ctx.reduce(total)
        return {n: s * ctx.theta[n] for n, s in zip(leaves, summed, strict=True)}


def case_run(kind: str, rank: int, group: Any = "auto", per_class: int = PER_CLASS) -> dict[str, Any]:
    """One pruning run of ``kind`` in this process (``group``: the process_group argument; ``per_class``: the set)."""
    micro = {"default": None, "micro": 4}
    loss = CountingLoss()
    if kind in micro:
        result = Panning(rounds=3, progress=False, loss_fn=loss, micro_batch=micro[kind]).prune(
            net(), data(per_class=per_class), 0.9, process_group=group
        )
        return {"masks": result.masks, "scoring": result.scoring, "samples": loss.samples,
                "losses": [r.loss for r in result.history]}
    if kind == "micro_half":  # one process with the chunks two ranks take without micro_batch
        result = Panning(rounds=3, progress=False, loss_fn=loss, micro_batch=SET // N).prune(
            net(), data(), 0.9, process_group=None
        )
        return {"masks": result.masks, "scoring": result.scoring, "samples": loss.samples,
                "losses": [r.loss for r in result.history]}
    if kind == "rl":
        rl = rl_prune(net(), data(per_class=per_class), 0.9, EqualWeights(), rounds=3, loss_fn=loss, process_group=group,
                      **({} if group == "auto" else {"micro_batch": SET // N}))
        return {"masks": rl.masks, "samples": loss.samples, "scoring": rl.scoring,
                "observations": [[float(s["reward"]), float(s["sparse_loss"]), float(s["sparse_grad_norm"])]
                                 for s in rl.steps]}
    if kind == "empty_loss":  # the reward benchmark's loss of the empty network, one pass per chunk
        session = Panning(rounds=2, progress=False, loss_fn=loss, micro_batch=4).start(
            net(), data(), 0.9, process_group=group
        )
        return {"value": empty_loss(session), "samples": loss.samples}
    if kind == "custom":
        masks = prune(net(), data(), 0.9, method=Panning([OutputSensitivity()], rounds=2, progress=False),
                      micro_batch=4, process_group=group)
        return {"masks": masks}
    if kind == "px":  # a built-in scorer with passes of its own (PX): chunk sums, then ctx.reduce
        return {"masks": prune(net(), data(), 0.9, method="px", rounds=2, micro_batch=4, process_group=group,
                               progress=False)}
    raise ValueError(kind)


def _error(fn: Any) -> str:
    try:
        fn()
    except (ValueError, RuntimeError) as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def _worker(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=N,
                            timeout=datetime.timedelta(seconds=60))
    try:
        found: dict[str, Any] = {kind: case_run(kind, rank)
                                 for kind in ("default", "micro", "rl", "custom", "empty_loss", "px")}
        found["alone"] = case_run("default", rank, group=None)["scoring"]
        found["explicit_group"] = case_run("default", rank, group=dist.group.WORLD)["masks"]
        found["mask_mismatch"] = _error(lambda: Panning(["random"], rounds=1, seed=rank, progress=False).prune(
            net(), data(), 0.5))
        found["model_mismatch"] = _error(lambda: prune(net(16 + rank), data(), 0.9, rounds=1, progress=False))
        found["data_mismatch"] = _error(lambda: prune(net(), data(seed=rank), 0.9, rounds=1, progress=False))
        found["small_set"] = _error(lambda: prune(net(), data(per_class=1), 0.9, rounds=1, micro_batch=8,
                                                  progress=False))
        parallel = DataParallel.resolve("auto")
        assert parallel is not None
        found["direct_hash"] = _error(lambda: parallel.check_same_masks({"w": torch.tensor([True, rank == 0])}))
        torch.save(found, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "store"), str(out)), nprocs=N, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(N)]


@pytest.fixture(scope="module")
def single() -> dict[str, dict[str, Any]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {"micro_half": case_run("micro_half", 0), "micro": case_run("micro", 0, group=None),
                "rl": case_run("rl", 0, group=None), "custom": case_run("custom", 0, group=None),
                "px": case_run("px", 0, group=None),
                "empty_loss": case_run("empty_loss", 0, group=None),
                # one process on a rank's shard (12 samples) with the rank's chunking: the work one rank should do
                **{f"{kind}_shard": case_run(kind, 0, group=None if kind != "rl" else "auto", per_class=PER_CLASS // N)
                   for kind in ("default", "micro", "rl")}}
    finally:
        torch.set_num_threads(threads)


def agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    same = sum(int((a[n] == b[n]).sum()) for n in a)
    return same / sum(m.numel() for m in a.values())


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[n], b[n]) for n in a)


# ---------------------------------------------------------------------------------------------------------------------
# tests


def test_every_rank_ends_with_the_same_masks(ranks: list[dict[str, Any]]) -> None:
    for kind in ("default", "micro", "rl", "custom", "px"):
        assert same(ranks[0][kind]["masks"], ranks[1][kind]["masks"]), kind
    assert mask_digest(ranks[0]["default"]["masks"]) == mask_digest(ranks[1]["default"]["masks"])
    assert same(ranks[0]["explicit_group"], ranks[0]["default"]["masks"])  # process_group=WORLD is "auto"'s group


def test_two_ranks_without_micro_batch_equal_one_process_with_half_chunks(
    ranks: list[dict[str, Any]], single: dict[str, dict[str, Any]]
) -> None:
    """One chunk per rank = one process with ``micro_batch=n/2`` (train-mode BatchNorm and dropout included)."""
    ref = single["micro_half"]
    assert same(ranks[0]["default"]["masks"], ref["masks"])
    assert ranks[0]["default"]["losses"] == pytest.approx(ref["losses"], rel=1e-6)


def test_two_ranks_with_micro_batch_agree_with_one_process_with_the_same_chunks(
    ranks: list[dict[str, Any]], single: dict[str, dict[str, Any]]
) -> None:
    """The ranks take the chunks in turn: the masks equal one process's up to summation order (near ties)."""
    for kind in ("micro", "custom"):
        a, b = ranks[0][kind]["masks"], single[kind]["masks"]
        assert agreement(a, b) >= 0.995, kind
        assert sum(int(m.sum()) for m in a.values()) == sum(int(m.sum()) for m in b.values())


def test_rlpanning_observations_are_reduced_over_the_ranks(
    ranks: list[dict[str, Any]], single: dict[str, dict[str, Any]]
) -> None:
    assert ranks[0]["rl"]["observations"] == ranks[1]["rl"]["observations"]
    assert np.allclose(ranks[0]["rl"]["observations"], single["rl"]["observations"], rtol=1e-5)
    assert agreement(ranks[0]["rl"]["masks"], single["rl"]["masks"]) >= 0.995


def test_empty_network_loss_is_reduced_over_the_ranks(
    ranks: list[dict[str, Any]], single: dict[str, dict[str, Any]]
) -> None:
    assert ranks[0]["empty_loss"]["value"] == ranks[1]["empty_loss"]["value"]
    assert ranks[0]["empty_loss"]["value"] == pytest.approx(single["empty_loss"]["value"], rel=1e-9)
    assert [r["empty_loss"]["samples"] for r in ranks] == [12, 12] and single["empty_loss"]["samples"] == SET


def test_each_rank_scores_only_its_shard(ranks: list[dict[str, Any]], single: dict[str, dict[str, Any]]) -> None:
    for kind in ("default", "micro", "rl"):
        for rank in range(N):
            # every data pass covers the rank's own chunks only: a rank passes the samples one process passes when
            # its shard is the whole set, chunked as the rank chunks it (the passes of a round depend on the chunks)
            assert ranks[rank][kind]["samples"] == single[f"{kind}_shard"]["samples"], (kind, rank)
        assert ranks[0][kind]["samples"] < single[kind if kind != "default" else "micro_half"]["samples"]
    scoring = ranks[1]["micro"]["scoring"]
    assert scoring["world_size"] == N and scoring["scoring_set_size"] == SET and scoring["micro_batch"] == 4
    assert scoring["shard_sizes"] == [12, 12]  # chunks 0, 2, 4 and 1, 3, 5 of 4 samples
    assert len(scoring["rank_seconds"]) == N and all(s > 0 for s in scoring["rank_seconds"])
    assert ranks[0]["default"]["scoring"]["shard_sizes"] == [SET // N] * N


def test_process_group_none_prunes_alone(ranks: list[dict[str, Any]]) -> None:
    assert ranks[0]["alone"]["world_size"] == 1 and ranks[0]["alone"]["shard_sizes"] == [SET]


def test_differences_between_ranks_are_errors_naming_them(ranks: list[dict[str, Any]]) -> None:
    for rank in range(N):
        found = ranks[rank]
        assert found["mask_mismatch"].startswith("RuntimeError: The ranks ended with different masks: ranks [0]")
        assert "ranks [1] hold masks" in found["mask_mismatch"]
        assert "ranks [0] hold masks" in found["direct_hash"] and "ranks [1] hold masks" in found["direct_hash"]
        assert found["model_mismatch"].startswith("ValueError: The ranks disagree on the model to prune: '5.weight' has "
                                                  "shape (16, 144) on one rank and (17, 144) on the other (rank 0 vs "
                                                  "rank 1)")
        assert found["data_mismatch"].startswith("ValueError: The ranks drew different scoring sets: rank 0 has 24 "
                                                 "samples")
        assert "ranks [1]" in found["data_mismatch"]
        assert "4 samples (1 per class × 4 classes)" in found["small_set"] and "for 2 ranks" in found["small_set"]
        assert "`micro_batch` of at most 2" in found["small_set"]


# ---------------------------------------------------------------------------------------------------------------------
# single-process behaviour of the pieces


def test_process_group_argument_is_validated() -> None:
    assert DataParallel.resolve("auto") is None and DataParallel.resolve(None) is None  # not initialised here
    with pytest.raises(ValueError, match="`process_group` must be 'auto', None or a torch.distributed.ProcessGroup, "
                                         "got 'world'"):
        prune(net(), data(), 0.9, rounds=1, progress=False, process_group="world")


def test_one_process_result_records_its_layout() -> None:
    result = Panning(rounds=2, progress=False, micro_batch=5).prune(net(), data(), 0.9)
    assert result.scoring["world_size"] == 1 and result.scoring["scoring_set_size"] == SET
    assert result.scoring["micro_batch"] == 5 and result.scoring["shard_sizes"] == [SET]
    assert result.scoring["rank_seconds"] == [result.seconds]
    free = Panning(["synflow"], rounds=1, progress=False).prune(net(), data(), 0.9)
    assert free.scoring["scoring_set_size"] is None and free.scoring["shard_sizes"] is None  # data-free: replicated


def test_dropout_of_a_chunk_does_not_depend_on_the_chunks_scored_before_it() -> None:
    """Chunk ``i`` is seeded by its index: scoring chunks 1 and 3 alone gives the same sums as inside all four."""
    from lightning_panning.core.params import prunable_parameters

    model, batch = net(), data()
    params = prunable_parameters(model)
    whole = ScoringSet.split(batch, 6)
    odd = ScoringSet([whole.chunks[1], whole.chunks[3]], reduce=lambda ts: ts, size=SET, indices=[1, 3])
    even = ScoringSet([whole.chunks[0], whole.chunks[2]], reduce=lambda ts: ts, size=SET, indices=[0, 2])
    g_odd = ScoringContext(model, params, batch=odd).grad
    g_even = ScoringContext(model, params, batch=even).grad
    g_all = ScoringContext(model, params, batch=whole).grad
    for n in params:
        assert torch.allclose(g_odd[n] + g_even[n], g_all[n], rtol=1e-5, atol=1e-7), n
    assert not math.isclose(float(g_odd[next(iter(params))].abs().sum()), 0.0)


def test_mask_digest_depends_on_names_shapes_and_bits() -> None:
    m = {"a": torch.tensor([[True, False]])}
    assert mask_digest(m) != mask_digest({"b": m["a"]})
    assert mask_digest(m) != mask_digest({"a": m["a"].reshape(2, 1)})
    assert mask_digest(m) == mask_digest({"a": m["a"].clone()})



def test_a_strategy_with_several_processes_but_no_process_group_is_refused() -> None:
    from types import SimpleNamespace

    from lightning_panning.callbacks.base import scoring_process_group

    class XLAStrategy:  # a stand-in: several processes, no torch.distributed group
        pass

    assert scoring_process_group(SimpleNamespace(world_size=1, strategy=XLAStrategy())) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="The XLAStrategy runs 8 processes without a torch.distributed process group"):
        scoring_process_group(SimpleNamespace(world_size=8, strategy=XLAStrategy()))  # type: ignore[arg-type]


def test_a_loader_with_a_distributed_sampler_is_read_whole() -> None:
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from lightning_panning.callbacks.data import unsharded

    dataset = TensorDataset(*data())
    sharded = DataLoader(dataset, batch_size=5, sampler=DistributedSampler(dataset, num_replicas=2, rank=1,
                                                                           shuffle=False))
    assert sum(len(b[0]) for b in sharded) == SET // 2
    whole = unsharded(sharded)
    assert sum(len(b[0]) for b in whole) == SET and whole.batch_size == 5
    plain = DataLoader(dataset, batch_size=5)
    assert unsharded(plain) is plain and unsharded(None) is None


def test_summary_line_names_the_ranks_and_their_shares() -> None:
    from lightning_panning.callbacks.reporting import summary_line

    summary = {"method": "panning", "total_weights": 100, "kept_weights": 10, "nominal_sparsity": 0.9,
               "effective_sparsity": None, "pruning_seconds": 0.5, "world_size": 2, "shard_sizes": [50, 50]}
    assert summary_line(summary).endswith("in 0.50s on 2 ranks (samples per rank [50, 50]).")
    assert summary_line({**summary, "world_size": 1}).endswith("in 0.50s.")


def test_px_on_two_ranks_agrees_with_one_process_with_the_same_chunks(
    ranks: list[dict[str, Any]], single: dict[str, dict[str, Any]]
) -> None:
    """PX sums its gradients over the chunks and then over the ranks: the masks of one process with the same chunks,
    up to summation order (near-tied weights may swap)."""
    assert agreement(ranks[0]["px"]["masks"], single["px"]["masks"]) >= 0.99
