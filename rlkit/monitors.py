"""Training monitors from the CS231n notes: update/weight ratios, gradient norms,
activation statistics, first-layer filter images, and a NaN/Inf guard.

All of them run on the device and convert to Python numbers only when asked, so ``UpdateStep``
can call them every ``monitor_every`` updates without a host sync on the other updates.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

NamedTensors = Iterable[tuple[str, torch.Tensor]]

# The notes' rule of thumb: ||update|| / ||weights|| should be around 1e-3 per parameter tensor.
TARGET_UPDATE_RATIO = 1e-3


class NonFiniteError(RuntimeError):
    """A loss, gradient or parameter became NaN or infinite.

    ``what`` names it (``"loss"``, ``"gradient in '0.weight'"``) and ``update`` is the update
    at which it was found, for ``RunDiagnostics``' list of NaN-guard events.
    """

    def __init__(self, message: str, *, what: str = "value", update: int | None = None) -> None:
        super().__init__(message)
        self.what = what
        self.update = update


class UpdateRatioWarning(RuntimeWarning):
    """An update/weight ratio is more than 10x away from the ~1e-3 rule of thumb."""


def tensor_norms(named: NamedTensors) -> dict[str, torch.Tensor]:
    """L2 norm of each tensor, computed with one vectorised kernel; values stay on device."""
    names, tensors = _split(named)
    if not tensors:
        return {}
    return dict(zip(names, torch._foreach_norm(tensors, 2.0), strict=True))


def grad_norms(named_params: NamedTensors) -> dict[str, torch.Tensor]:
    """Per-tensor gradient norms (parameters without a gradient are left out)."""
    return tensor_norms((n, p.grad) for n, p in named_params if p.grad is not None)


def _split(named: NamedTensors) -> tuple[list[str], list[torch.Tensor]]:
    pairs = list(named)
    return [n for n, _ in pairs], [t.detach() for _, t in pairs]


class NaNGuard:
    """Stops training at the first non-finite loss, gradient or parameter, naming where.

    The loss is checked every update without a host sync: a 0-d device tensor remembers the
    first update whose loss was non-finite and is read only by ``check()``. On the CPU there is
    no sync to avoid, so ``record_loss`` raises immediately unless ``immediate_on_cpu=False``.
    """

    def __init__(self, immediate_on_cpu: bool = True) -> None:
        self.immediate_on_cpu = immediate_on_cpu
        self._first_bad: torch.Tensor | None = None

    @staticmethod
    def _advice() -> str:
        return "lower the learning rate, set max_grad_norm, or check the inputs and rewards"

    def record_loss(self, loss: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss.detach()).all()
        if loss.device.type == "cpu" and self.immediate_on_cpu:
            if bool(bad):
                raise NonFiniteError(f"loss is {loss.item()} at update {step}; {self._advice()}",
                                     what="loss", update=step)
            return
        if self._first_bad is None or self._first_bad.device != loss.device:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        self._first_bad.masked_fill_(bad & (self._first_bad < 0), step)

    def check(self) -> None:
        """Raise if any recorded loss was non-finite (one host sync)."""
        if self._first_bad is not None:
            first = int(self._first_bad)
            if first >= 0:
                raise NonFiniteError(f"loss became non-finite at update {first}; {self._advice()}",
                                     what="loss", update=first)

    def check_tensors(self, named: NamedTensors, step: int, kind: str = "tensor") -> None:
        """Raise naming the first tensor with a NaN/Inf element (one host sync for all)."""
        names, tensors = _split(named)
        if not tensors:
            return
        norms = torch._foreach_norm(tensors, 2.0)  # a NaN/Inf element makes the norm non-finite
        finite = torch.isfinite(torch.stack([n.to(norms[0].device) for n in norms]))
        if not bool(finite.all()):
            name = names[int((~finite).nonzero()[0, 0])]
            raise NonFiniteError(
                f"non-finite {kind} in {name!r} at update {step}; {self._advice()}",
                what=f"{kind} in {name!r}", update=step,
            )


class UpdateRatioMonitor:
    """||p_after - p_before|| / ||p_before|| per parameter tensor (the notes' ~1e-3 heuristic).

    Use: ``before = mon.snapshot()`` before ``optimizer.step()``, ``mon.measure(before)`` after.
    A weight tensor (2+ dims) whose ratio is outside ``[target / 10, target * 10]`` triggers an
    ``UpdateRatioWarning`` (too low: LR probably too small; too high: too large). Biases are
    measured but not warned about: they often start at zero, where the ratio is meaningless.
    Each tensor is warned about once per direction (too low / too high), so a long run does not
    flood its console; the ratios themselves go to TensorBoard on every monitor update.
    """

    def __init__(self, named_params: NamedTensors, target: float = TARGET_UPDATE_RATIO) -> None:
        self.names, self.params = _split(named_params)
        self.target = target
        self._warned: set[tuple[str, bool]] = set()

    def snapshot(self) -> list[torch.Tensor]:
        return [p.clone() for p in self.params]

    def measure(self, before: list[torch.Tensor]) -> dict[str, float]:
        if not self.params:
            return {}
        deltas = torch._foreach_sub(self.params, before)
        upd = torch.stack(torch._foreach_norm(deltas, 2.0))
        ref = torch.stack(torch._foreach_norm(before, 2.0))
        ratios = (upd / ref).tolist()  # one host sync
        out = dict(zip(self.names, ratios, strict=True))
        off = []
        for n, r, p in zip(self.names, ratios, self.params, strict=True):
            if p.ndim < 2 or not math.isfinite(r) or self.target / 10 <= r <= self.target * 10:
                continue
            key = (n, r > self.target)
            if key not in self._warned:
                self._warned.add(key)
                off.append(f"{n}={r:.1e}")
        if off:
            warnings.warn(
                f"update/weight ratio off the ~{self.target:.0e} rule by more than 10x: "
                f"{', '.join(off)}; adjust the learning rate",
                UpdateRatioWarning,
                stacklevel=2,
            )
        return out


# Activation functions whose output statistics are tracked, and what "unhealthy" means for them.
RELU_LIKE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Hardtanh)
_SATURATING: dict[type[nn.Module], tuple[float, float]] = {
    nn.Tanh: (-0.99, 0.99),
    nn.Sigmoid: (0.01, 0.99),
}


class ActivationMonitor:
    """Statistics of activation outputs collected with forward hooks while ``capture()`` is active.

    Per activation module: ``mean``, ``std``; for ReLU-like layers ``zero`` (fraction of outputs
    that are <= 0) and ``dead`` (fraction of units that are <= 0 for every example of the batch);
    for tanh/sigmoid ``saturated`` (fraction of outputs within 1% of the asymptotes). A unit is a
    feature of a fully connected layer and a channel of a convolution, dead only if it is off at
    every position, as in Sokar et al. 2023: a position that sees a constant input (Pong's
    background) is off for every frame while its channel still works elsewhere, so counting
    positions would report lost capacity that is not lost. Hooks exist only inside
    ``capture()``, so ordinary forwards pay nothing.
    """

    def __init__(self, model: nn.Module) -> None:
        self.modules: list[tuple[str, nn.Module]] = [
            (name or type(m).__name__, m)
            for name, m in model.named_modules()
            if isinstance(m, RELU_LIKE + tuple(_SATURATING))
        ]
        self._stats: dict[str, dict[str, torch.Tensor]] = {}

    def _hook(self, name: str, module: nn.Module) -> Any:
        def hook(_mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            y = out.detach().float()
            stats = {"mean": y.mean(), "std": y.std() if y.numel() > 1 else y.new_zeros(())}
            if isinstance(module, RELU_LIKE):
                off = y <= 0
                stats["zero"] = off.float().mean()
                if y.ndim == 4:  # (batch, channels, height, width): a unit is a channel
                    stats["dead"] = off.all(dim=0).flatten(1).all(dim=1).float().mean()
                elif y.ndim >= 2:
                    stats["dead"] = off.all(dim=0).float().mean()
            else:
                lo, hi = _SATURATING[type(module)]
                stats["saturated"] = ((y <= lo) | (y >= hi)).float().mean()
            self._stats[name] = stats

        return hook

    @contextlib.contextmanager
    def capture(self) -> Iterator[ActivationMonitor]:
        self._stats = {}
        handles = [m.register_forward_hook(self._hook(n, m)) for n, m in self.modules]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def stats(self) -> dict[str, float]:
        """Flat ``{"<module>/<stat>": value}`` from the last capture (one host sync)."""
        keys = [f"{n}/{k}" for n, d in self._stats.items() for k in d]
        vals = [v for d in self._stats.values() for v in d.values()]
        if not vals:
            return {}
        return dict(zip(keys, torch.stack([v.cpu() for v in vals]).tolist(), strict=True))


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first ``nn.Conv2d`` in registration order (the layer whose filters are worth viewing)."""
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def filter_image(conv_weight: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """Tile first-layer filters ``(out, in, kh, kw)`` into one image ``(C, H, W)`` in ``[0, 1]``.

    Three input channels: one RGB tile per filter, in a square-ish grid. Otherwise (e.g. Atari's
    four stacked frames) one grayscale tile per (filter, input channel): a row per filter. Each
    tile is min-max normalised on its own, so smooth, structured filters are visible and noisy
    ones (a sign of too little training or too high a learning rate) stand out.
    """
    if conv_weight.ndim != 4:
        raise ValueError(
            f"filter_image wants a conv weight (out, in, kh, kw), got {tuple(conv_weight.shape)}"
        )
    w = conv_weight.detach().float().cpu()
    out_ch, in_ch, kh, kw = w.shape
    if in_ch == 3:
        tiles, cols = w, math.ceil(math.sqrt(out_ch))
    else:
        tiles = w.reshape(out_ch * in_ch, 1, kh, kw)
        cols = in_ch if in_ch > 1 else math.ceil(math.sqrt(out_ch))
    flat = tiles.reshape(tiles.shape[0], -1)
    lo = flat.min(dim=1).values[:, None, None, None]
    hi = flat.max(dim=1).values[:, None, None, None]
    tiles = (tiles - lo) / (hi - lo).clamp_min(1e-12)
    rows = math.ceil(tiles.shape[0] / cols)
    channels = tiles.shape[1]
    img = torch.zeros(channels, rows * (kh + pad) + pad, cols * (kw + pad) + pad)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        top, left = pad + r * (kh + pad), pad + c * (kw + pad)
        img[:, top : top + kh, left : left + kw] = tile
    return img


DEAD_UNITS_FLAG = 0.6
"""A layer whose latest dead-unit fraction reaches this is flagged in the run summary (the same
bound ``rlkit check`` warns at for units killed by updates)."""


class RunDiagnostics:
    """What the in-run monitors saw over a whole run, per layer, for the end-of-run summary.

    ``UpdateStep`` feeds it the values its monitors already compute on monitor updates
    (``UpdateRatioMonitor.measure``, ``ActivationMonitor.stats``) and every NaN-guard event, so
    nothing is measured twice. It keeps, per weight tensor, the min..max update/weight ratio;
    per ReLU-like activation, the latest and the largest dead-unit fraction; and the NaN-guard
    events (their count, and the first ``MAX_EVENTS`` with the update, what was non-finite and
    what the guard did). ``state_dict`` makes the summary of a resumed run cover the whole run.
    """

    MAX_EVENTS = 20

    def __init__(self, target: float = TARGET_UPDATE_RATIO) -> None:
        self.target = target
        self.ratio_range: dict[str, list[float]] = {}
        """Weight tensor name -> ``[min, max]`` update/weight ratio over the monitor updates."""
        self.dead: dict[str, list[float]] = {}
        """Activation module name -> ``[latest, max]`` dead-unit fraction."""
        self.nan_count = 0
        self.nan_events: list[dict[str, Any]] = []
        """The first ``MAX_EVENTS`` NaN-guard events: ``{"update", "what", "action"}``."""

    def observe_ratios(self, ratios: dict[str, float]) -> None:
        for name, r in ratios.items():
            if not math.isfinite(r):
                continue
            lo_hi = self.ratio_range.setdefault(name, [r, r])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], r), max(lo_hi[1], r)

    def observe_activations(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            module, _, stat = key.rpartition("/")
            if stat != "dead":
                continue
            latest_max = self.dead.setdefault(module, [value, value])
            latest_max[0], latest_max[1] = value, max(latest_max[1], value)

    def record_nan(self, update: int, what: str, action: str) -> None:
        """One NaN-guard event: at ``update``, ``what`` was non-finite; ``action`` is what the
        guard did (``"skipped the update"``, ``"stopped training"``)."""
        self.nan_count += 1
        if len(self.nan_events) < self.MAX_EVENTS:
            self.nan_events.append({"update": int(update), "what": what, "action": action})

    def problems(self) -> list[str]:
        """What the summary flags: ratios more than 10x off the rule (what the in-run monitor
        warns about), layers at least ``DEAD_UNITS_FLAG`` dead now, and any NaN-guard event."""
        out = []
        lo, hi = self.target / 10, self.target * 10
        off = [n for n, (a, b) in self.ratio_range.items() if a < lo or b > hi]
        if off:
            out.append(f"update/weight ratio outside {lo:g}..{hi:g} in {', '.join(off)}")
        dead = [n for n, (latest, _) in self.dead.items() if latest >= DEAD_UNITS_FLAG]
        if dead:
            out.append(f"at least {DEAD_UNITS_FLAG:.0%} dead units in {', '.join(dead)}")
        if self.nan_count:
            out.append(f"{self.nan_count} NaN-guard event(s)")
        return out

    def _nan_lines(self) -> list[str]:
        if not self.nan_count:
            return ["NaN guard: no events"]
        lines = [f"NaN guard: {self.nan_count} event(s)"]
        lines += [f"  update {e['update']}: non-finite {e['what']}, {e['action']}"
                  for e in self.nan_events]
        if self.nan_count > len(self.nan_events):
            lines.append(f"  ... and {self.nan_count - len(self.nan_events)} more")
        return lines

    def lines(self) -> list[str]:
        """The summary as plain-text lines (a header line, then one line per layer)."""
        out = [f"update/weight ratio per weight tensor, min..max over the run (rule: "
               f"~{self.target:.0e}):"]
        out += [f"  {n}: {a:.1e}..{b:.1e}" for n, (a, b) in self.ratio_range.items()] or \
            ["  (no monitor update yet)"]
        out.append("dead units per activation, latest (max over the run):")
        out += [f"  {n}: {latest:.0%} ({peak:.0%})" for n, (latest, peak) in self.dead.items()] \
            or ["  (no ReLU-like layer measured)"]
        return out + self._nan_lines()

    def markdown(self) -> str:
        """The same summary as Markdown tables, for TensorBoard's text tab."""
        rows = ["| weight tensor | ratio min | ratio max |", "|---|---|---|"]
        rows += [f"| {n} | {a:.2e} | {b:.2e} |" for n, (a, b) in self.ratio_range.items()]
        rows += ["", "| activation | dead (latest) | dead (max) |", "|---|---|---|"]
        rows += [f"| {n} | {latest:.1%} | {peak:.1%} |" for n, (latest, peak) in self.dead.items()]
        rows += [""] + [f"    {line}" for line in self._nan_lines()]
        return "\n".join(rows)

    def state_dict(self) -> dict[str, Any]:
        return {"ratio_range": {n: list(v) for n, v in self.ratio_range.items()},
                "dead": {n: list(v) for n, v in self.dead.items()},
                "nan_count": self.nan_count, "nan_events": [dict(e) for e in self.nan_events]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ratio_range = {n: list(v) for n, v in state["ratio_range"].items()}
        self.dead = {n: list(v) for n, v in state["dead"].items()}
        self.nan_count = int(state["nan_count"])
        self.nan_events = [dict(e) for e in state["nan_events"]]
