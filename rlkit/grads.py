"""Gradient utilities: the loss-normalisation convention, global-norm and per-value clipping.

**Convention: every loss in rlkit is a mean over the batch** (``batch_mean``), never a sum.
Dividing the gradient by the minibatch size means the learning rate need not change when the
batch size does (Sutskever's advice); ``tests/test_core_grads.py`` asserts it.

Clipping never calls ``.item()``: the returned norm is a 0-d tensor on the gradients' device, so
a GPU training loop is not forced to wait for the device every step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def batch_mean(per_example: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of per-example losses over the batch (leading) axis, optionally importance-weighted.

    With ``weights`` (e.g. prioritised-replay importance weights) the result is
    ``mean(weights * per_example)``: still divided by the batch size, not by ``sum(weights)``,
    as in Schaul et al. 2016, so that the weights only rescale individual examples.
    """
    if per_example.ndim == 0:
        raise ValueError("batch_mean needs per-example losses with a batch axis, got a scalar")
    if weights is not None:
        if weights.shape != per_example.shape[: weights.ndim]:
            raise ValueError(
                f"batch_mean weights shape {tuple(weights.shape)} does not match losses "
                f"{tuple(per_example.shape)}; pass one weight per example"
            )
        per_example = per_example * weights.reshape(
            weights.shape + (1,) * (per_example.ndim - weights.ndim)
        )
    return per_example.mean()


def _grads(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        params = [params]
    return [p.grad for p in params if p.grad is not None]


def _norm_of(grads: list[torch.Tensor]) -> torch.Tensor:
    device = grads[0].device
    norms = torch._foreach_norm(grads, 2.0)
    return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]), 2.0)


def global_grad_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all gradients concatenated, as a 0-d tensor (zero when there are none)."""
    grads = _grads(params)
    if not grads:
        return torch.zeros(())
    return _norm_of(grads)


def clip_grad_norm_(params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Rescale gradients in place so their global L2 norm is at most ``max_norm``.

    Returns the norm *before* clipping (a device tensor). The rescaling keeps the direction of
    the whole gradient vector, unlike per-value clipping. A non-finite norm propagates into the
    gradients so that the NaN guard reports it instead of the step silently being skipped.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    grads = _grads(params)
    if not grads:
        return torch.zeros(())
    total = _norm_of(grads)
    # clamp(max=1) keeps gradients that are already small untouched; 1e-6 avoids 0/0.
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, scale.to(grads[0].dtype))
    return total


def clip_grad_value_(params: Iterable[torch.Tensor], clip: float) -> None:
    """Clamp every gradient element to ``[-clip, clip]`` in place."""
    if not clip > 0:
        raise ValueError(f"clip value must be > 0, got {clip}")
    grads = _grads(params)
    if grads:
        torch._foreach_clamp_min_(grads, -clip)
        torch._foreach_clamp_max_(grads, clip)
