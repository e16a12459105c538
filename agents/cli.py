"""The ``rlkit`` command line: ``rlkit train``, ``evaluate``, ``check``, ``export`` and ``search``.

Every mistake a user can make (bad config key or type, unknown env id, missing or corrupt
checkpoint, ``cuda`` without a GPU, a run directory with nothing to resume) ends with exit code
1 (2 for malformed command lines) and ONE line ``rlkit: error: <problem>; <fix>``, never a
traceback. Bugs still raise, so they are not disguised as user errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from agents.config import ConfigError, seed_problem
from agents.search import NAN_STOP, SearchError, make_search, run_search
from rlkit.atomic import OutputPathError, check_writable, write_text
from rlkit.checkpoint import CheckpointError
from rlkit.device import DeviceError, resolve_device
from rlkit.distributed import DistributedError, launch, under_launcher

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, CheckpointError, DeviceError,
                                            DistributedError, OutputPathError)
"""Exceptions that mean "the user asked for something wrong" (plus ``runner.RunError`` and
``envs.MissingExtraError``, an optional dependency not installed, imported with the learners)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``rlkit: error:`` line (exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rlkit: error: {message} (see {self.prog} --help)\n")


def print_json_report(prog: str, build: Callable[[], dict[str, Any]],
                      errors: tuple[type[Exception], ...] = USER_ERRORS) -> int:
    """A script's ending: print ``build()`` as JSON and return 0, or, when it raises one of
    ``errors``, one line ``PROG: error: ...`` on stderr and return 2."""
    try:
        report = build()
    except errors as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlkit", description="Deep RL for Atari: train and evaluate agents.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train an agent from a YAML config",
                           description="Train an agent. Either CONFIG or --resume RUN_DIR.")
    train.add_argument("config", nargs="?", help="YAML config, e.g. configs/cartpole_dqn.yaml")
    train.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override a config key, e.g. agent.gamma=0.98")
    train.add_argument("--steps", type=int, help="budget in agent steps summed over all envs")
    train.add_argument("--run-dir", help="run directory (default runs/<config>-<time>)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the config's)")
    train.add_argument("--seed", type=int, help="random seed (default: the config's)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.add_argument("--nproc", type=int, metavar="N",
                       help="data-parallel ranks on this machine, started by torchrun "
                            "(see docs/distributed.md); a resume needs the same N")

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint under the standard protocol",
                        description="Play full games (no life-loss episodes, unclipped score, "
                                    "up to 30 no-op starts) and print score statistics, the "
                                    "human-normalised score (Atari) and the protocol.")
    ev.add_argument("checkpoint", help="RUN_DIR/checkpoints/last.pt or best.pt")
    ev.add_argument("--episodes", type=int, default=30, help="games to play (default 30)")
    ev.add_argument("--epsilon", type=float, default=0.05,
                    help="exploration for value-based agents (default 0.05, the DQN protocol)")
    ev.add_argument("--greedy", action="store_true",
                    help="act greedily (argmax Q, or the most probable action for PAAC and PPO)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the games and the policy")
    ev.add_argument("--video", metavar="DIR", help="write an mp4 of the first game to DIR")
    ev.add_argument("--json", metavar="PATH", help="write the scores as JSON to PATH")
    ev.add_argument("--device", default="cpu", help="device for the network (default cpu)")
    sticky = ev.add_mutually_exclusive_group()
    sticky.add_argument("--sticky-actions", action="store_true",
                        help="Machado et al. 2018's protocol: the emulator repeats the previous "
                             "action with probability 0.25 (Atari)")
    sticky.add_argument("--repeat-action-probability", type=float, metavar="P",
                        help="sticky actions with probability P (default: the training config's)")

    ck = sub.add_parser(
        "check",
        help="sanity-check a config's learner before a long run",
        description="Build the config's learner and env and check, in about a minute: initial "
        "values, gradients (float64 finite differences), overfitting one batch, the "
        "update/weight ratio, dead units, and the projected wall time. One line per check; "
        "exit 3 when any check FAILs.",
    )
    ck.add_argument("config", help="YAML config, e.g. configs/pong_paac.yaml")
    ck.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. optim.lr=1e-4",
    )
    ck.add_argument("--json", metavar="PATH", help="write the report as JSON to PATH")

    se = sub.add_parser(
        "search", help="random hyperparameter search over short training runs",
        description="Random search (log-uniform for scale parameters, Bergstra & Bengio 2012): "
        "each trial trains CONFIG with sampled values for --steps agent steps into "
        "OUT/trial_NNN and is scored by rlkit evaluate of its last.pt on --episodes fresh "
        "games. One line per finished trial, then a table ranked by score and the parameters "
        "whose best value lies on the border of its range. The same command again continues "
        "an interrupted search; Ctrl-C stops it (exit 130) with every run checkpointed.")
    se.add_argument("config", help="YAML config, e.g. configs/cartpole_dqn.yaml")
    se.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=SPEC",
                    help="a config key and its range: loguniform(LOW,HIGH), uniform(LOW,HIGH) "
                         "or choice(A,B,...), e.g. 'optim.lr=loguniform(1e-5,1e-3)' (quoted: "
                         "the shell reads parentheses); repeatable")
    se.add_argument("--trials", type=int, required=True, help="number of trials")
    se.add_argument("--steps", type=int, required=True,
                    help="budget of each trial in agent steps summed over all envs")
    se.add_argument("--jobs", type=int, default=1, help="trials run at once (default 1)")
    se.add_argument("--out", help="search directory (default runs/search-<config>)")
    se.add_argument("--seed", type=int, default=0,
                    help="seed of the sampled values and, hashed, of each trial (default 0)")
    se.add_argument("--episodes", type=int, default=10,
                    help="evaluation games per trial (default 10)")
    se.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="a fixed config override for every trial")

    ex = sub.add_parser("export", help="keep only the policy network of a checkpoint",
                        description="Write the acting network of a training checkpoint (no "
                                    "optimizer, target network, replay or env state) to a small "
                                    "file that rlkit evaluate loads; it cannot be resumed.")
    ex.add_argument("checkpoint", help="RUN_DIR/checkpoints/last.pt or best.pt")
    ex.add_argument("out", help="file to write, e.g. docs/weights/pong_paac.pt")
    return parser


def _export(args: argparse.Namespace) -> int:
    from agents.evaluate import read_checkpoint
    from agents.policy import policy_only
    from rlkit.checkpoint import save_checkpoint

    check_writable(args.out, "OUT")
    ckpt, _ = read_checkpoint(args.checkpoint)
    out = save_checkpoint(args.out, policy_only(ckpt))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


CHECK_FAILED = 3
"""``rlkit check``'s exit code when a check FAILs (1 stays "the command was used wrongly")."""


def _check(args: argparse.Namespace) -> int:
    from agents.check import run_checks
    from agents.config import load_config

    if args.json is not None:
        check_writable(args.json, "--json")
    report = run_checks(load_config(args.config, args.overrides), args.config)
    print(report.table())
    if args.json is not None:
        write_text(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    return CHECK_FAILED if report.failed else 0


def _check_seed(seed: int) -> None:
    problem = seed_problem(seed, "--seed")
    if problem is not None:
        raise ConfigError(problem)


def _train(args: argparse.Namespace) -> int:
    from agents.runner import resume_run, start_run

    if args.device is not None:
        resolve_device(args.device)  # fail now, before anything is built
    if args.resume is not None:
        if (args.config is not None or args.overrides or args.seed is not None
                or args.run_dir is not None):
            raise ConfigError("--resume continues a run with its own config; pass only "
                              "--resume RUN_DIR [--steps N] [--device D]")
        runner = resume_run(args.resume, steps=args.steps, device=args.device)
    else:
        if args.config is None:
            raise ConfigError("missing CONFIG; use rlkit train configs/NAME.yaml or "
                              "rlkit train --resume RUN_DIR")
        overrides = list(args.overrides)
        if args.steps is not None:
            overrides.append(f"train.steps={args.steps}")
        if args.device is not None:
            overrides.append(f"train.device={args.device}")
        if args.seed is not None:
            _check_seed(args.seed)
            overrides.append(f"train.seed={args.seed}")
        runner = start_run(args.config, overrides, args.run_dir)
    if runner.dist.is_main:
        print(f"rlkit: run directory {runner.run_dir} (device {runner.device})", file=sys.stderr)
    return runner.run()


def _evaluate(args: argparse.Namespace) -> int:
    from agents.evaluate import STICKY_ACTIONS, evaluate_checkpoint

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    _check_seed(args.seed)
    # Outputs are checked before the games are played: a late failure would lose the scores.
    if args.json is not None:
        check_writable(args.json, "--json")
    if args.video is not None:
        check_writable(args.video, "--video", directory=True)
    result = evaluate_checkpoint(
        args.checkpoint, episodes=args.episodes, epsilon=args.epsilon, greedy=args.greedy,
        seed=args.seed, video_dir=args.video, device=resolve_device(args.device),
        repeat_action_probability=STICKY_ACTIONS if args.sticky_actions
        else args.repeat_action_probability,
    )
    print(result.line())
    if result.protocol is not None:
        print(result.protocol.line())
    if args.json is not None:
        write_text(args.json, json.dumps(result.summary(), indent=2) + "\n")
    if args.video is not None:
        print(f"video: {Path(args.video) / 'game0.mp4'}")
    return 0


def _search(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    out = args.out if args.out is not None else f"runs/search-{Path(args.config).stem}"
    search = make_search(args.config, args.params, trials=args.trials, steps=args.steps, out=out,
                         seed=args.seed, episodes=args.episodes, overrides=args.overrides)
    return run_search(search, jobs=args.jobs)


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` minus ``--nproc N`` / ``--nproc=N`` (what each launched rank is given)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--nproc":
            skip = True
        elif not token.startswith("--nproc="):
            out.append(token)
    return out


def _launch(args: argparse.Namespace, argv: list[str]) -> int | None:
    """``--nproc N > 1``: re-run this command as N ranks under torchrun; None: run here."""
    if args.nproc is None:
        return None
    if under_launcher():
        raise DistributedError("--nproc starts its own ranks; under torchrun leave it out "
                               "(torchrun's --nproc_per_node sets the number of ranks)")
    if args.nproc < 1:
        raise DistributedError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc == 1:
        return None
    return launch(args.nproc, "agents.cli", _without_nproc(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    from agents.runner import RunError
    from envs import MissingExtraError
    from rlkit.monitors import NonFiniteError

    try:
        if args.command == "train":
            code = _launch(args, argv)
            return _train(args) if code is None else code
        if args.command == "export":
            return _export(args)
        if args.command == "check":
            return _check(args)
        if args.command == "search":
            return _search(args)
        return _evaluate(args)
    except USER_ERRORS + (RunError, SearchError, MissingExtraError) as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        where = f" (rank {os.environ.get('RANK')})" if under_launcher() else ""
        print(f"rlkit: error{where}: {lines[0]}", file=sys.stderr)
        return 1
    except NonFiniteError as exc:  # the run summary above lists the NaN-guard events
        print(f"{NAN_STOP} {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rlkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
