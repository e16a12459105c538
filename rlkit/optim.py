"""Optimizers built from configuration, including TensorFlow-1-style RMSProp.

Why a second RMSProp: PyTorch's ``torch.optim.RMSprop`` divides by ``sqrt(ms) + eps`` and starts
the mean-square accumulator at 0. TensorFlow 1's ``RMSPropOptimizer``, which the DQN (Mnih et al.
2015) and PAAC (Clemente et al. 2017) code used, divides by ``sqrt(ms + eps)`` and starts the
accumulator at 1. With PAAC's ``eps = 0.1`` the two differ a lot, and A2C-family results only
reproduce with the TF form (a finding of the PyTorch A2C ports), so ``RMSpropTF`` implements it
exactly.

``build_optimizer`` puts biases and normalisation-layer parameters in a group without weight decay:
decaying a bias or a norm gain towards zero regularises nothing useful and only shifts activations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, overload

import torch
from torch import nn
from torch.optim import Optimizer

from rlkit.optim_config import OPTIMIZERS, OptimizerConfig

__all__ = ["OPTIMIZERS", "OptimizerConfig", "RMSpropTF", "build_optimizer", "param_groups"]

# Layers whose parameters are gains/offsets of a normalisation, never decayed.
_NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)


class RMSpropTF(Optimizer):
    """RMSProp with TensorFlow 1 semantics (epsilon inside the square root).

    Per parameter, with gradient ``g`` (Tieleman & Hinton 2012; TF1 ``ApplyRMSProp``)::

        ms  = alpha * ms + (1 - alpha) * g**2           # ms starts at initial_accumulator
        mg  = alpha * mg + (1 - alpha) * g              # only when centered
        den = sqrt(ms - mg**2 + eps)   (centered)  or  sqrt(ms + eps)
        mom = momentum * mom + lr * g / den             # TF keeps lr inside the momentum buffer
        p  -= mom                                       # (= lr * g / den when momentum == 0)

    DQN's "squared gradient momentum 0.95, min squared gradient 0.01" is ``alpha=0.95, eps=0.01``;
    PAAC's defaults are ``alpha=0.99, eps=0.1``. ``weight_decay`` adds ``wd * p`` to ``g`` (L2).
    All arithmetic is vectorised over the parameter list with ``torch._foreach_*`` kernels.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        centered: bool = False,
        initial_accumulator: float = 1.0,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"RMSpropTF: lr must be >= 0, got {lr}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"RMSpropTF: alpha must be in [0, 1), got {alpha}")
        if not eps >= 0.0:
            raise ValueError(f"RMSpropTF: eps must be >= 0, got {eps}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"RMSpropTF: momentum must be in [0, 1), got {momentum}")
        if not initial_accumulator >= 0.0:
            raise ValueError(
                f"RMSpropTF: initial_accumulator must be >= 0, got {initial_accumulator}"
            )
        if not weight_decay >= 0.0:
            raise ValueError(f"RMSpropTF: weight_decay must be >= 0, got {weight_decay}")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            momentum=momentum,
            centered=centered,
            initial_accumulator=initial_accumulator,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)

    def _init_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["square_avg"] = torch.full_like(
                p, group["initial_accumulator"], memory_format=torch.preserve_format
            )
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(
                    p, memory_format=torch.preserve_format
                )
        return state

    # The overloads are ``Optimizer.step``'s: no closure, no loss; a closure, its loss.
    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            states: list[dict[str, Any]] = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RMSpropTF does not support sparse gradients; use dense")
                params.append(p)
                grads.append(p.grad)
                states.append(self._init_state(p, group))
            if not params:
                continue
            for s in states:
                s["step"] += 1
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            if group["weight_decay"] != 0:
                grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
            square_avg = [s["square_avg"] for s in states]
            torch._foreach_mul_(square_avg, alpha)
            torch._foreach_addcmul_(square_avg, grads, grads, value=1.0 - alpha)
            if group["centered"]:
                grad_avg = [s["grad_avg"] for s in states]
                torch._foreach_lerp_(grad_avg, grads, 1.0 - alpha)
                denom = torch._foreach_addcmul(square_avg, grad_avg, grad_avg, value=-1.0)
                torch._foreach_add_(denom, eps)
            else:
                denom = torch._foreach_add(square_avg, eps)
            torch._foreach_sqrt_(denom)
            if group["momentum"] > 0:
                buf = [s["momentum_buffer"] for s in states]
                torch._foreach_mul_(buf, group["momentum"])
                torch._foreach_addcdiv_(buf, grads, denom, value=lr)
                torch._foreach_sub_(params, buf)
            else:
                torch._foreach_addcdiv_(params, grads, denom, value=-lr)
        return loss


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and a no-decay group.

    No decay for biases (any parameter with fewer than 2 dimensions) and for every parameter of
    a normalisation layer. Empty groups are dropped.
    """
    no_decay_ids: set[int] = set()
    for mod in module.modules():
        if isinstance(mod, _NORM_LAYERS):
            no_decay_ids.update(id(p) for p in mod.parameters(recurse=False))
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in module.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or id(p) in no_decay_ids else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(module: nn.Module, cfg: OptimizerConfig) -> Optimizer:
    """Construct the optimizer ``cfg`` names over ``module``'s trainable parameters."""
    groups = param_groups(module, cfg.weight_decay)
    if not groups:
        raise ValueError("build_optimizer: the module has no trainable parameters")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
            centered=cfg.centered,
        )
    if cfg.name == "rmsprop_tf":
        return RMSpropTF(
            groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
            centered=cfg.centered, initial_accumulator=cfg.initial_accumulator,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
