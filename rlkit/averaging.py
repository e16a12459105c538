"""Parameter averaging: Polyak/soft target updates and an EMA copy of a model for evaluation.

The CS231n notes: keeping an exponentially decaying average of the weights "almost always" gives
a slightly better validation error, because SGD jitters around the mode and the average sits
nearer to it. The same operation, ``target <- (1 - tau) * target + tau * source``, is the soft
target-network update of DDPG-style agents; ``tau = 1`` is DQN's periodic hard copy.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def _check_pair(target: nn.Module, source: nn.Module) -> tuple[list, list]:
    tp, sp = list(target.parameters()), list(source.parameters())
    if len(tp) != len(sp) or any(a.shape != b.shape for a, b in zip(tp, sp, strict=False)):
        raise ValueError(
            "polyak_update: target and source have different parameter shapes; "
            "build the target as a copy of the source (copy.deepcopy)"
        )
    return tp, sp


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``target = (1 - tau) * target + tau * source`` for parameters; buffers are copied.

    ``tau = 1`` copies exactly (a hard target update). Vectorised with ``torch._foreach_lerp_``.
    """
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"polyak tau must be in (0, 1], got {tau}")
    tp, sp = _check_pair(target, source)
    if tau == 1.0:
        torch._foreach_copy_(tp, sp)
    else:
        torch._foreach_lerp_(tp, sp, tau)
    for tb, sb in zip(target.buffers(), source.buffers(), strict=True):
        tb.copy_(sb)


class EMA:
    """An exponential moving average of ``module``'s parameters, kept in ``self.module``.

    Call ``update()`` after each optimizer step; evaluate with ``ema.module``. With
    ``warmup=True`` the decay is ``min(decay, (1 + n) / (10 + n))`` after n updates, so early
    averages are not dominated by the random initialisation (as TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)`` does).
    """

    def __init__(self, module: nn.Module, decay: float = 0.999, *, warmup: bool = False) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = warmup
        self.source = module
        self.module = copy.deepcopy(module).eval()
        self.module.requires_grad_(False)
        self.updates = 0

    def current_decay(self) -> float:
        if self.warmup:
            return min(self.decay, (1 + self.updates) / (10 + self.updates))
        return self.decay

    def update(self) -> None:
        decay = self.current_decay()
        if decay == 0.0:
            polyak_update(self.module, self.source, 1.0)
        else:
            polyak_update(self.module, self.source, 1.0 - decay)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
