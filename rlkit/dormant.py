"""Dormant units and their recycling: ReDo (Sokar, Agarwal, Castro & Evci 2023, "The Dormant
Neuron Phenomenon in Deep Reinforcement Learning", ICML).

A unit's score is its mean absolute activation over a batch (and, for a convolution, over the
positions of its feature map) divided by the average of that over its layer (the paper's
eq. 1); a unit scoring at most ``threshold`` is dormant. ReLU networks trained on moving targets
lose units this way, and a dead unit gets no gradient to come back with. Recycling a unit
redraws its incoming weights and bias from the layer's own initialiser, zeroes its outgoing
weights, so that the network computes the same function right after the reset, and zeroes the
optimizer's per-weight state (Adam's moments, RMSProp's averages) for every weight it touched.

The network is read as a chain: weight layers (``nn.Linear``, ``nn.Conv2d``) each followed by a
ReLU-like activation, in registration order, then the output heads. The units of one activation
are read by the next weight layer; those of the last one by every head after it (a Q head and a
dueling value head, a policy and a value head). Q-networks, actor-critics and MLPs built by
``agents.networks`` are such chains; ``recyclable_layers`` rejects a model that is not.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rlkit.monitors import RELU_LIKE

WeightLayer = nn.Linear | nn.Conv2d

__all__ = ["RecyclableLayer", "dormant_scores", "recyclable_layers", "recycle_dormant_units",
           "unit_activity", "unit_scores"]


@dataclass(frozen=True)
class RecyclableLayer:
    """One layer of units: the weight layer that makes them, the activation whose output is
    scored, and the weight layers that read them."""

    name: str
    producer: WeightLayer
    activation: nn.Module
    consumers: tuple[WeightLayer, ...]

    @property
    def units(self) -> int:
        return self.producer.out_features if isinstance(self.producer, nn.Linear) \
            else self.producer.out_channels


def recyclable_layers(model: nn.Module) -> list[RecyclableLayer]:
    """The model's hidden layers of units, in order; ``ValueError`` if it is not a chain of
    (weight layer, activation) pairs followed by heads that read the last activation."""
    names = {m: n for n, m in model.named_modules()}
    leaves = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, *RELU_LIKE))]
    pairs: list[tuple[WeightLayer, nn.Module]] = []
    heads: list[WeightLayer] = []
    pending: WeightLayer | None = None
    for m in leaves:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if pending is not None:
                heads.append(pending)
            pending = m
        elif pending is not None and not heads:
            pairs.append((pending, m))
            pending = None
        else:
            raise ValueError(f"recyclable_layers: activation {names[m]!r} follows no weight layer "
                             "of its own; ReDo needs a chain of (weight layer, activation) pairs")
    if pending is not None:
        heads.append(pending)
    if not pairs or not heads:
        raise ValueError("recyclable_layers: the model has no hidden layer followed by a head")
    layers = []
    for i, (producer, activation) in enumerate(pairs):
        consumers = (pairs[i + 1][0],) if i + 1 < len(pairs) else tuple(heads)
        layer = RecyclableLayer(names[activation], producer, activation, consumers)
        for consumer in consumers:
            _outgoing_slices(layer, consumer)  # raises if the shapes do not chain
        layers.append(layer)
    return layers


def unit_scores(activation: Tensor) -> Tensor:
    """Mean absolute activation per unit: over the batch, and the positions of a feature map."""
    dims = [0, *range(2, activation.ndim)]
    return activation.detach().abs().float().mean(dim=dims)


@torch.no_grad()
def unit_activity(model: nn.Module, layers: Sequence[RecyclableLayer], inputs: Tensor
                  ) -> list[Tensor]:
    """``unit_scores`` of every layer's activation in one forward pass of ``model`` on ``inputs``
    (the paper scores units on a batch of the training data)."""
    found: dict[int, Tensor] = {}

    def hook(index: int) -> Callable[[nn.Module, object, Tensor], None]:
        def record(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            found[index] = unit_scores(output)
        return record

    handles = [layer.activation.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return [found[i] for i in range(len(layers))]


def dormant_scores(mean_abs: Tensor) -> Tensor:
    """The paper's normalised score: each unit's mean |activation| over the layer's average."""
    return mean_abs / mean_abs.mean().clamp_min(1e-12)


def _outgoing_slices(layer: RecyclableLayer, consumer: WeightLayer) -> int:
    """How many input columns of ``consumer`` each unit owns (a flattened feature map owns
    ``H*W`` consecutive columns per channel); ``ValueError`` if the shapes do not chain."""
    inputs = consumer.in_features if isinstance(consumer, nn.Linear) else consumer.in_channels
    per_unit, rest = divmod(inputs, layer.units)
    if rest or per_unit == 0 or (isinstance(consumer, nn.Conv2d) and per_unit != 1):
        raise ValueError(f"recyclable_layers: {layer.name!r} has {layer.units} units but the "
                         f"layer after it reads {inputs} inputs; ReDo needs a plain chain")
    return per_unit


@torch.no_grad()
def recycle_dormant_units(
    layers: Sequence[RecyclableLayer],
    mean_abs: Sequence[Tensor],
    threshold: float,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    seed: int = 0,
    reduce: Callable[[list[Tensor]], list[Tensor]] | None = None,
) -> dict[str, int]:
    """Recycle the units whose score is at most ``threshold``; returns recycled units per layer.

    ``mean_abs[i]`` is ``unit_scores`` of ``layers[i]``'s activation on a batch. ``reduce``
    averages them over data-parallel ranks, and ``seed`` draws the new weights, so that every
    rank recycles the same units with the same weights.
    """
    if reduce is not None:
        mean_abs = reduce(list(mean_abs))
    recycled: dict[str, int] = {}
    for i, (layer, scores) in enumerate(zip(layers, mean_abs, strict=True)):
        dormant = dormant_scores(scores) <= threshold
        count = int(dormant.sum())
        recycled[layer.name] = count
        if count == 0:
            continue
        touched = _reinit_incoming(layer.producer, dormant, seed * 1_000 + i)
        for consumer in layer.consumers:
            per_unit = _outgoing_slices(layer, consumer)
            columns = dormant.to(consumer.weight.device).repeat_interleave(per_unit)
            consumer.weight[:, columns] = 0.0
            touched.append((consumer.weight, (slice(None), columns)))
        if optimizer is not None:
            _zero_optimizer_state(optimizer, touched)
    return recycled


def _reinit_incoming(producer: WeightLayer, dormant: Tensor, seed: int
                     ) -> list[tuple[Tensor, tuple[slice | Tensor, ...]]]:
    """Redraw the dormant units' weights and biases with the layer's own initialiser, from a
    private generator (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = copy.deepcopy(producer).cpu()
        fresh.reset_parameters()
    rows = dormant.to(producer.weight.device)
    producer.weight[rows] = fresh.weight[dormant.cpu()].to(producer.weight)
    touched: list[tuple[Tensor, tuple[slice | Tensor, ...]]] = [(producer.weight, (rows,))]
    if producer.bias is not None and fresh.bias is not None:
        producer.bias[rows] = fresh.bias[dormant.cpu()].to(producer.bias)
        touched.append((producer.bias, (rows,)))
    return touched


def _zero_optimizer_state(optimizer: torch.optim.Optimizer,
                          touched: Sequence[tuple[Tensor, tuple[slice | Tensor, ...]]]) -> None:
    """Zero every per-weight state tensor (same shape as the parameter) at the touched entries;
    scalars such as Adam's step count are shared by the whole tensor and stay."""
    for param, index in touched:
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, Tensor) and value.shape == param.shape:
                value[index] = 0.0
