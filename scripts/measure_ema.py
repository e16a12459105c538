"""Does evaluating an EMA of the weights (``train.eval_ema``) steady the evaluation score?

    python scripts/measure_ema.py --out runs/measure_ema
    python scripts/measure_ema.py --config configs/cartpole_dqn.yaml --ema 0.999 --steps 40000 \\
        --eval-every 2000 --seeds 7 8 9 --out runs/measure_ema_dqn

One training run per seed with ``train.eval_ema`` on; at every periodic evaluation the EMA
network and the trained (raw) network each play the same ``train.eval_episodes`` games (same
env seeds), so the two sets of scores are paired: same training trajectory, same start states.
The target score and confirmations are off, so every run trains its whole budget.

Spread: over the periodic evaluations in the second half of the budget (after CartPole is
usually learnt), the standard deviation and the minimum of the evaluation means, raw vs EMA,
per seed and averaged over seeds. Prints one JSON object (also written to ``OUT/results.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.runner import start_run  # noqa: E402


def train_one(config: str, seed: int, ema: float, steps: int, eval_every: int, out: Path
              ) -> dict[str, Any]:
    """Train ``config`` on ``seed``; returns the raw and EMA evaluation means per evaluation."""
    runner = start_run(config, [
        f"train.seed={seed}", f"train.steps={steps}", f"train.eval_every={eval_every}",
        f"train.eval_ema={ema}", "train.target_score=null", "train.confirm_episodes=0",
        "train.progress=false", f"checkpoint.every={steps}",
    ], out / f"seed_{seed}")
    learner, train = runner.learner, runner.cfg.train
    ema_net, raw_net = learner.acting_net, learner.update.model
    record: dict[str, list[Any]] = {"steps": [], "raw": [], "ema": []}
    evaluate = runner.evaluate

    def paired_evaluation() -> float:
        score = evaluate()  # the EMA network (what the run itself evaluates)
        learner.acting_net = raw_net
        try:
            raw = runner._play(train.eval_episodes, train.seed + 10_000, "eval_raw/")["mean"]
        finally:
            learner.acting_net = ema_net
        record["steps"].append(learner.env_steps)
        record["ema"].append(score)
        record["raw"].append(raw)
        return score

    runner.evaluate = paired_evaluation  # type: ignore[method-assign]
    runner.run()
    return record


def spread(scores: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(scores), "std": statistics.pstdev(scores),
            "min": min(scores)}


def mean_spread(spreads: list[dict[str, float]]) -> dict[str, float]:
    """The per-seed spreads averaged over the seeds, statistic by statistic."""
    return {stat: statistics.fmean(s[stat] for s in spreads) for stat in ("mean", "std", "min")}


def report(result: dict[str, Any], out: Path) -> None:
    """Print ``result`` as JSON and write it to ``out/results.json``."""
    text = json.dumps(result, indent=2)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "cartpole_paac.yaml"))
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--out", type=Path, default=Path("runs/measure_ema"))
    args = parser.parse_args()
    per_seed = {}
    for seed in args.seeds:
        record = train_one(args.config, seed, args.ema, args.steps, args.eval_every, args.out)
        late = [i for i, s in enumerate(record["steps"]) if s > args.steps // 2]
        per_seed[seed] = {
            **record,
            "late_raw": spread([record["raw"][i] for i in late]),
            "late_ema": spread([record["ema"][i] for i in late]),
        }
    summary = {kind: mean_spread([s[f"late_{kind}"] for s in per_seed.values()])
               for kind in ("raw", "ema")}
    result = {"config": args.config, "ema": args.ema, "steps": args.steps,
              "eval_every": args.eval_every, "seeds": args.seeds,
              "late_evaluations": f"periodic evaluations after step {args.steps // 2}",
              "mean_over_seeds": summary, "per_seed": per_seed}
    report(result, args.out)


if __name__ == "__main__":
    main()
