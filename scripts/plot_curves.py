"""Plot a TensorBoard scalar (game score by default) of one or more runs against frames, as a PNG.

    python scripts/plot_curves.py runs/pong_paac [more run dirs] --out docs/pong_paac.png

Reads every event file under each run directory with TensorBoard's ``EventAccumulator`` and
draws with OpenCV and numpy (matplotlib is not a dependency). The x axis is emulator *frames*:
logged steps are agent steps, multiplied by the run's ``env.frame_skip`` for Atari ids (read from
the run's ``config.yaml``; 1 for other envs, or ``--frames-per-step`` to force it).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml

DEFAULT_TAG = "game/score"
# Distinct colours (BGR) for up to 8 runs; they cycle after that.
COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (34, 189, 188)]
FONT = cv2.FONT_HERSHEY_SIMPLEX


class PlotError(Exception):
    """A run directory or tag problem; the message names the fix."""


def read_scalars(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``tag`` from all event files under ``run_dir``, sorted by step."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    event_dirs = sorted({p.parent for p in run_dir.rglob("events.out.tfevents.*")})
    if not event_dirs:
        raise PlotError(f"no TensorBoard event files under {run_dir}; pass a run directory "
                        "written by `rlkit train`")
    steps: list[int] = []
    values: list[float] = []
    seen: set[str] = set()
    for directory in event_dirs:
        acc = EventAccumulator(str(directory), size_guidance={SCALARS: 0})
        acc.Reload()
        tags = acc.Tags().get("scalars", [])
        seen.update(tags)
        if tag in tags:
            for event in acc.Scalars(tag):
                steps.append(event.step)
                values.append(event.value)
    if not steps:
        raise PlotError(f"tag {tag!r} not found in {run_dir}; pass --tag with one of: "
                        f"{', '.join(sorted(seen)) or '(no scalars logged yet)'}")
    order = np.argsort(np.asarray(steps), kind="stable")
    return np.asarray(steps, dtype=np.float64)[order], np.asarray(values, dtype=np.float64)[order]


def frames_per_step(run_dir: Path) -> int:
    """Frames per logged step: the run's ``env.frame_skip`` for Atari ids, else 1."""
    from envs import is_atari

    config = run_dir / "config.yaml"
    if not config.is_file():
        raise PlotError(f"{config} not found; pass --frames-per-step to set the x-axis unit")
    env = (yaml.safe_load(config.read_text()) or {}).get("env", {})
    return int(env.get("frame_skip", 4)) if is_atari(str(env.get("id", ""))) else 1


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over up to ``window`` points (shorter at the start)."""
    if window <= 1 or len(values) == 0:
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (cumulative[idx] - cumulative[start]) / (idx - start)


def nice_ticks(lo: float, hi: float, count: int = 6) -> np.ndarray:
    """Round tick positions (1, 2, 2.5 or 5 x 10^k apart) covering ``[lo, hi]``."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(lo / step) * step, math.ceil(hi / step) * step
    return np.arange(first, last + step * 0.5, step)


def format_number(x: float) -> str:
    """Compact axis label: 20M, 1.5k, 0.25, -21."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:.4g}{suffix}"
    return f"{x:.4g}"


def render(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (960, 600),
) -> np.ndarray:
    """Draw ``(label, x, y)`` curves on a white canvas with axes, ticks and a legend (BGR)."""
    width, height = size
    left, right, top, bottom = 80, 30, 50, 60
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    xs = np.concatenate([c[1] for c in curves])
    ys = np.concatenate([c[2] for c in curves])
    x_ticks = nice_ticks(0.0, float(xs.max()))
    y_ticks = nice_ticks(float(ys.min()), float(ys.max()))
    x_lo, x_hi = x_ticks[0], x_ticks[-1]
    y_lo, y_hi = y_ticks[0], y_ticks[-1]

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)
        return np.stack([px, py], axis=-1).round().astype(np.int32)

    grey, black = (220, 220, 220), (0, 0, 0)
    for x in x_ticks:
        (px, _), = to_px(np.array([x]), np.array([y_lo]))
        cv2.line(img, (int(px), top), (int(px), height - bottom), grey, 1)
        label = format_number(x)
        (tw, _), _ = cv2.getTextSize(label, FONT, 0.45, 1)
        cv2.putText(img, label, (int(px) - tw // 2, height - bottom + 20), FONT, 0.45, black, 1,
                    cv2.LINE_AA)
    for y in y_ticks:
        (_, py), = to_px(np.array([x_lo]), np.array([y]))
        cv2.line(img, (left, int(py)), (width - right, int(py)), grey, 1)
        label = format_number(y)
        (tw, th), _ = cv2.getTextSize(label, FONT, 0.45, 1)
        cv2.putText(img, label, (left - tw - 8, int(py) + th // 2), FONT, 0.45, black, 1,
                    cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (width - right, height - bottom), black, 1)
    for i, (_, x, y) in enumerate(curves):
        points = to_px(x, y).reshape(-1, 1, 2)
        cv2.polylines(img, [points], False, COLOURS[i % len(COLOURS)], 2, cv2.LINE_AA)
    (tw, _), _ = cv2.getTextSize(title, FONT, 0.6, 1)
    cv2.putText(img, title, ((width - tw) // 2, 30), FONT, 0.6, black, 1, cv2.LINE_AA)
    (tw, _), _ = cv2.getTextSize(xlabel, FONT, 0.5, 1)
    cv2.putText(img, xlabel, ((width - tw) // 2, height - 15), FONT, 0.5, black, 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (10, top - 12), FONT, 0.5, black, 1, cv2.LINE_AA)
    for i, (label, _, _) in enumerate(curves):  # legend, top-left inside the axes
        y = top + 20 + 20 * i
        cv2.line(img, (left + 10, y - 4), (left + 35, y - 4), COLOURS[i % len(COLOURS)], 2)
        cv2.putText(img, label, (left + 42, y), FONT, 0.45, black, 1, cv2.LINE_AA)
    return img


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories (rlkit train)")
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"scalar tag (default {DEFAULT_TAG})")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--smooth", type=int, default=10,
                        help="moving-average window in logged points (default 10; 1 = raw)")
    parser.add_argument("--frames-per-step", type=int, default=None,
                        help="x-axis frames per logged step (default: from each config.yaml)")
    parser.add_argument("--title", default=None, help="plot title (default: the tag)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        curves, scales = [], []
        for run_dir in args.run_dirs:
            steps, values = read_scalars(run_dir, args.tag)
            scale = args.frames_per_step or frames_per_step(run_dir)
            scales.append(scale)
            curves.append((run_dir.name, steps * scale, smooth(values, args.smooth)))
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atari = all(scale > 1 for scale in scales)
    xlabel = "frames" if atari else "environment steps (frames per step: " + \
        ", ".join(str(scale) for scale in scales) + ")"
    img = render(curves, title=args.title or args.tag, xlabel=xlabel, ylabel=args.tag)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), img):
        print(f"error: could not write {args.out}; use a .png path in a writable folder",
              file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
