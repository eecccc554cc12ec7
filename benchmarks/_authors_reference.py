"""A *reference re-implementation* of the per-round structure of the authors' pruning code, for benchmarks only.

This is NOT the authors' code (it is not available here). It re-creates, from the description in METHOD.md
("Differences in the authors' code") and the public GraSP / Synaptic-Flow / FORCE code it is built on, how their
rounds are computed, so that :mod:`benchmarks.prune_speed` can time it side by side with ``lightning_panning`` on
the same machine in the same run. What it reproduces:

* **Panning** (:class:`ReferencePanning`, ``method="panning"``), every round:
  - a ``copy.deepcopy`` of the network for scoring;
  - SNIP on the *unmasked* network with its own forward/backward (logits / 200, train mode), ``S = ∂L/∂w ⊙ w``;
  - GraSP on the *unmasked* network the GraSP-code way, on the caller's network in train mode (so its BatchNorm
    running statistics change — the authors' defect, reproduced): first pass ``grad_w`` = sum of the gradients of
    the two half batches (no graph); second pass, per half, forward + ``autograd.grad(create_graph=True)``,
    ``z = Σ grad_w · grad_f``, ``z.backward(retain_graph=True)``; ``S = -w ⊙ Hg``. The last ``z`` is kept until
    the next round has built its own graph (the retained double-backward graph that makes their Panning peak
    at ~5 GB on VGG19);
  - SynFlow on the masked network ``c ⊙ w`` the Synaptic-Flow way: ``state_dict`` ``abs_()`` with the signs saved
    (``linearize``) and restored afterwards (``nonlinearize``), eval mode, an all-ones input, float32 (float64 only
    when the path sum leaves float32's safe band), scores ``∂R/∂(c ⊙ w) ⊙ |w|`` (removed weights keep a score);
  - fusion ``Σ_k p_k |S_k − μ_k| / σ_k`` on the signed saliencies with Table 3's weights by the round's sparsity,
    over the concatenation of all prunable weights;
  - the new mask from ``torch.topk`` over the concatenated fused scores.
* **Iterative SynFlow** (``method="synflow"``, Synaptic-Flow style): masked scores ``|∂R/∂(c ⊙ w) ⊙ (c ⊙ w)|`` (a
  removed weight scores 0 and never returns), ``linearize``/``nonlinearize`` every round, top-k.
* **Iterative SNIP, FORCE style** (``method="snip"``): a deep copy per round with the mask applied to its weights,
  one forward/backward at ``c ⊙ w`` (logits / 200, train mode, the same loss as ``lightning_panning``'s default so
  the masks are comparable), scores ``|∂L/∂(c ⊙ w) ⊙ w|`` (FORCE's resurrection), top-k.

Same schedule (``ρ_i = 1 − (1 − ρ)^{i/T}``) and keep count (``floor(m (1 − ρ_i) + 1e-6)``) as the package, so the
masks can be compared with ``make_pruner("panning", masked_data_scores=False, normalization="authors")``,
``make_pruner("synflow")`` and ``make_pruner("iterative_snip")``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TABLE3 = ((0.80, (0.2, 0.5, 0.3)), (0.90, (0.2, 0.4, 0.4)), (0.98, (0.2, 0.3, 0.5)), (0.99, (0.4, 0.2, 0.4)),
          (1.00, (0.5, 0.0, 0.5)))  # (bound, (SynFlow, SNIP, GraSP))
FLOAT32_SAFE_BAND = (1e-30, 1e30)


def table3(sparsity: float) -> tuple[float, float, float]:
    for bound, weights in TABLE3:
        if sparsity <= bound + 1e-12:
            return weights
    return TABLE3[-1][1]


def prunable_names(model: nn.Module) -> list[str]:
    return [f"{mn}.weight" for mn, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def linearize(model: nn.Module) -> dict[str, Tensor]:
    """Synaptic-Flow: replace every state_dict entry by its absolute value, return the signs."""
    signs = {}
    with torch.no_grad():
        for name, param in model.state_dict().items():
            signs[name] = torch.sign(param)
            param.abs_()
    return signs


def nonlinearize(model: nn.Module, signs: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for name, param in model.state_dict().items():
            param.mul_(signs[name])


def authors_normalize(scores: list[Tensor]) -> Tensor:
    flat = torch.cat([s.reshape(-1) for s in scores])
    return (flat - flat.mean()).abs() / flat.std()


class ReferencePanning:
    """One reference pruning run, advanced a round at a time with :meth:`step` (``masks`` holds the current mask)."""

    def __init__(self, model: nn.Module, batch: tuple[Tensor, Tensor], target: float, rounds: int = 100,
                 method: str = "panning", temperature: float = 200.0) -> None:
        if method not in ("panning", "synflow", "snip"):
            raise ValueError(method)
        self.model = model
        self.x, self.y = batch
        self.method = method
        self.temperature = temperature
        self.names = prunable_names(model)
        self.total = sum(model.get_parameter(n).numel() for n in self.names)
        self.schedule = [1.0 - (1.0 - target) ** (i / rounds) for i in range(1, rounds + 1)]
        self.schedule[-1] = target
        self.round = 0
        self.masks: dict[str, Tensor] | None = None
        self._retained: Any = None  # the previous round's double-backward graph (authors' retain_graph=True)
        if method == "synflow":  # Synaptic-Flow keeps one model with mask buffers; here: a copy and w_orig
            self.net = copy.deepcopy(model)
            self.w_orig = {n: self.net.get_parameter(n).detach().clone() for n in self.names}

    # -- metrics -------------------------------------------------------------------------------------------------
    def _loss(self, net: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(net(x) / self.temperature, y)

    def _snip(self, net: nn.Module, weights: dict[str, Tensor]) -> list[Tensor]:
        net.train()
        net.zero_grad()
        self._loss(net, self.x, self.y).backward()
        return [net.get_parameter(n).grad * weights[n] for n in self.names]

    def _grasp(self) -> list[Tensor]:
        net = self.model  # the caller's network, train mode: BatchNorm statistics change (their defect)
        net.train()
        params = [net.get_parameter(n) for n in self.names]
        half = self.x.shape[0] // 2
        splits = [(self.x[:half], self.y[:half]), (self.x[half:], self.y[half:])]
        grad_w: list[Tensor] | None = None
        for x, y in splits:  # first pass: no graph
            g = torch.autograd.grad(self._loss(net, x, y), params)
            grad_w = list(g) if grad_w is None else [a + b for a, b in zip(grad_w, g, strict=True)]
        assert grad_w is not None
        net.zero_grad()
        z: Tensor | None = None
        for x, y in splits:  # second pass: Hg accumulated into .grad
            grad_f = torch.autograd.grad(self._loss(net, x, y), params, create_graph=True)
            z = sum((gw * gf).sum() for gw, gf in zip(grad_w, grad_f, strict=True))  # type: ignore[assignment]
            assert z is not None
            z.backward(retain_graph=True)
        scores = [-p.detach() * p.grad for p in params]
        self._retained = z  # keeps this round's graph alive into the next round
        net.zero_grad()
        return scores

    def _synflow(self, net: nn.Module, resurrect: bool) -> list[Tensor]:
        """SynFlow on ``net`` whose prunable weights already hold ``c ⊙ w``."""
        net.eval()
        signs = linearize(net)
        x = torch.ones((1, *self.x.shape[1:]), device=self.x.device)
        net.zero_grad()
        r = net(x).sum()
        if not FLOAT32_SAFE_BAND[0] <= abs(float(r.detach())) <= FLOAT32_SAFE_BAND[1]:
            net.double()
            net.zero_grad()
            r = net(x.double()).sum()
        r.backward()
        if resurrect:
            scores = [net.get_parameter(n).grad * self._abs_w[n].to(r.dtype) for n in self.names]
        else:
            scores = [(net.get_parameter(n).grad * net.get_parameter(n)).detach().abs() for n in self.names]
        net.float()
        nonlinearize(net, signs)
        return scores

    # -- a round -------------------------------------------------------------------------------------------------
    def step(self) -> dict[str, Tensor]:
        sparsity = self.schedule[self.round]
        keep = math.floor(self.total * (1.0 - sparsity) + 1e-6)
        if self.method == "panning":
            net = copy.deepcopy(self.model)
            weights = {n: net.get_parameter(n).detach().clone() for n in self.names}
            self._abs_w = {n: w.abs() for n, w in weights.items()}
            snip = self._snip(net, weights)
            grasp = self._grasp()
            with torch.no_grad():
                if self.masks is not None:
                    for n in self.names:
                        net.get_parameter(n).mul_(self.masks[n])
            synflow = self._synflow(net, resurrect=True)
            p_syn, p_snip, p_grasp = table3(sparsity)
            fused = (p_syn * authors_normalize(synflow).float() + p_snip * authors_normalize(snip)
                     + p_grasp * authors_normalize(grasp))
            del net, snip, grasp, synflow
        elif self.method == "synflow":
            with torch.no_grad():
                for n in self.names:
                    w = self.w_orig[n] if self.masks is None else self.w_orig[n] * self.masks[n]
                    self.net.get_parameter(n).copy_(w)
            fused = torch.cat([s.reshape(-1) for s in self._synflow(self.net, resurrect=False)])
        else:  # FORCE-style iterative SNIP
            net = copy.deepcopy(self.model)
            weights = {n: net.get_parameter(n).detach().clone() for n in self.names}
            with torch.no_grad():
                if self.masks is not None:
                    for n in self.names:
                        net.get_parameter(n).mul_(self.masks[n])
            fused = torch.cat([s.reshape(-1).abs() for s in self._snip(net, weights)])
            del net
        flat = torch.zeros(fused.numel(), dtype=torch.bool, device=fused.device)
        flat[torch.topk(fused, keep, sorted=False).indices] = True
        masks, offset = {}, 0
        for n in self.names:
            shape = self.model.get_parameter(n).shape
            size = math.prod(shape)
            masks[n] = flat[offset:offset + size].view(shape)
            offset += size
        self.masks = masks
        self.round += 1
        return masks
