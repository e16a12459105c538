"""Our random search (``rlkit.search``) against Optuna's default TPE sampler; prints JSON.

The measurement behind ``rlkit search`` using its own sampler rather than Optuna
(README, "Search hyperparameters"). Optuna is not a dependency of rlkit: install it to run this
(``pip install optuna``).

1. ``overhead``: sampler time per trial, ours (``sample_trials``) against Optuna's ``ask`` +
   ``suggest_float(log=True)`` + ``tell``, in memory and with the SQLite storage that an Optuna
   search needs to survive an interruption, at 12 and 100 trials.
2. ``import_seconds``: ``import optuna`` against ``import rlkit.search`` (which imports torch,
   as every rlkit command does), each in a fresh interpreter, minus a bare interpreter's start.
3. ``toy``: quality of the best found in 12 and 30 trials on a noisy one-dimensional learning-rate
   response (a bump in log10(lr) centred on 1e-3, score 0..500 with noise of std 50), over
   ``--repeats`` seeds: the true score at each search's chosen best, mean and 10th percentile.
4. ``--cartpole``: the same CartPole question as ``rlkit search`` with Optuna's TPE choosing the
   values: trial ``i`` trains and evaluates with exactly ``rlkit search``'s seeds for trial ``i``
   (``agents.search.run_trial``), so the two searches differ only in the values tried.

    python scripts/compare_search.py [--repeats 200]
    python scripts/compare_search.py --cartpole configs/cartpole_dqn.yaml \\
        --param 'optim.lr=loguniform(1e-5,1e-2)' --trials 12 --steps 20000 --out runs/optuna_lr
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.search import LogUniform, sample_trials

LOW, HIGH = 1e-5, 1e-2


def toy_score(lr: float) -> float:
    """True score of the toy response: 500 at lr = 1e-3, falling off over about a decade."""
    return 500.0 * math.exp(-((math.log10(lr) + 3.0) ** 2) / (2 * 0.5**2))


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        sys.exit("compare_search.py: optuna is not installed; pip install optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def overhead(trials: int) -> dict[str, float]:
    """Milliseconds of sampler work per trial (the objective itself costs nothing here)."""
    optuna = _optuna()
    space = {"lr": LogUniform(LOW, HIGH)}
    ours = math.inf
    for _ in range(5):  # the best of 5: the first call also warms numpy's generator up
        start = time.perf_counter()
        sample_trials(space, trials, seed=0)
        ours = min(ours, time.perf_counter() - start)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, storage in (("optuna_memory", None), ("optuna_sqlite", f"sqlite:///{tmp}/s.db")):
            start = time.perf_counter()
            study = optuna.create_study(direction="maximize", storage=storage,
                                        sampler=optuna.samplers.TPESampler(seed=0))
            for _ in range(trials):
                trial = study.ask()
                study.tell(trial, toy_score(trial.suggest_float("lr", LOW, HIGH, log=True)))
            times[name] = time.perf_counter() - start
    return {"ours_ms": 1e3 * ours / trials,
            **{f"{k}_ms": 1e3 * v / trials for k, v in times.items()}}


def import_seconds(module: str) -> float:
    def run(code: str) -> float:
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            best = min(best, time.perf_counter() - start)
        return best

    return run(f"import {module}") - run("pass")


def toy(repeats: int, trials: int = 12) -> dict[str, Any]:
    """True score at the chosen best of each search: ours and TPE, on the same noise seeds."""
    optuna = _optuna()
    space = {"lr": LogUniform(LOW, HIGH)}
    ours, tpe = [], []
    for seed in range(repeats):
        noise = np.random.default_rng(10_000 + seed)
        scored = [(p["lr"], toy_score(p["lr"]) + noise.normal(0, 50))
                  for p in sample_trials(space, trials, seed)]
        ours.append(toy_score(max(scored, key=lambda t: t[1])[0]))
        noise = np.random.default_rng(10_000 + seed)
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(lambda t, n=noise: toy_score(t.suggest_float("lr", LOW, HIGH, log=True))
                       + n.normal(0, 50), n_trials=trials)
        tpe.append(toy_score(study.best_params["lr"]))

    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "p10": float(np.percentile(values, 10))}

    return {"trials": trials, "repeats": repeats, "ours": stats(ours), "optuna_tpe": stats(tpe)}


def cartpole(args: argparse.Namespace) -> dict[str, Any]:
    """Optuna's TPE on ``rlkit search``'s question, trial by trial with its seeds."""
    from agents.launcher import Launcher
    from agents.search import make_search, run_trial, summary

    optuna = _optuna()
    if Path(args.out).exists() and any(Path(args.out).iterdir()):
        # Not resumable: Optuna would ask other values than those the trials there ran with.
        sys.exit(f"compare_search.py: {args.out} is not empty; pass a new --out")
    search = make_search(args.cartpole, args.param, trials=args.trials, steps=args.steps,
                         out=args.out, seed=args.seed, episodes=args.episodes)
    if len(search.params) != 1:
        sys.exit("compare_search.py: --cartpole compares one numeric --param")
    param = search.params[0]
    dist = param.dist
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=args.seed))
    launcher, results, trials = Launcher(log_to_files=True), [], list(search.trials)
    search.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(args.trials):
        asked = study.ask()
        value = asked.suggest_float(param.key, dist.low, dist.high,  # type: ignore[union-attr]
                                    log=isinstance(dist, LogUniform))
        trials[i] = {param.key: param.value(value)}
        result = run_trial(dataclasses.replace(search, trials=tuple(trials)), i, launcher)
        score = -math.inf if result["score"] is None else result["score"]["mean"]
        study.tell(asked, score)
        results.append(result)
        print(f"optuna trial {i}: {param.key}={value:.3g}: {score:.1f}", file=sys.stderr)
    text = summary(dataclasses.replace(search, trials=tuple(trials)), results)
    print(text, file=sys.stderr)
    (search.out / "summary.txt").write_text(text + "\n")
    return {"wall_seconds": time.perf_counter() - start, "trials": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="toy searches per sampler")
    parser.add_argument("--cartpole", metavar="CONFIG", help="run Optuna on this config instead")
    parser.add_argument("--param", action="append", default=[])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/optuna_search")
    args = parser.parse_args()
    if args.cartpole:
        report = cartpole(args)
    else:
        optuna = _optuna()
        report = {
            "optuna_version": optuna.__version__,
            "overhead": {str(n): overhead(n) for n in (12, 100)},
            "import_seconds": {"optuna": import_seconds("optuna"),
                               "rlkit.search": import_seconds("rlkit.search")},
            "toy": [toy(args.repeats, trials) for trials in (12, 30)],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
