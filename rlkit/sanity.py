"""Sanity checks before a long run (the CS231n notes).

* The initial loss should be the loss at chance: ``ln C`` for a softmax over ``C`` classes with
  small initial weights (2.302 for CIFAR-10). Far above means the initial scale is too large;
  far below means something leaks the labels.
* A model must be able to overfit a tiny batch (a handful of examples) to ~zero loss. If it
  cannot, the model, loss or optimizer is broken, and no amount of tuning on the full data helps.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class SanityError(RuntimeError):
    """A sanity check failed; the message says what is probably wrong."""


def chance_loss(num_classes: int) -> float:
    """Cross-entropy of a uniform prediction over ``num_classes``: ``ln C``."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return math.log(num_classes)


def check_initial_loss(loss: float | torch.Tensor, num_classes: int, rel_tol: float = 0.1) -> float:
    """Raise ``SanityError`` unless ``loss`` is within ``rel_tol`` of ``ln C``; return the ratio."""
    value = float(loss)
    expected = chance_loss(num_classes)
    ratio = value / expected
    if not abs(ratio - 1.0) <= rel_tol:
        hint = (
            "initial weights are too large (use a scaled init, or a smaller output layer)"
            if ratio > 1
            else "labels may leak into the inputs, or the loss is not a mean cross-entropy"
        )
        raise SanityError(
            f"initial loss {value:.4f} is not chance level ln({num_classes}) = {expected:.4f} "
            f"(ratio {ratio:.2f}); {hint}"
        )
    return ratio


@dataclass
class OverfitResult:
    initial_loss: float
    final_loss: float
    steps: int
    passed: bool


def overfit_tiny_batch(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    batch: Any,
    *,
    steps: int = 300,
    lr: float = 1e-2,
    target: float = 1e-2,
    raise_on_failure: bool = True,
) -> OverfitResult:
    """Train a *copy* of ``model`` with Adam on one tiny ``batch`` until its loss is < ``target``.

    ``loss_fn(model, batch)`` returns the scalar loss. The caller's model is not modified.
    """
    trial = copy.deepcopy(model).train()
    opt = torch.optim.Adam(trial.parameters(), lr=lr)
    with torch.no_grad():
        initial = float(loss_fn(trial, batch))
    taken = 0
    while taken < steps:
        opt.zero_grad(set_to_none=True)
        out = loss_fn(trial, batch)
        if float(out.detach()) < target:
            break  # fitted: a further step could overshoot and report a fitted batch as not
        out.backward()
        opt.step()
        taken += 1
    with torch.no_grad():
        final = float(loss_fn(trial, batch))
    passed = final < target
    if not passed and raise_on_failure:
        raise SanityError(
            f"could not overfit a tiny batch: loss {initial:.4f} -> {final:.4f} after {taken} "
            f"steps (target {target}); check the model, the loss and the optimizer"
        )
    return OverfitResult(initial, final, taken, passed)
