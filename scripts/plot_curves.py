"""Plot the game scores of rlkit runs against frames and against wall time, as one PNG.

    python scripts/plot_curves.py runs/pong_paac [more run dirs] \\
        --out docs/pong_paac_fast_curve.png --published --reference "target=15"

One line per run directory (the mean of the last ``--window`` games, raw games faint behind it),
in two panels: emulator frames (agent steps x the run's frame skip for Atari; env steps otherwise)
and wall time spent running (gaps between a Ctrl-C and ``rlkit train --resume`` left out; a
resumed run's event files are stitched into one curve, see ``agents/curves.py``). Horizontal
lines: ``--published`` draws the game's published scores (``agents/published_results.py``),
``--reference LABEL=SCORE`` any other. ``--per-game`` draws one panel per game instead (score
against frames), for runs on several games. Needs the plot extra: ``pip install -e '.[plot]'``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.cli import _Parser
from agents.curves import SCORE_TAG, Curve, CurveError, read_curve, run_env
from agents.plotting import PlotError, plot_game_panels, plot_learning_curves
from agents.published_results import Reference, references_for


def parse_reference(text: str) -> Reference:
    """``"LABEL=SCORE"`` (e.g. ``"target=15"``) -> a reference line."""
    label, sep, score = text.rpartition("=")
    try:
        value = float(score)
    except ValueError:
        value = None
    if not sep or not label or value is None:
        raise argparse.ArgumentTypeError(f"expected LABEL=SCORE such as 'target=15', got {text!r}")
    return Reference(label, value, "command line", "-")


def published(run_dirs: list[Path]) -> list[Reference]:
    """The published scores of every game among ``run_dirs``, each once."""
    refs: list[Reference] = []
    for run_dir in run_dirs:
        refs += [r for r in references_for(run_env(run_dir)[0]) if r not in refs]
    return refs


def per_game(
    run_dirs: list[Path], curves: list[Curve], with_published: bool, extra: list[Reference]
) -> list[tuple[str, list[Curve], list[Reference]]]:
    """Runs grouped by env id, in order of first appearance: (id, its curves, its lines)."""
    games: dict[str, list[Curve]] = {}
    for run_dir, curve in zip(run_dirs, curves, strict=True):
        games.setdefault(run_env(run_dir)[0], []).append(curve)
    return [
        (env_id, game_curves, [*(references_for(env_id) if with_published else ()), *extra])
        for env_id, game_curves in games.items()
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plot_curves.py", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories (rlkit train)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--tag", default=SCORE_TAG, help=f"scalar tag (default {SCORE_TAG})")
    parser.add_argument(
        "--window",
        type=int,
        default=10,
        help="plot the mean of the last N games (default 10; 1 = raw)",
    )
    parser.add_argument(
        "--frames-per-step",
        type=int,
        default=None,
        help="x-axis frames per agent step (default: from each config.yaml)",
    )
    parser.add_argument(
        "--published",
        action="store_true",
        help="draw the game's published scores (agents/published_results.py)",
    )
    parser.add_argument(
        "--reference",
        type=parse_reference,
        action="append",
        default=[],
        metavar="LABEL=SCORE",
        help="draw a horizontal line (repeatable)",
    )
    parser.add_argument(
        "--per-game",
        action="store_true",
        help="one panel per game (score against frames), for runs on several games",
    )
    parser.add_argument("--title", default=None, help="figure title")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.window < 1:
            raise CurveError(f"--window must be >= 1, got {args.window}")
        curves = [
            read_curve(run, args.tag, frames_per_step=args.frames_per_step) for run in args.run_dirs
        ]
        if args.per_game:
            out = plot_game_panels(
                per_game(args.run_dirs, curves, args.published, args.reference),
                args.out,
                window=args.window,
                title=args.title,
            )
            print(f"wrote {out}")
            return 0
        refs = (published(args.run_dirs) if args.published else []) + args.reference
        out = plot_learning_curves(
            curves,
            args.out,
            references=refs,
            window=args.window,
            title=args.title,
            ylabel="game score" if args.tag == SCORE_TAG else args.tag,
        )
    except (CurveError, PlotError) as exc:
        print(f"rlkit: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
