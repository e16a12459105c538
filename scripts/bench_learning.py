"""Learning benchmark: train one config on several seeds to a frame budget, evaluate, and report
the scores and curves against the game's published results.

    python scripts/bench_learning.py configs/pong_paac.yaml --frames 40M --seeds 1 2 3 \\
        --out runs/bench_pong_paac
    python scripts/bench_learning.py configs/cartpole_paac.yaml --steps 400k --seeds 1 2 \\
        --parallel 2 --eval-episodes 10 --out runs/bench_cartpole_paac

Each seed's ``OUT/seed_S`` is an ordinary ``rlkit train`` run directory, filled by subprocesses:

1. ``python -m agents.cli train CONFIG --seed S --steps N --run-dir OUT/seed_S [--set ...]``; or,
   when ``checkpoints/last.pt`` is there but short of the budget, ``train --resume OUT/seed_S
   --steps N``; nothing when it has reached the budget or a confirmed target score stopped it.
2. ``python -m agents.cli evaluate OUT/seed_S/checkpoints/{last,best}.pt --episodes E --json
   OUT/seed_S/eval_{last,best}.json``, unless that JSON is already newer than its checkpoint
   (``best.pt`` exists only when the config runs periodic evaluations, ``train.eval_every``).

Then ``OUT/results.json``, ``OUT/results.md`` (per seed: final and best evaluation, agent steps,
frames, wall time; plus the mean over seeds) and ``OUT/curves.png`` (every seed against the
published scores of ``agents/published_results.py``), and the same JSON on stdout.

Stop it with Ctrl-C (or SIGTERM/SIGHUP to this script): the signal is passed on to the training
processes, which write their checkpoints and exit; the same command continues where it stopped.
``--set`` applies to new runs; a resumed run keeps the config it started with. ``--parallel K``
trains K seeds at once, each writing its output to ``OUT/seed_S/bench.log``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.cli import USER_ERRORS, _Parser
from agents.config import load_config
from agents.curves import CurveError, first_reach, frames_per_step, read_curve
from agents.launcher import Launcher, Stopped, budget_reached, run_state, train_args
from agents.plotting import PlotError, plot_learning_curves, require_matplotlib
from agents.published_results import Reference, references_for
from agents.runner import check_env_id

SUFFIXES = {"k": 10**3, "M": 10**6, "G": 10**9}


class BenchError(Exception):
    """A seed could not be trained or evaluated; the message names the seed and what to do."""


def parse_count(text: str) -> int:
    """``"40M"``, ``"400k"``, ``"2.5e6"`` or ``"3000"`` -> a positive integer."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kMG]?)\s*", text)
    try:
        value = float(match.group(1)) * SUFFIXES.get(match.group(2), 1) if match else -1.0
    except ValueError:
        value = -1.0
    if not value >= 1 or value != math.floor(value):
        raise argparse.ArgumentTypeError(
            f"expected a positive count such as 3000, 400k or 40M, got {text!r}"
        )
    return int(value)


def format_count(n: float) -> str:
    """``40_000_000`` -> ``"40M"``, ``2_500`` -> ``"2.5k"``."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.3g}"


def format_duration(seconds: float) -> str:
    """``8160`` -> ``"2h16m"``, ``185`` -> ``"3m05s"``, ``12.3`` -> ``"12s"``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@dataclass(frozen=True)
class Bench:
    """What to run: the settings every seed shares."""

    config: str
    env_id: str
    out: Path
    steps: int
    frames_per_step: int
    overrides: tuple[str, ...]
    eval_episodes: int
    window: int
    reach: tuple[float, ...]

    def run_dir(self, seed: int) -> Path:
        return self.out / f"seed_{seed}"


# ---------------------------------------------------------------------------------- one seed


def progress(run_dir: Path) -> dict[str, Any] | None:
    """``agents.launcher.run_state`` of the seed's run directory, a corrupt checkpoint named as
    the seed's problem."""
    try:
        return run_state(run_dir)
    except USER_ERRORS as exc:
        raise BenchError(f"{exc}; delete {run_dir} to train this seed again") from None


def finished(bench: Bench, state: dict[str, Any] | None) -> bool:
    """The run has reached the step budget, or a confirmed ``train.target_score`` stopped it."""
    return budget_reached(state, bench.steps)


def train(bench: Bench, seed: int, launcher: Launcher) -> dict[str, Any]:
    """Train (or resume) the seed to the budget; its final ``progress``."""
    run_dir = bench.run_dir(seed)
    state = progress(run_dir)
    if finished(bench, state):
        return state
    args = train_args(bench.config, run_dir, bench.steps, seed, bench.overrides, state)
    code = launcher.run(args, run_dir / "bench.log")
    where = f"see {run_dir / 'bench.log'}" if launcher.log_to_files else "see the message above"
    if code != 0:
        raise BenchError(
            f"seed {seed}: rlkit train exited with code {code} ({where}); fix it "
            "and run the same command again"
        )
    state = progress(run_dir)
    if not finished(bench, state):
        done = 0 if state is None else state["steps"]
        raise BenchError(
            f"seed {seed}: training stopped at agent step {done} of {bench.steps} "
            f"(the trainer was signalled; {where}); run the same command again to "
            "resume it"
        )
    return state


EVAL_KEYS = ("mean", "median", "std", "min", "max", "episodes")


def evaluate(bench: Bench, seed: int, name: str, launcher: Launcher) -> dict[str, Any] | None:
    """``rlkit evaluate`` of ``checkpoints/<name>.pt`` (None when there is no such checkpoint),
    reusing ``eval_<name>.json`` when it is newer than the checkpoint and has as many games."""
    run_dir = bench.run_dir(seed)
    ckpt, out = run_dir / "checkpoints" / f"{name}.pt", run_dir / f"eval_{name}.json"
    if not ckpt.exists():
        return None
    result = json.loads(out.read_text()) if out.exists() else {}
    stale = out.exists() and out.stat().st_mtime < ckpt.stat().st_mtime
    if stale or result.get("episodes") != bench.eval_episodes:
        args = ["evaluate", str(ckpt), "--episodes", str(bench.eval_episodes), "--json", str(out)]
        code = launcher.run(args, run_dir / "bench.log")
        if code != 0:
            raise BenchError(
                f"seed {seed}: rlkit evaluate {ckpt} exited with code {code}; fix "
                "it and run the same command again"
            )
        result = json.loads(out.read_text())
    summary = {key: result[key] for key in EVAL_KEYS}
    summary["human_normalized"] = result.get("human_normalized")  # when evaluate reports it
    return summary


def curve_summary(bench: Bench, seed: int) -> dict[str, Any]:
    """Training games of the seed: how many, the mean of the last ``window``, and when the mean
    of ``window`` games first reached each ``--reach`` score."""
    try:
        curve = read_curve(bench.run_dir(seed), frames_per_step=bench.frames_per_step)
    except CurveError:  # no game finished yet (a tiny budget)
        return {
            "train_games": 0,
            "train_last_mean": None,
            "reach": {f"{s:g}": None for s in bench.reach},
        }
    reach: dict[str, Any] = {}
    for score in bench.reach:
        i = first_reach(curve, score, bench.window)
        reach[f"{score:g}"] = (
            None
            if i is None
            else {
                "agent_steps": int(curve.steps[i]),
                "frames": int(curve.frames[i]),
                "wall_seconds": round(float(curve.wall[i]), 1),
            }
        )
    return {
        "train_games": len(curve.values),
        "train_last_mean": float(np.mean(curve.values[-bench.window :])),
        "reach": reach,
    }


def bench_seed(bench: Bench, seed: int, launcher: Launcher) -> dict[str, Any]:
    """Train, evaluate and summarise one seed."""
    state = train(bench, seed, launcher)
    return {
        "seed": seed,
        "run_dir": str(bench.run_dir(seed)),
        "agent_steps": state["steps"],
        "frames": state["steps"] * bench.frames_per_step,
        "wall_seconds": round(state["wall_seconds"], 1),
        "final": evaluate(bench, seed, "last", launcher),
        "best": evaluate(bench, seed, "best", launcher),
        **curve_summary(bench, seed),
    }


# ---------------------------------------------------------------------------------- reports


def mean_over_seeds(seeds: list[dict[str, Any]]) -> dict[str, float | None]:
    """The mean of each headline number over the seeds that have it."""

    def mean(*path: str) -> float | None:
        values = []
        for seed in seeds:
            value: Any = seed
            for key in path:
                value = None if value is None else value[key]
            values.append(value)
        present = [v for v in values if v is not None]
        return float(np.mean(present)) if present else None

    return {
        "final": mean("final", "mean"),
        "best": mean("best", "mean"),
        "final_human_normalized": mean("final", "human_normalized"),
        "train_last_mean": mean("train_last_mean"),
        "agent_steps": mean("agent_steps"),
        "frames": mean("frames"),
        "wall_seconds": mean("wall_seconds"),
    }


def _score(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    text = f"{result['mean']:.1f} (min {result['min']:g}, max {result['max']:g})"
    hn = result.get("human_normalized")
    return text if hn is None else f"{text}, {hn:.0f}% human"


def _mean_cell(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def markdown(report: dict[str, Any]) -> str:
    """``results.md``: the table a README quotes, with its command and sources."""
    b, m = report["budget"], report["mean"]
    lines = [
        f"# Learning benchmark: {report['config']}",
        "",
        f"Budget per seed: {format_count(b['agent_steps'])} agent steps "
        f"({format_count(b['frames'])} frames). Evaluation: `rlkit evaluate --episodes "
        f"{report['eval_episodes']}` of `last.pt` (final) and `best.pt` (the best periodic "
        f"evaluation); training mean: the last {report['window']} training games.",
        "",
        "| seed | final evaluation | best.pt evaluation | training mean | agent steps | frames "
        "| wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report["seeds"]:
        lines.append(
            f"| {s['seed']} | {_score(s['final'])} | {_score(s['best'])} | "
            f"{_mean_cell(s['train_last_mean'])} | {format_count(s['agent_steps'])} | "
            f"{format_count(s['frames'])} | {format_duration(s['wall_seconds'])} |"
        )
    lines.append(
        f"| mean | {_mean_cell(m['final'])} | {_mean_cell(m['best'])} | "
        f"{_mean_cell(m['train_last_mean'])} | {format_count(m['agent_steps'])} | "
        f"{format_count(m['frames'])} | {format_duration(m['wall_seconds'])} |"
    )
    for score in report["reach"]:
        cells = []
        for s in report["seeds"]:
            hit = s["reach"][f"{score:g}"]
            cells.append(
                f"seed {s['seed']}: "
                + (
                    "not reached"
                    if hit is None
                    else f"{format_count(hit['frames'])} frames, "
                    f"{format_duration(hit['wall_seconds'])}"
                )
            )
        lines += [
            "",
            f"Training mean of {report['window']} games first >= {score:g}: "
            + "; ".join(cells)
            + ".",
        ]
    lines += [
        "",
        "Published scores (dashed lines in curves.png):"
        if report["references"]
        else "No published scores for this game in agents/published_results.py.",
    ]
    lines += [
        f"- {r['label']}: {r['score']:g} ({r['budget']}); {r['source']}"
        for r in report["references"]
    ]
    if report["curves_png"]:
        lines += ["", "![curves](curves.png)"]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def plot(bench: Bench, seeds: list[int], refs: tuple[Reference, ...]) -> Path | None:
    """``OUT/curves.png``: every seed that finished a game, against the published lines."""
    curves = []
    for seed in seeds:
        try:
            curves.append(
                read_curve(
                    bench.run_dir(seed), frames_per_step=bench.frames_per_step, label=f"seed {seed}"
                )
            )
        except CurveError:
            continue
    if not curves:
        print("bench_learning: no training game finished; no curves.png", file=sys.stderr)
        return None
    return plot_learning_curves(
        curves,
        bench.out / "curves.png",
        references=refs,
        window=bench.window,
        title=f"{bench.config}",
    )


# ---------------------------------------------------------------------------------- command


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench_learning.py", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML config, e.g. configs/pong_paac.yaml")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument(
        "--frames",
        type=parse_count,
        help="budget per seed in emulator frames (agent steps x frame skip on Atari), e.g. 40M",
    )
    budget.add_argument(
        "--steps",
        type=parse_count,
        help="budget per seed in agent steps summed over all envs, e.g. 10M",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1, 2, 3],
        help="seeds, trained in this order (default 1 2 3)",
    )
    parser.add_argument("--out", type=Path, required=True, help="benchmark directory")
    parser.add_argument(
        "--parallel", type=int, default=1, metavar="K", help="seeds trained at once (default 1)"
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=30,
        metavar="N",
        help="games per rlkit evaluate (default 30, the DQN protocol)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for new runs (repeatable)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=10,
        help="training games averaged for the curves and training mean (default 10)",
    )
    parser.add_argument(
        "--reach",
        type=float,
        nargs="+",
        default=[],
        metavar="SCORE",
        help="also report when the training mean first reached these scores",
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="skip curves.png (and the need for matplotlib)"
    )
    return parser


def make_bench(args: argparse.Namespace) -> Bench:
    """Validate everything a long run could trip on, before the first subprocess starts."""
    for name, value in (
        ("--parallel", args.parallel),
        ("--eval-episodes", args.eval_episodes),
        ("--window", args.window),
    ):
        if value < 1:
            raise BenchError(f"{name} must be >= 1, got {value}")
    if len(set(args.seeds)) != len(args.seeds):
        raise BenchError(
            f"--seeds has duplicates ({' '.join(map(str, args.seeds))}); give each seed once"
        )
    if args.out.exists() and not args.out.is_dir():
        raise BenchError(f"--out {args.out} is a file; pass a directory")
    if not args.no_plot:
        require_matplotlib()
    cfg = load_config(args.config, args.overrides)
    check_env_id(cfg.env.id)
    fps = frames_per_step(cfg.env.id, cfg.env.frame_skip)
    steps = args.steps if args.steps is not None else math.ceil(args.frames / fps)
    return Bench(
        config=args.config,
        env_id=cfg.env.id,
        out=args.out,
        steps=steps,
        frames_per_step=fps,
        overrides=tuple(args.overrides),
        eval_episodes=args.eval_episodes,
        window=args.window,
        reach=tuple(args.reach),
    )


def run_seeds(bench: Bench, seeds: list[int], parallel: int) -> list[dict[str, Any]]:
    """Every seed's result, ``parallel`` at a time; ``Stopped`` or ``BenchError`` if any
    failed (the others still finish or stop cleanly first)."""
    launcher = Launcher(log_to_files=parallel > 1, echo="bench_learning")
    with launcher.forwarding_signals(), ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(bench_seed, bench, seed, launcher) for seed in seeds]
        wait(futures)
    if launcher.stop.is_set():
        raise Stopped
    errors = [f.exception() for f in futures if f.exception() is not None]
    for error in errors[1:]:  # one line each; the first is raised
        print(f"rlkit: error: {error}", file=sys.stderr)
    if errors:
        raise errors[0]
    return [f.result() for f in futures]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        bench = make_bench(args)
        bench.out.mkdir(parents=True, exist_ok=True)
        seeds = run_seeds(bench, args.seeds, args.parallel)
        refs = references_for(bench.env_id)
        png = None if args.no_plot else plot(bench, args.seeds, refs)
    except (Stopped, KeyboardInterrupt):  # KeyboardInterrupt: before the handlers are set
        print(
            "rlkit: interrupted: the runs are checkpointed; run the same command again to continue",
            file=sys.stderr,
        )
        return 130
    except (BenchError, PlotError, *USER_ERRORS) as exc:
        print(f"rlkit: error: {exc}", file=sys.stderr)
        return 1
    report = {
        "config": bench.config,
        "command": shlex.join(["python", "scripts/bench_learning.py", *argv]),
        "budget": {"agent_steps": bench.steps, "frames": bench.steps * bench.frames_per_step},
        "eval_episodes": bench.eval_episodes,
        "window": bench.window,
        "reach": list(bench.reach),
        "seeds": seeds,
        "mean": mean_over_seeds(seeds),
        "references": [asdict(r) for r in refs],
        "curves_png": None if png is None else str(png),
    }
    (bench.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (bench.out / "results.md").write_text(markdown(report))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
