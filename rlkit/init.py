"""Weight initialisation schemes, and ``apply_init`` to apply one to a whole module by layer type.

Schemes (``fan_in`` = inputs feeding one output unit: ``in_features`` or ``in_ch * kh * kw``):

* ``lazy``: ``N(0, 0.02**2)``, the small-Gaussian default that works for shallow nets;
* ``scaled_normal``: ``N(0, (init_scale / sqrt(fan_in))**2)``, which keeps the output variance of
  a layer equal to its input variance (seeds 001 and 004);
* ``xavier_uniform`` / ``xavier_normal``: variance ``2 / (fan_in + fan_out)`` (Glorot & Bengio
  2010);
* ``kaiming_uniform`` / ``kaiming_normal``: variance ``2 / fan_in`` for ReLU (He et al. 2015);
* ``orthogonal``: a (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014);
* ``torch_uniform``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights **and biases**, the old
  Torch7 default that PAAC's original code used (its default for linear and conv layers).

Biases are zeroed except under ``torch_uniform``. LSTM forget-gate biases start at 1 so that the
cell remembers by default early in training (Jozefowicz et al. 2015).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RECURRENT = (nn.LSTM, nn.LSTMCell, nn.GRU, nn.GRUCell, nn.RNN, nn.RNNCell)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a linear ``(out, in)`` or conv ``(out, in, *kernel)`` weight."""
    if weight.ndim < 2:
        raise ValueError(f"fan-in needs a weight with >= 2 dims, got shape {tuple(weight.shape)}")
    receptive = weight[0, 0].numel()
    return weight.shape[1] * receptive, weight.shape[0] * receptive


@torch.no_grad()
def lazy_normal_(weight: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    return weight.normal_(0.0, std)


@torch.no_grad()
def scaled_normal_(weight: torch.Tensor, init_scale: float = 1.0) -> torch.Tensor:
    return weight.normal_(0.0, init_scale / math.sqrt(fans(weight)[0]))


@torch.no_grad()
def xavier_uniform_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    fan_in, fan_out = fans(weight)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))  # uniform variance = bound**2 / 3
    return weight.uniform_(-bound, bound)


@torch.no_grad()
def xavier_normal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    fan_in, fan_out = fans(weight)
    return weight.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_gain(nonlinearity: str, a: float) -> float:
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + a * a))
    if nonlinearity in ("linear", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    raise ValueError(
        f"unknown nonlinearity {nonlinearity!r}; use relu, leaky_relu, tanh, sigmoid or linear"
    )


@torch.no_grad()
def kaiming_uniform_(
    weight: torch.Tensor, nonlinearity: str = "relu", a: float = 0.0
) -> torch.Tensor:
    std = _kaiming_gain(nonlinearity, a) / math.sqrt(fans(weight)[0])
    bound = math.sqrt(3.0) * std
    return weight.uniform_(-bound, bound)


@torch.no_grad()
def kaiming_normal_(
    weight: torch.Tensor, nonlinearity: str = "relu", a: float = 0.0
) -> torch.Tensor:
    return weight.normal_(0.0, _kaiming_gain(nonlinearity, a) / math.sqrt(fans(weight)[0]))


@torch.no_grad()
def orthogonal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Orthonormal rows (or columns, whichever are fewer) times ``gain``; kernels are flattened."""
    rows, cols = weight.shape[0], weight[0].numel()
    flat = torch.randn(max(rows, cols), min(rows, cols), dtype=torch.float64)
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r))  # make the distribution uniform (Haar)
    if rows < cols:
        q = q.t()
    weight.copy_(q.reshape(weight.shape).to(weight.dtype) * gain)
    return weight


@torch.no_grad()
def torch_uniform_(weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``U(+-1/sqrt(fan_in))`` for the weight and, with the same bound, the bias."""
    bound = 1.0 / math.sqrt(fans(weight)[0])
    weight.uniform_(-bound, bound)
    if bias is not None:
        bias.uniform_(-bound, bound)
    return weight


@torch.no_grad()
def lstm_forget_bias_(lstm: nn.LSTM | nn.LSTMCell, value: float = 1.0) -> None:
    """Set the forget-gate bias of every layer to ``value``.

    PyTorch orders the gates (input, forget, cell, output) and adds two biases; the forget slice of
    ``bias_ih`` gets ``value`` and that of ``bias_hh`` gets 0, so their sum is ``value``.
    """
    hidden = lstm.hidden_size
    for name, p in lstm.named_parameters():
        if name.startswith("bias_ih"):
            p[hidden : 2 * hidden] = value
        elif name.startswith("bias_hh"):
            p[hidden : 2 * hidden] = 0.0


POLICIES: dict[str, Callable[..., torch.Tensor]] = {
    "lazy": lazy_normal_,
    "scaled_normal": scaled_normal_,
    "xavier_uniform": xavier_uniform_,
    "xavier_normal": xavier_normal_,
    "kaiming_uniform": kaiming_uniform_,
    "kaiming_normal": kaiming_normal_,
    "orthogonal": orthogonal_,
    "torch_uniform": torch_uniform_,
}


def _options(policy: str) -> set[str]:
    params = list(inspect.signature(POLICIES[policy]).parameters)[1:]
    return {p for p in params if p != "bias"}


@torch.no_grad()
def apply_init(module: nn.Module, policy: str, *, forget_bias: float = 1.0, **kw: Any) -> nn.Module:
    """Initialise every Linear/Conv and recurrent layer in ``module`` with ``policy``.

    ``kw`` are the policy's own options (``std`` for lazy, ``init_scale`` for scaled_normal,
    ``gain`` for xavier/orthogonal, ``nonlinearity``/``a`` for kaiming). Biases become zero
    (``torch_uniform``: uniform like the weights). Recurrent layers get the policy on each gate's
    block of ``weight_ih``/``weight_hh`` and LSTMs a forget-gate bias of ``forget_bias``.
    Other layers (norms, embeddings) keep their own defaults. Returns ``module``.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown init policy {policy!r}; use one of {', '.join(POLICIES)}")
    unknown = set(kw) - _options(policy)
    if unknown:
        allowed = ", ".join(sorted(_options(policy))) or "none"
        raise ValueError(
            f"init policy {policy!r} has no option(s) {', '.join(sorted(unknown))}; "
            f"allowed: {allowed}"
        )
    init = POLICIES[policy]
    for mod in module.modules():
        if isinstance(mod, _WEIGHTED):
            if policy == "torch_uniform":
                torch_uniform_(mod.weight, mod.bias)
            else:
                init(mod.weight, **kw)
                if mod.bias is not None:
                    mod.bias.zero_()
        elif isinstance(mod, _RECURRENT):
            _init_recurrent(mod, policy, kw, forget_bias)
    return module


def _init_recurrent(
    mod: nn.RNNBase | nn.RNNCellBase, policy: str, kw: dict[str, Any], forget_bias: float
) -> None:
    gates = {nn.LSTM: 4, nn.LSTMCell: 4, nn.GRU: 3, nn.GRUCell: 3}.get(type(mod), 1)
    hidden = mod.hidden_size
    weights = [(n, p) for n, p in mod.named_parameters() if n.startswith("weight")]
    for _, w in weights:
        for g in range(gates):
            block = w[g * hidden : (g + 1) * hidden]
            if policy == "torch_uniform":
                bound = 1.0 / math.sqrt(hidden)  # PyTorch's recurrent default bound
                block.uniform_(-bound, bound)
            else:
                POLICIES[policy](block, **kw)
    for name, b in mod.named_parameters():
        if name.startswith("bias"):
            if policy == "torch_uniform":
                bound = 1.0 / math.sqrt(hidden)
                b.uniform_(-bound, bound)
            else:
                b.zero_()
    if isinstance(mod, (nn.LSTM, nn.LSTMCell)):
        lstm_forget_bias_(mod, forget_bias)
