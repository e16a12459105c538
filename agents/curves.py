"""Learning curves of ``rlkit train`` runs, read back from their TensorBoard event files.

The runner logs every finished training game as ``game/score`` at the learner's agent-step
counter (summed over all envs). A run that was stopped and continued with ``--resume`` has one
event file per segment; ``read_curve`` stitches them into one curve whose steps and wall time
only go forward:

* A resumed segment restarts from the last checkpoint, so events an earlier segment logged at or
  after the resumed segment's first step were replayed (or lost with the killed process) and are
  dropped: the later segment is the one the checkpoint continued.
* Wall time counts only time spent running: each segment's clock starts where the kept part of the
  previous one ended, so the hours between a Ctrl-C and the ``--resume`` are not counted. It runs
  from the moment each segment opened its event file, so it includes the seconds spent building
  the envs (the runner's own ``elapsed`` in ``last.pt`` starts after them).

Frames are agent steps times the run's frame skip for Atari ids (1 for other envs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from envs import is_atari

SCORE_TAG = "game/score"
"""The tag under which ``agents.runner`` logs the score of every finished training game."""


class CurveError(ValueError):
    """A run directory cannot give the asked-for curve; the message names the fix."""


@dataclass(frozen=True)
class Curve:
    """One run's scalar series: agent ``steps``, ``frames``, ``wall`` seconds and ``values``."""

    label: str
    steps: np.ndarray
    frames: np.ndarray
    wall: np.ndarray
    values: np.ndarray
    segments: int
    """How many event files (training segments: the first run plus each resume) it joins."""
    frames_per_step: int


@dataclass
class _Segment:
    """Every scalar event of one event file, as parallel arrays."""

    start: float  # wall time at which the file was opened (its first event)
    tags: np.ndarray
    steps: np.ndarray
    wall: np.ndarray
    values: np.ndarray

    def keep(self, mask: np.ndarray) -> None:
        self.tags, self.steps = self.tags[mask], self.steps[mask]
        self.wall, self.values = self.wall[mask], self.values[mask]


def _read_segment(path: Path) -> _Segment:
    """All scalars of one event file (tensorboard is imported here: it takes a second)."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={SCALARS: 0})
    acc.Reload()
    tags, steps, wall, values = [], [], [], []
    for tag in acc.Tags().get("scalars", []):
        for event in acc.Scalars(tag):
            tags.append(tag)
            steps.append(event.step)
            wall.append(event.wall_time)
            values.append(event.value)
    try:
        start = acc.FirstEventTimestamp()
    except ValueError:  # an empty file: a process killed before it logged anything
        start = min(wall, default=0.0)
    return _Segment(
        start,
        np.asarray(tags, dtype=object),
        np.asarray(steps, dtype=np.int64),
        np.asarray(wall, dtype=np.float64),
        np.asarray(values, dtype=np.float64),
    )


def _stitch(segments: list[_Segment]) -> list[_Segment]:
    """Segments in the order they ran, with replayed events dropped and wall time made relative
    to the run's start with the gaps between segments removed (see the module docstring)."""
    kept: list[_Segment] = []
    for segment in sorted(segments, key=lambda s: s.start):
        if len(segment.steps) == 0:
            continue
        first = int(segment.steps.min())
        for earlier in kept:
            earlier.keep(earlier.steps < first)
        # Running seconds at the end of what is kept so far: this segment's clock starts there.
        elapsed = max((float(s.wall.max()) for s in kept if len(s.wall)), default=0.0)
        segment.wall = elapsed + (segment.wall - segment.start)
        kept.append(segment)
    return kept


def frames_per_step(env_id: str, frame_skip: int) -> int:
    """Emulator frames per agent step: the frame skip for Atari, 1 for every other env."""
    return int(frame_skip) if is_atari(env_id) else 1


def run_env(run_dir: str | Path) -> tuple[str, int]:
    """``(env.id, env.frame_skip)`` from ``run_dir/config.yaml`` (written by ``rlkit train``)."""
    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        raise CurveError(
            f"{config} not found; pass a run directory written by rlkit train "
            "(or --frames-per-step to set the x-axis unit)"
        )
    env = (yaml.safe_load(config.read_text()) or {}).get("env", {})
    return str(env.get("id", "")), int(env.get("frame_skip", 4))


def run_frames_per_step(run_dir: str | Path) -> int:
    """``frames_per_step`` of the env a run directory trained on."""
    return frames_per_step(*run_env(run_dir))


def read_curve(
    run_dir: str | Path,
    tag: str = SCORE_TAG,
    *,
    frames_per_step: int | None = None,
    label: str | None = None,
) -> Curve:
    """``tag`` of one run directory as a stitched ``Curve``, sorted by agent step.

    ``frames_per_step`` defaults to the run's own (``run_frames_per_step``).
    """
    run_dir = Path(run_dir)
    files = sorted(run_dir.rglob("events.out.tfevents.*"))
    if not files:
        raise CurveError(
            f"no TensorBoard event files under {run_dir}; pass a run directory "
            "written by rlkit train"
        )
    segments = _stitch([_read_segment(path) for path in files])
    seen = sorted({str(t) for s in segments for t in s.tags})
    parts = [
        (s.steps[s.tags == tag], s.wall[s.tags == tag], s.values[s.tags == tag]) for s in segments
    ]
    steps = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
    if len(steps) == 0:
        raise CurveError(
            f"tag {tag!r} not found in {run_dir}; pass --tag with one of: "
            f"{', '.join(seen) or '(no scalars logged yet)'}"
        )
    wall = np.concatenate([p[1] for p in parts])
    values = np.concatenate([p[2] for p in parts])
    order = np.argsort(steps, kind="stable")
    scale = run_frames_per_step(run_dir) if frames_per_step is None else frames_per_step
    return Curve(
        label or run_dir.name,
        steps[order],
        steps[order] * scale,
        wall[order],
        values[order],
        sum(1 for p in parts if len(p[0])),
        scale,
    )


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` points at each point (fewer at the start): the "mean of the
    last N games" that learning results are quoted as."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    values = np.asarray(values, dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - window, 0)
    return (cumulative[end] - cumulative[start]) / (end - start)


def first_reach(curve: Curve, threshold: float, window: int) -> int | None:
    """Index of the first game at which the mean of the last ``window`` games is >= ``threshold``
    (only once ``window`` games have been played), or None if the curve never gets there."""
    if len(curve.values) < window:
        return None
    means = rolling_mean(curve.values, window)[window - 1 :]
    hits = np.flatnonzero(means >= threshold)
    return int(hits[0]) + window - 1 if len(hits) else None
