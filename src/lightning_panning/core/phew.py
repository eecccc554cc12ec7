"""PHEW (Patil & Dovrolis, ICML 2021): paths of high edge weight, built by biased random walks, on any traced network.

PHEW is data-free. It keeps the weights that biased random walks from the input to the output cross, until the keep
count is reached. Walks alternate: forward from the input units in turn (round robin), backward from the output
units in turn. Each step goes from a unit to a unit of the next layer with probability proportional to the L1 norm
of the kernel that joins them (``Σ |W[o, c, ...]|``), then to one position of that kernel with probability
proportional to ``|w|``. The walk keeps that weight.

**The layer graph** (:func:`layer_graph`) comes from one traced forward pass, with the one-sample, data-free input
that SynFlow uses. Every ``Conv1d/2d/3d`` and ``Linear`` layer the forward pass calls is a node (a dense one is walked
through but keeps all its weights). Layer ``A`` feeds layer ``B`` when the autograd graph of ``B``'s input reaches
``A``'s output without passing through another layer. A unit (channel) ``c`` of ``A``'s output arrives as
channel ``c`` of ``B``'s input when their widths match: element-wise operations, normalisation, pooling and residual
sums leave channels in place. When ``B`` is a ``Linear`` layer whose width is ``S`` times ``A``'s, ``B`` reads ``A``'s
output flattened channel-first, and channel ``c`` arrives as one of the features ``c·S … c·S+S-1``, chosen
uniformly. Where several layers feed ``B`` (a residual sum), a backward walk chooses one uniformly; a forward walk
chooses uniformly among the layers that ``A`` feeds. Grouped and depthwise convolutions join only the units of one
group.

**Not supported** (the error names the layer and the cause): a layer input that combines two layers' outputs by
anything but a sum (attention's products, gates, concatenation); a weight that is not a ``Conv``/``Linear``
``weight`` (embeddings, ``nn.MultiheadAttention``'s packed projections, transposed convolutions); a layer called
more than once; widths that neither match nor flatten.

**Random draws.** They come from ``numpy.random.RandomState(seed)``, used as ``np.random.choice`` with ``p``, and
from ``random.Random(seed)``, used for the flattening and branch choices. The draws are made in the authors' order
(``PHEW/phew.py``), so a chain network (LeNet5, VGG) gives their masks exactly when their ``random`` and
``np.random`` are seeded with the same ``seed`` (``benchmarks/authors_parity.py``). Differences are listed in
``docs/differences.md``. The walks stop at exactly the keep count, not at the end of a walk, and the branch rule
for residual networks is generic, not their parameter-order rule.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from lightning_panning.core.functional import call_with, preserved_modes
from lightning_panning.core.inputs import ModelInput, model_input
from lightning_panning.core.probe import with_decoder_inputs

__all__ = ["INPUT", "LayerGraph", "PHEWError", "WalkLayer", "layer_graph", "phew_masks", "phew_order"]

#: Stands for the model input among a layer's predecessors.
INPUT = "<input>"
_WALK_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_JUNCTIONS = ("AddBackward", "SubBackward")  # autograd nodes that only sum their inputs
_SUPPORTED = (
    "PHEW supports networks of Conv1d/2d/3d and Linear layers joined by element-wise operations, normalisation, "
    "pooling, flattening and residual sums (no attention, gating or concatenation)"
)


class PHEWError(ValueError):
    """PHEW cannot walk this network; the message names the layer, the cause and what is supported."""


@dataclass
class WalkLayer:
    """One ``Conv``/``Linear`` layer of the walk graph.

    Attributes:
        module: qualified module name.
        param: qualified name of its weight (``None`` when it is not pruned: walked through, all weights kept).
        weight: ``|W|`` as a float32 numpy array of shape ``(C_out, C_in / groups, *kernel)``.
        groups: the convolution's groups (1 for ``Linear``).
        preds: ``[(layer index or INPUT, S)]``: the layers feeding this one; ``S = 1`` keeps channels in place,
            ``S > 1`` is a channel-first flattening (channel ``c`` becomes features ``c·S … c·S+S-1``).
        succs: ``[(layer index, S)]``: the layers this one feeds, the same way.
    """

    module: str
    param: str | None
    weight: np.ndarray
    groups: int
    preds: list[tuple[int | str, int]] = field(default_factory=list)
    succs: list[tuple[int, int]] = field(default_factory=list)

    @property
    def out_channels(self) -> int:
        """``C_out``."""
        return int(self.weight.shape[0])

    @property
    def in_channels(self) -> int:
        """``C_in`` (all groups)."""
        return int(self.weight.shape[1]) * self.groups


@dataclass
class LayerGraph:
    """The walk graph: layers in call order, the input units (sources) and the output units (sinks)."""

    layers: list[WalkLayer]

    @property
    def sources(self) -> list[int]:
        """Layers that read the model input (or nothing another layer made)."""
        return [i for i, layer in enumerate(self.layers) if not layer.preds or any(p == INPUT for p, _ in layer.preds)]

    @property
    def sinks(self) -> list[int]:
        """Layers whose output no other layer reads."""
        return [i for i, layer in enumerate(self.layers) if not layer.succs]


def _trace_input(model: nn.Module, example: Any, device: torch.device) -> ModelInput:
    """The one-sample call of ``forward``; floating-point tensors become ones that require grad (the input marker)."""
    sample = with_decoder_inputs(model, model_input(model, example).first_sample())

    def convert(t: Tensor) -> Tensor:
        if t.is_floating_point():
            return torch.ones(t.shape, dtype=t.dtype, device=device, requires_grad=True)
        return t.to(device).clone()

    return sample.map(convert)


def layer_graph(model: nn.Module, params: Mapping[str, Tensor], example: Any) -> LayerGraph:
    """Trace ``model`` once and return the walk graph of its ``Conv``/``Linear`` layers (the model is not modified).

    Args:
        model: the network.
        params: ``{name: tensor W_n}`` of the pruned weights, each the ``weight`` of a ``Conv*d`` or ``Linear``. PHEW
            reads their magnitudes.
        example: the input's layout (a tensor or batch ``(B, ...)``, a dict, a ModelInput); only the first sample's
            shape is used.

    Raises:
        PHEWError: naming the layer and the cause, when the network is outside what PHEW supports.
    """
    modules = dict(model.named_modules())
    owner: dict[str, str] = {}
    for name in params:
        module_name, _, local = name.rpartition(".")
        module = modules.get(module_name)
        if local != "weight" or not isinstance(module, _WALK_TYPES):
            kind = type(module).__name__ if module is not None else "no module"
            raise PHEWError(
                f"PHEW cannot prune {name!r} ({kind}): its walks cross Conv1d/2d/3d and Linear weights only. Leave it "
                f"dense (`exclude={name!r}`) or choose another method. {_SUPPORTED}."
            )
        owner[module_name] = name
    walk_modules = {n: m for n, m in modules.items() if isinstance(m, _WALK_TYPES)}
    opaque = {  # modules with weight matrices PHEW cannot walk through: an error if a walked layer reads them
        n: m for n, m in modules.items()
        if n not in walk_modules and any(p.dim() >= 2 for p in m.parameters(recurse=False))
    }
    calls: dict[str, list[tuple[Any, bool, tuple[int, ...]]]] = {}  # module → [(input's node, reads the input, shape)]
    out_nodes: dict[Any, str] = {}

    def walk_hook(name: str) -> Any:
        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            x = args[0] if args else None
            if not isinstance(x, Tensor) or not isinstance(output, Tensor):
                raise PHEWError(f"PHEW cannot trace {name!r}: it was not called with one tensor. {_SUPPORTED}.")
            # the input's node now: an in-place operation after this call must not change what the layer read
            calls.setdefault(name, []).append((x.grad_fn, id(x) in input_ids, tuple(x.shape)))
            if output.grad_fn is not None:
                out_nodes[output.grad_fn] = name

        return hook

    def opaque_hook(name: str) -> Any:
        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if isinstance(output, Tensor) and output.grad_fn is not None:
                out_nodes.setdefault(output.grad_fn, name)

        return hook

    device = next(iter(params.values())).device if params else torch.device("cpu")
    inputs = _trace_input(model, example, device)
    input_ids = {id(t) for t in inputs.tensors() if t.requires_grad}
    overrides: dict[str, Tensor] = {n: b.detach().clone() for n, b in model.named_buffers()}
    for name, p in model.named_parameters():
        leaf = p.detach().clone()
        overrides[name] = leaf.requires_grad_(True) if leaf.is_floating_point() else leaf
    handles = [m.register_forward_hook(walk_hook(n)) for n, m in walk_modules.items()]
    handles += [m.register_forward_hook(opaque_hook(n)) for n, m in opaque.items()]
    try:
        with preserved_modes(model, False), torch.enable_grad():
            call_with(model, overrides, lambda m, inp: inp(m), inputs)
    finally:
        for handle in handles:
            handle.remove()

    for name in owner:
        if name not in calls:
            raise PHEWError(f"PHEW cannot walk {name!r}: forward does not call it, so no path crosses it. {_SUPPORTED}")
    for name, made in calls.items():
        if len(made) > 1:
            raise PHEWError(
                f"PHEW cannot walk {name!r}: forward calls it {len(made)} times (shared or recurrent weights), and a "
                f"walk crosses each layer once. {_SUPPORTED}."
            )
    order = list(calls)  # call order
    index = {n: i for i, n in enumerate(order)}
    producers: dict[int, frozenset[str]] = {}
    blocked: dict[int, str | None] = {}  # a junction of two layers' outputs that is not a sum, below the node

    def visit(root: Any) -> tuple[frozenset[str], str | None]:
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            key = id(node)
            if key in producers:
                continue
            made_by = out_nodes.get(node)
            if made_by is not None:
                producers[key], blocked[key] = frozenset({made_by}), None
                continue
            variable = getattr(node, "variable", None)
            if variable is not None:  # AccumulateGrad: a parameter, or the model input
                producers[key] = frozenset({INPUT}) if id(variable) in input_ids else frozenset()
                blocked[key] = None
                continue
            children = [c for c, _ in node.next_functions if c is not None]
            if not expanded:
                stack.append((node, True))
                stack.extend((c, False) for c in children if id(c) not in producers)
                continue
            sets = [producers[id(c)] for c in children]
            live = [s for s in sets if s - {INPUT}]
            below = next((blocked[id(c)] for c in children if blocked[id(c)] is not None), None)
            if below is None and len(live) > 1 and not type(node).__name__.startswith(_JUNCTIONS):
                below = type(node).__name__
            producers[key] = frozenset().union(*sets) if sets else frozenset()
            blocked[key] = below
        return producers[id(root)], blocked[id(root)]

    layers: list[WalkLayer] = []
    for name in order:
        module = walk_modules[name]
        param = owner.get(name)
        weight = params[param] if param is not None else cast(Tensor, module.weight)
        magnitudes = weight.detach().abs().float().cpu().numpy()
        layers.append(WalkLayer(name, param, magnitudes, int(getattr(module, "groups", 1))))
    for name in order:
        b = layers[index[name]]
        node, reads_input, _ = calls[name][0]
        if node is None:
            found, junction = (frozenset({INPUT}) if reads_input else frozenset()), None
        else:
            found, junction = visit(node)
        if junction is not None:
            raise PHEWError(
                f"PHEW cannot walk {type(model).__name__}: the input of {name!r} combines several layers' outputs with "
                f"{junction}, not a sum, so no single edge leads into it. {_SUPPORTED}."
            )
        for source in sorted(found, key=lambda s: -1 if s == INPUT else index.get(s, -1)):
            if source == INPUT or (source in opaque and isinstance(opaque[source], (nn.Embedding, nn.EmbeddingBag))):
                if (INPUT, 1) not in b.preds:  # token embeddings are the input layer, as in the SynFlow probe
                    b.preds.append((INPUT, 1))
                continue
            if source in opaque:
                raise PHEWError(
                    f"PHEW cannot walk {type(model).__name__}: {name!r} reads the output of {source!r} "
                    f"({type(opaque[source]).__name__}), which its walks cannot cross. {_SUPPORTED}."
                )
            a = layers[index[source]]
            width = b.in_channels
            if width == a.out_channels:
                step = 1
            elif isinstance(walk_modules[name], nn.Linear) and width % a.out_channels == 0:
                step = width // a.out_channels
            else:
                raise PHEWError(
                    f"PHEW cannot walk {type(model).__name__}: {name!r} reads {width} channels from {source!r}, which "
                    f"makes {a.out_channels}; the widths neither match nor flatten (a Linear layer reading S times "
                    f"the channels). {_SUPPORTED}."
                )
            b.preds.append((index[source], step))
            a.succs.append((index[name], step))
    return LayerGraph(layers)


class _Walker:
    """The walks' state: masks, the selection order, the two random streams and the cached distributions."""

    def __init__(self, graph: LayerGraph, keep: int, seed: int) -> None:
        self.graph = graph
        self.keep = keep
        self.np_rng = np.random.RandomState(seed)
        self.py_rng = random.Random(seed)
        self.order = {i: np.zeros(layer.weight.size, dtype=np.int32) for i, layer in enumerate(graph.layers)
                      if layer.param is not None}
        self.count = 0
        self._norms = {i: self._kernel_norms(layer.weight) for i, layer in enumerate(graph.layers)}
        self._cdfs: dict[tuple[Any, ...], np.ndarray] = {}

    @staticmethod
    def _kernel_norms(weight: np.ndarray) -> np.ndarray:
        """``(C_out, C_in / groups)`` float64: each kernel's L1 norm, summed in float32 as their ``get_norm``."""
        if weight.ndim == 2:
            return weight.astype(np.float64)
        return weight.sum(axis=tuple(range(2, weight.ndim)), dtype=np.float32).astype(np.float64)

    @staticmethod
    def _cdf(p: np.ndarray) -> np.ndarray:
        cdf = p.cumsum()
        cdf /= cdf[-1]
        return cdf

    def _row_cdf(self, key: tuple[Any, ...], weights: np.ndarray) -> np.ndarray:
        """``np.random.choice``'s CDF for probabilities ``∝ weights`` (their ``pvals``; uniform if all zero)."""
        cdf = self._cdfs.get(key)
        if cdf is None:
            total = weights.cumsum()[-1]  # their Python `sum(par)`: left to right
            p = weights / total if total != 0 else np.full(weights.shape[0], 1.0 / weights.shape[0])
            cdf = self._cdfs[key] = self._cdf(p)
        return cdf

    def _draw(self, cdf: np.ndarray) -> int:
        return int(cdf.searchsorted(self.np_rng.random_sample(), side="right"))

    def _kernel_position(self, i: int, o: int, c: int) -> int:
        """A position of kernel ``W[o, c]`` with probability ``∝ |w|`` (0 for ``Linear``)."""
        weight = self.graph.layers[i].weight
        if weight.ndim == 2:
            return 0
        kernel = weight[o, c].reshape(-1)
        total = np.sum(kernel)
        p = kernel / float(total) if total != 0 else np.full(kernel.shape[0], 1.0 / kernel.shape[0], np.float32)
        return self._draw(self._cdf(p.astype(np.float64)))

    def _take(self, i: int, o: int, c: int, position: int) -> bool:
        """Keep ``W[o, c, position]`` of layer ``i``; ``True`` once the keep count is reached."""
        order = self.order.get(i)
        if order is None:
            return False
        weight = self.graph.layers[i].weight
        flat = (o * weight.shape[1] + c) * (weight.size // (weight.shape[0] * weight.shape[1])) + position
        if order[flat] == 0:
            self.count += 1
            order[flat] = self.count
        return self.count >= self.keep

    def forward_step(self, i: int, c: int) -> tuple[int, bool]:
        """From input channel ``c`` of layer ``i`` to an output channel; returns it and whether to stop."""
        layer = self.graph.layers[i]
        per_in, per_out = layer.weight.shape[1], layer.out_channels // layer.groups
        group, local = divmod(c, per_in)
        norms = self._norms[i][group * per_out : (group + 1) * per_out, local]
        o = group * per_out + self._draw(self._row_cdf(("f", i, c), norms))
        return o, self._take(i, o, local, self._kernel_position(i, o, local))

    def backward_step(self, i: int, o: int) -> tuple[int, bool]:
        """From output channel ``o`` of layer ``i`` to an input channel; returns it and whether to stop."""
        layer = self.graph.layers[i]
        per_in, per_out = layer.weight.shape[1], layer.out_channels // layer.groups
        local = self._draw(self._row_cdf(("b", i, o), self._norms[i][o]))
        return (o // per_out) * per_in + local, self._take(i, o, local, self._kernel_position(i, o, local))

    def choose(self, options: list[Any]) -> Any:
        return options[0] if len(options) == 1 else options[self.py_rng.choice(range(len(options)))]

    def walk_forward(self, i: int, c: int) -> bool:
        while True:
            o, done = self.forward_step(i, c)
            if done:
                return True
            succs = self.graph.layers[i].succs
            if not succs:
                return False
            i, step = self.choose(succs)
            c = o if step == 1 else o * step + self.py_rng.choice(range(step))

    def walk_backward(self, i: int, o: int) -> bool:
        while True:
            c, done = self.backward_step(i, o)
            if done:
                return True
            preds = self.graph.layers[i].preds
            if not preds:
                return False
            source, step = self.choose(preds)
            if source == INPUT:
                return False
            i, o = int(source), c // step


def phew_order(graph: LayerGraph, keep: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Run PHEW's walks until exactly ``keep`` weights are kept; each weight's rank in the order the walks kept it.

    Args:
        graph: from :func:`layer_graph`.
        keep: how many weights to keep, ``0 ≤ keep ≤`` the pruned weights' total.
        seed: seeds both random streams.

    Returns:
        ``{param name: int32 array W_n}``: ``1 … keep`` for the kept weights in the order the walks reached them,
        0 elsewhere.

    Raises:
        ValueError: if ``keep`` is out of range, or if the walks stop finding new weights (every weight they can reach,
            those of non-zero magnitude on a path, is kept already).
    """
    total = sum(layer.weight.size for layer in graph.layers if layer.param is not None)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= total:
        raise ValueError(f"`keep` must be an integer in [0, {total}] (the pruned weights), got {keep!r}.")
    walker = _Walker(graph, keep, seed)
    inputs = [(i, c) for i in graph.sources for c in range(graph.layers[i].in_channels)]
    outputs = [(i, o) for i in graph.sinks for o in range(graph.layers[i].out_channels)]
    n_in = n_out = 0
    walks = idle = 0
    patience = 10_000 + 10 * (len(inputs) + len(outputs))
    while walker.count < keep:
        before = walker.count
        if walks % 2 == 0:
            done = walker.walk_forward(*inputs[n_in % len(inputs)])
            n_in += 1
        else:
            done = walker.walk_backward(*outputs[n_out % len(outputs)])
            n_out += 1
        walks += 1
        if done:
            break
        idle = idle + 1 if walker.count == before else 0
        if idle > patience:
            raise ValueError(
                f"PHEW's walks found no new weight in {idle} walks after keeping {walker.count} of `keep`={keep}: the "
                "weights they can reach (non-zero magnitude, on a path from input to output) are all kept. Lower the "
                "target sparsity or choose another method."
            )
    return {graph.layers[i].param: order.reshape(graph.layers[i].weight.shape)  # type: ignore[misc]
            for i, order in walker.order.items()}


def phew_masks(
    model: nn.Module, params: Mapping[str, Tensor], keep: int, example: Any, seed: int = 0
) -> dict[str, Tensor]:
    """PHEW's masks: ``{name: bool tensor W_n}`` with exactly ``keep`` weights kept (the model is not modified).

    Args:
        model: the network.
        params: ``{name: tensor W_n}`` of the weights to prune (their magnitudes bias the walks).
        keep: how many to keep.
        example: the input's layout (a tensor ``(B, ...)``, a dict or a ModelInput).
        seed: seeds the walks.

    Example:
        >>> net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> params = {n: p for n, p in net.named_parameters() if n.endswith("weight")}
        >>> masks = phew_masks(net, params, 10, torch.randn(2, 6), seed=0)
        >>> sum(int(m.sum()) for m in masks.values())
        10
    """
    order = phew_order(layer_graph(model, params, example), keep, seed)
    return {n: torch.from_numpy(order[n] > 0).to(params[n].device) for n in params}
