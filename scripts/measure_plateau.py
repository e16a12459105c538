"""Does a reduce-on-plateau learning rate (``optim.lr_schedule=plateau``) steady late training?

    python scripts/measure_plateau.py --out runs/measure_plateau

DQN on CartPole with a constant Adam rate is the textbook case for it: the policy reaches 500,
then keeps taking full-size steps and forgets, so the periodic evaluations swing late in the
run. Per seed, two runs that differ only in the schedule (same seed, so the same envs, network
initialisation and exploration until the first reduction): ``constant`` (the config as
published) and ``plateau`` (halve the rate after more than ``--patience`` evaluations in a row
that do not beat the best, down to ``--floor``). The target score and confirmations are off,
so every run trains its whole budget.

Spread: over the periodic evaluations in the second half of the budget, the mean, standard
deviation and minimum of the evaluation means, per seed and averaged over the seeds, plus the
rate each plateau run ended with. Prints one JSON object (also written to ``OUT/results.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measure_ema import mean_spread, report, spread  # noqa: E402  (scripts/ is on sys.path when run as a script)

from agents.runner import start_run  # noqa: E402


def train_one(args: argparse.Namespace, seed: int, schedule: str) -> dict[str, Any]:
    """Train with ``schedule``; returns every periodic evaluation's step and mean score."""
    overrides = [
        f"train.seed={seed}", f"train.steps={args.steps}", f"train.eval_every={args.eval_every}",
        "train.target_score=null", "train.confirm_episodes=0", "train.progress=false",
        f"checkpoint.every={args.steps}",
    ]
    if schedule == "plateau":
        overrides += ["optim.lr_schedule=plateau", f"optim.lr_plateau_patience={args.patience}",
                      f"optim.lr_plateau_factor={args.factor}", f"optim.lr_final={args.floor}"]
    runner = start_run(args.config, overrides, args.out / f"{schedule}_seed_{seed}")
    record: dict[str, Any] = {"steps": [], "scores": []}
    evaluate = runner.evaluate

    def recorded_evaluation() -> float:
        score = evaluate()
        record["steps"].append(runner.learner.env_steps)
        record["scores"].append(score)
        return score

    runner.evaluate = recorded_evaluation  # type: ignore[method-assign]
    runner.run()
    record["final_lr"] = runner.learner.update.lr
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "cartpole_dqn.yaml"))
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--eval-every", type=int, default=2_000)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--factor", type=float, default=0.5)
    parser.add_argument("--floor", type=float, default=1e-5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--out", type=Path, default=Path("runs/measure_plateau"))
    args = parser.parse_args()
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        per_seed[seed] = {}
        for schedule in ("constant", "plateau"):
            record = train_one(args, seed, schedule)
            late = [s for step, s in zip(record["steps"], record["scores"], strict=True)
                    if step > args.steps // 2]
            per_seed[seed][schedule] = {**record, "late": spread(late)}
    summary = {schedule: mean_spread([s[schedule]["late"] for s in per_seed.values()])
               for schedule in ("constant", "plateau")}
    result = {"config": args.config, "steps": args.steps, "eval_every": args.eval_every,
              "plateau": {"patience": args.patience, "factor": args.factor, "floor": args.floor},
              "seeds": args.seeds,
              "late_evaluations": f"periodic evaluations after step {args.steps // 2}",
              "mean_over_seeds": summary, "per_seed": per_seed}
    report(result, args.out)


if __name__ == "__main__":
    main()
