"""Learning-curve figures with matplotlib, an optional extra (``pip install -e '.[plot]'``).

matplotlib is imported only when a figure is drawn, so training and evaluation never need it. The
figure is drawn with matplotlib's object API on an Agg canvas: no display, and no change to the
global pyplot backend of a notebook or program that calls this.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.curves import Curve, rolling_mean
from agents.published_results import Reference

INSTALL_HINT = "install the plot extra: pip install -e '.[plot]'"


class PlotError(RuntimeError):
    """A figure cannot be drawn (matplotlib missing, nothing to plot); the message says why."""


def require_matplotlib() -> None:
    """Raise ``PlotError`` naming the extra to install unless matplotlib can be imported (so a
    long benchmark can check before it trains, not fail after)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise PlotError(f"matplotlib is not installed; {INSTALL_HINT}") from None


def _wall_unit(curves: Sequence[Curve]) -> tuple[float, str]:
    """Hours for runs longer than two hours, minutes down to two minutes, else seconds."""
    longest = max(float(c.wall.max()) for c in curves)
    return next(
        (size, unit)
        for size, unit in ((3600.0, "hours"), (60.0, "minutes"), (1.0, "seconds"))
        if longest > 2 * size or size == 1.0
    )


def _draw_curves(
    axes: Any,
    curves: Sequence[Curve],
    x_of: Callable[[Curve], np.ndarray],
    window: int,
    *,
    labels: bool,
) -> None:
    """One line per curve (mean of the last ``window`` games, raw games faint behind it)."""
    for i, curve in enumerate(curves):
        colour = f"C{i % 10}"
        x = x_of(curve)
        if window > 1:
            axes.plot(x, curve.values, color=colour, alpha=0.15, linewidth=0.8)
        mean = rolling_mean(curve.values, window)
        axes.plot(x, mean, color=colour, linewidth=1.8, label=curve.label if labels else None)


def _draw_references(axes: Any, references: Sequence[Reference], *, labels: bool) -> None:
    """A horizontal grey line per published score, dashed, dotted, dash-dotted in turn."""
    for j, ref in enumerate(references):
        style = {"color": "0.35", "linestyle": ("--", ":", "-.")[j % 3], "linewidth": 1.2}
        label = f"{ref.label}: {ref.score:g}" if labels else None
        axes.axhline(ref.score, label=label, **style)


def _frames_label(curves: Sequence[Curve]) -> str:
    return "emulator frames" if all(c.frames_per_step > 1 for c in curves) else "environment steps"


def _save(fig: Any, out: str | Path) -> Path:
    """Write the figure, or raise ``PlotError`` naming the path and the fix."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    except (OSError, ValueError) as exc:  # unwritable folder, unknown file extension
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise PlotError(
            f"cannot write {out} ({reason}); pass a .png path in a writable folder"
        ) from None
    return out


def plot_learning_curves(
    curves: Sequence[Curve],
    out: str | Path,
    *,
    references: Sequence[Reference] = (),
    window: int = 10,
    title: str | None = None,
    ylabel: str = "game score",
) -> Path:
    """Write a PNG with two panels, score against frames and against wall time, one line per
    curve (mean of the last ``window`` games, raw games faint behind it) and a dashed
    horizontal line per reference score."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    if not curves:
        raise PlotError("no curves to plot; pass at least one run directory")
    fig = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(fig)
    by_frames, by_wall = fig.subplots(1, 2, sharey=True)
    scale, unit = _wall_unit(curves)
    by_frames.set_xlabel(_frames_label(curves))
    by_frames.xaxis.set_major_formatter(EngFormatter(sep=""))
    by_wall.set_xlabel(f"wall time ({unit}, running time only)")
    smoothed = f"mean of last {window} games" if window > 1 else "per game"
    by_frames.set_ylabel(f"{ylabel} ({smoothed})")
    _draw_curves(by_frames, curves, lambda c: c.frames, window, labels=True)
    _draw_curves(by_wall, curves, lambda c: c.wall / scale, window, labels=False)
    _draw_references(by_frames, references, labels=True)
    _draw_references(by_wall, references, labels=False)
    for axes in (by_frames, by_wall):
        axes.set_xlim(left=0)
        axes.grid(alpha=0.3)
    by_frames.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, out)


def plot_game_panels(
    games: Sequence[tuple[str, Sequence[Curve], Sequence[Reference]]],
    out: str | Path,
    *,
    window: int = 10,
    title: str | None = None,
) -> Path:
    """Write a PNG with one panel per game (its name, its runs' curves against frames, its
    published scores): games score on different scales, so they do not share an axis."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    if not games:
        raise PlotError("no curves to plot; pass at least one run directory")
    columns = min(3, len(games))
    rows = -(-len(games) // columns)
    fig = Figure(figsize=(5 * columns, 4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    panels = fig.subplots(rows, columns, squeeze=False).ravel()
    for axes, (name, curves, references) in zip(panels, games, strict=False):
        _draw_curves(axes, curves, lambda c: c.frames, window, labels=True)
        _draw_references(axes, references, labels=True)
        axes.set_title(name)
        axes.set_xlabel(_frames_label(curves))
        axes.xaxis.set_major_formatter(EngFormatter(sep=""))
        axes.set_xlim(left=0)
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="x-small")
    for axes in panels[len(games) :]:
        axes.set_visible(False)
    panels[0].set_ylabel(f"game score (mean of last {window} games)" if window > 1 else "score")
    if title:
        fig.suptitle(title)
    return _save(fig, out)
