"""Numerical gradient checking, following the CS231n notes point by point.

* centred differences ``(f(x+h) - f(x-h)) / 2h`` in float64 (single precision alone produces
  errors near 1e-2 for correct gradients);
* relative error ``|a - n| / max(|a|, |n|)``, defined as 0 when both are zero; the part of
  ``|a - n|`` that rounding in ``f`` can explain (``10 * eps64 * |f| / h``) is not counted, so a
  tiny gradient (the notes warn about ~1e-10) is not reported wrong because of float noise;
* kinks: every ReLU-like operation (relu, leaky_relu, hardtanh, clamp, abs, maximum/minimum,
  max/min reductions, max pooling) evaluated inside ``fn`` is recorded through a
  ``TorchFunctionMode``; when the pattern of "winners" at ``x+h`` or ``x-h`` differs from the one
  at ``x``, a kink was crossed, the numerical gradient is not exact, and the coordinate is
  skipped and counted;
* a random sample of coordinates from *every* parameter tensor, at least one each, so biases
  are never skipped;
* the torch RNG is reseeded before every evaluation of ``fn``, so dropout and other stochastic
  layers draw the same masks each time (the global RNG state is restored afterwards);
* the report gives the worst error per tensor, graded with the notes' thresholds.

The notes also advise checking after a short burn-in rather than at initialisation and with only
a few datapoints; both are up to the caller, who chooses the parameters and the batch in ``fn``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from rlkit.checkpoint import rng_state, set_rng_state

# The notes' thresholds on relative error.
WRONG = 1e-2
UNCOMFORTABLE = 1e-4
GREAT = 1e-7


def grade(rel_error: float) -> str:
    """``wrong`` (>1e-2), ``uncomfortable`` (1e-4..1e-2), ``ok`` (1e-7..1e-4), ``great`` (<1e-7).

    ``ok`` is fine for objectives with kinks; without kinks (tanh, softmax) expect ``great``.
    """
    if rel_error > WRONG:
        return "wrong"
    if rel_error > UNCOMFORTABLE:
        return "uncomfortable"
    if rel_error > GREAT:
        return "ok"
    return "great"


def relative_error(
    analytic: float, numeric: float, abs_floor: float = 0.0, noise: float = 0.0
) -> float:
    """``max(|a - n| - noise, 0) / max(|a|, |n|, abs_floor)``; 0 when both are zero.

    ``noise`` is the absolute error the numerical gradient may carry from rounding alone.
    """
    diff = max(abs(analytic - numeric) - noise, 0.0)
    denom = max(abs(analytic), abs(numeric), abs_floor)
    if diff == 0.0:
        return 0.0
    return diff / denom


# Rounding error of a float64 loss, relative to its magnitude, allowing for accumulation over a
# few operations; divided by h it bounds the rounding error of the centred difference.
_ROUNDING = 10 * float(torch.finfo(torch.float64).eps)


# ---------------------------------------------------------------------------------------------
# Kink recording


def _name(func: Any) -> str:
    return getattr(func, "__name__", "")


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, key: str, default: Any) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(key, default)


class _KinkRecorder(TorchFunctionMode):
    """Records, for every kinked op, which side of each kink its inputs were on."""

    def __init__(self) -> None:
        super().__init__()
        self.patterns: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = _name(func).rstrip("_")
        pattern = self._pattern(name, args, kwargs)
        if pattern is not None:
            self.patterns.append(pattern)
        return func(*args, **kwargs)

    @staticmethod
    def _pattern(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
        if not args or not isinstance(args[0], torch.Tensor):
            return None
        x = args[0].detach()
        if name in ("relu", "leaky_relu", "abs", "elu", "rrelu"):
            return x > 0
        if name in ("relu6", "hardtanh", "clamp", "clip"):
            if name == "relu6":
                lo, hi = 0.0, 6.0
            elif name == "hardtanh":
                lo = _arg(args, kwargs, 1, "min_val", -1.0)
                hi = _arg(args, kwargs, 2, "max_val", 1.0)
            else:
                lo = _arg(args, kwargs, 1, "min", None)
                hi = _arg(args, kwargs, 2, "max", None)
            below = x < lo if lo is not None else torch.zeros_like(x, dtype=torch.bool)
            above = x > hi if hi is not None else torch.zeros_like(x, dtype=torch.bool)
            return below.to(torch.int8) - above.to(torch.int8)
        if name in ("maximum", "minimum", "fmax", "fmin") and len(args) > 1:
            return x > args[1].detach() if isinstance(args[1], torch.Tensor) else x > args[1]
        if name in ("max", "min", "amax", "amin", "argmax", "argmin"):
            dim = _arg(args, kwargs, 1, "dim", None)
            if isinstance(dim, torch.Tensor):  # torch.max(a, b): elementwise
                return x > dim.detach()
            if dim is None or isinstance(dim, (tuple, list)):
                return x.flatten().argmax() if "max" in name else x.flatten().argmin()
            return x.argmax(dim) if "max" in name else x.argmin(dim)
        if name in ("max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool2d"):
            kw = {k: v for k, v in kwargs.items() if k != "return_indices"}
            fn = getattr(torch.nn.functional, name)
            with torch.no_grad():
                return fn(x, *args[1:], **kw, return_indices=True)[1]
        return None


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and bool(torch.equal(x, y)) for x, y in zip(a, b, strict=True)
    )


# ---------------------------------------------------------------------------------------------


@dataclass
class TensorCheck:
    """Result for one parameter tensor."""

    name: str
    checked: int
    kinks_skipped: int
    worst: float
    worst_index: tuple[int, ...] | None
    analytic: float
    """Analytic gradient at the worst coordinate."""
    numeric: float
    """Numerical gradient at the worst coordinate."""

    @property
    def grade(self) -> str:
        return grade(self.worst)


@dataclass
class GradCheckReport:
    tensors: dict[str, TensorCheck] = field(default_factory=dict)
    tolerance: float = UNCOMFORTABLE

    @property
    def worst(self) -> dict[str, float]:
        """Worst relative error per tensor."""
        return {n: t.worst for n, t in self.tensors.items()}

    @property
    def passed(self) -> bool:
        return all(t.worst <= self.tolerance for t in self.tensors.values())

    @property
    def unchecked(self) -> list[str]:
        """Tensors whose every tried coordinate crossed a kink (try a smaller ``h``)."""
        return [n for n, t in self.tensors.items() if t.checked == 0]

    @property
    def kinks_skipped(self) -> int:
        return sum(t.kinks_skipped for t in self.tensors.values())

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"gradcheck {verdict} (tolerance {self.tolerance:g})"]
        if self.unchecked:
            lines.append(f"  not checked (kinks everywhere, use a smaller h): {self.unchecked}")
        for t in self.tensors.values():
            lines.append(
                f"  {t.name:<30} worst {t.worst:.2e} ({t.grade}) checked {t.checked}"
                f" kinks skipped {t.kinks_skipped}"
                + (f" at {t.worst_index}: analytic {t.analytic:.6e} numeric {t.numeric:.6e}"
                   if t.worst_index is not None else "")
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _named(
    params: nn.Module | Mapping[str, torch.Tensor] | Iterable[Any],
) -> list[tuple[str, torch.Tensor]]:
    pairs: list[tuple[str, torch.Tensor]]
    if isinstance(params, nn.Module):
        pairs = [(n, p) for n, p in params.named_parameters() if p.requires_grad]
    elif isinstance(params, Mapping):
        pairs = list(params.items())
    else:
        items = list(params)
        pairs = [
            it if isinstance(it, tuple) else (f"param{i}", it) for i, it in enumerate(items)
        ]
    if not pairs:
        raise ValueError("gradcheck got no parameters to check")
    for name, p in pairs:
        if p.dtype != torch.float64:
            raise ValueError(
                f"gradcheck needs float64 parameters but {name!r} is {p.dtype}; call "
                "model.double() and feed float64 inputs (float32 gives ~1e-2 errors on "
                "correct gradients)"
            )
        if not p.requires_grad:
            raise ValueError(f"gradcheck parameter {name!r} does not require grad")
    return pairs


def gradcheck(
    fn: Callable[[], torch.Tensor],
    params: nn.Module | Mapping[str, torch.Tensor] | Iterable[Any],
    *,
    coords_per_tensor: int = 10,
    h: float = 1e-6,
    tolerance: float = UNCOMFORTABLE,
    abs_floor: float = 0.0,
    seed: int = 0,
    detect_kinks: bool = True,
) -> GradCheckReport:
    """Compare autograd's gradient of ``fn()`` with centred differences on sampled coordinates.

    ``fn`` takes no arguments and returns a scalar computed from ``params`` (a module, a
    ``{name: tensor}`` mapping, or an iterable of tensors or ``(name, tensor)`` pairs), all
    float64 leaves. ``passed`` is true when every tensor's worst error is at most ``tolerance``.
    """
    named = _named(params)
    if coords_per_tensor < 1:
        raise ValueError(f"coords_per_tensor must be >= 1, got {coords_per_tensor}")
    saved_rng = rng_state()
    try:
        return _run(fn, named, coords_per_tensor, h, tolerance, abs_floor, seed, detect_kinks)
    finally:
        set_rng_state(saved_rng)


def _run(
    fn: Callable[[], torch.Tensor],
    named: list[tuple[str, torch.Tensor]],
    coords_per_tensor: int,
    h: float,
    tolerance: float,
    abs_floor: float,
    seed: int,
    detect_kinks: bool,
) -> GradCheckReport:
    def evaluate() -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(seed)
        if not detect_kinks:
            return fn(), []
        with _KinkRecorder() as rec:
            out = fn()
        return out, rec.patterns

    loss, base_pattern = evaluate()
    if loss.ndim != 0:
        raise ValueError(f"gradcheck fn must return a scalar, got shape {tuple(loss.shape)}")
    tensors = [p for _, p in named]
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    rng = np.random.default_rng(seed)
    report = GradCheckReport(tolerance=tolerance)
    with torch.no_grad():
        for (name, p), g in zip(named, grads, strict=True):
            analytic_all = torch.zeros_like(p) if g is None else g.detach()
            # Visit coordinates in random order until enough are checked; a coordinate whose
            # +-h crosses a kink is skipped and replaced, up to 3x the requested number tried.
            order = rng.permutation(p.numel())[: 3 * coords_per_tensor]
            check = TensorCheck(name, 0, 0, 0.0, None, 0.0, 0.0)
            for i in order:
                if check.checked == coords_per_tensor:
                    break
                idx = tuple(int(k) for k in np.unravel_index(int(i), tuple(p.shape)))
                orig = p[idx].item()
                p[idx] = orig + h
                f_plus, pat_plus = evaluate()
                p[idx] = orig - h
                f_minus, pat_minus = evaluate()
                p[idx] = orig
                if detect_kinks and not (
                    _same(base_pattern, pat_plus) and _same(base_pattern, pat_minus)
                ):
                    check.kinks_skipped += 1
                    continue
                fp, fm = f_plus.item(), f_minus.item()
                numeric = (fp - fm) / (2 * h)
                analytic = analytic_all[idx].item()
                noise = _ROUNDING * max(abs(fp), abs(fm)) / h
                err = relative_error(analytic, numeric, abs_floor, noise)
                check.checked += 1
                if check.worst_index is None or err > check.worst:
                    check.worst, check.worst_index = err, idx
                    check.analytic, check.numeric = analytic, numeric
            report.tensors[name] = check
    return report
