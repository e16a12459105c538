"""``rlkit search``: random hyperparameter search over short ``rlkit train`` runs.

    rlkit search configs/cartpole_dqn.yaml --param 'optim.lr=loguniform(1e-5,1e-2)' \\
        --trials 12 --steps 20000 --jobs 2 --out runs/search_lr

Random search with log-uniform sampling of scale parameters (Bergstra & Bengio 2012; the CS231n
notes), the sampling and the border check of ``rlkit.search``. Each ``--param KEY=SPEC`` is a
config key and ``loguniform(LOW,HIGH)``, ``uniform(LOW,HIGH)`` or ``choice(A,B,...)``; a sample
for an integer key is rounded. Trial ``i`` (``trial_seed``):

1. trains the config with the trial's values as ``--set`` overrides, ``--steps S`` and its own
   seed into ``OUT/trial_NNN`` (an ordinary run directory; output in ``OUT/trial_NNN/train.log``);
2. is scored by ``rlkit evaluate`` of its ``last.pt`` on ``--episodes`` games (default 10) under
   the config's evaluation protocol (``train.eval_epsilon``, ``train.eval_greedy``), seeded from a
   stream of its own (``eval_seed``), so no training or in-run evaluation game is replayed.

Why ``last.pt`` and fresh games rather than the runner's periodic evaluations: every trial is
measured the same way, also under configs without periodic evaluations, and the score is not
the maximum of many noisy screens (which favours the noisiest trial). The score is what the
budget buys: a trial that learned and then collapsed scores its collapse. A trial stopped early
by a confirmed ``train.target_score`` is scored on the policy it stopped with, and among equal
scores fewer agent steps rank higher. A trial whose training stops on a non-finite loss
(NaN guard) is recorded as diverged and ranked last; the search goes on.

Each finished trial prints one line and is added to ``OUT/results.json`` (rewritten atomically,
``rlkit.atomic``). The same command run again skips the finished trials, resumes an interrupted
trial's run with ``rlkit train --resume`` and refuses one line if the config, ``--param``,
``--set``, ``--steps``, ``--seed`` or ``--episodes`` changed. ``--trials`` may grow: trial ``i``
samples the same values whatever the number of trials. Ctrl-C (or SIGTERM) stops the running
trainers, which checkpoint, and exits 130. The end prints a table ranked by score and names
every parameter whose best value lies within 10% of an end of its range (on its sampling scale):
the range should then be widened past that end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import threading
import time
import types
import typing
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import (
    SECTION_NAMES,
    ConfigError,
    config_to_dict,
    load_config,
    parse_override,
    seed_problem,
    unknown_key_error,
)
from agents.launcher import Launcher, budget_reached, run_state, train_args
from rlkit.atomic import check_writable, write_text
from rlkit.checkpoint import CheckpointError
from rlkit.search import Choice, Distribution, LogUniform, SearchResult, Uniform, sample_trials

RESULTS = "results.json"
"""The search's record in ``OUT``: its command and every finished trial."""

TRIAL_STREAM = 0x5EA7C4
"""Mixed into trial seeds: a trial seed shares nothing with the search seed's other uses."""

EVAL_STREAM = 0x5C0E
"""Mixed into evaluation seeds, a stream apart from training's (seed + offsets), the periodic
evaluations' (seed + 10000) and the confirmations' (``runner.confirmation_seed``)."""

NAN_STOP = "rlkit: error: training stopped:"
"""How ``rlkit train`` ends a run that its NaN guard stopped (``agents.cli.main``)."""

BORDER_MARGIN = 0.1
"""A best value within this fraction of either end of its range is on the border."""


class SearchError(ValueError):
    """A search cannot go on; the message is one line naming the problem and the fix."""


@dataclass(frozen=True)
class Param:
    """One ``--param``: the config key, its range as the user wrote it, and the distribution."""

    key: str
    spec: str
    dist: Distribution
    integer: bool = False
    """The config field is an integer: samples are rounded."""

    def value(self, sample: Any) -> Any:
        return int(round(sample)) if self.integer else sample


_PARAM = re.compile(r"([^=\s]+)\s*=\s*(loguniform|uniform|choice)\s*\((.*)\)", re.DOTALL)
_USAGE = ("write section.key=loguniform(LOW,HIGH), uniform(LOW,HIGH) or choice(A,B,...), "
          "quoted, e.g. --param 'optim.lr=loguniform(1e-5,1e-3)'")


def _split(args: str) -> list[str]:
    """``"1, [64, 64], 'a'"`` -> ``["1", "[64, 64]", "'a'"]``: commas outside brackets split."""
    parts, depth, current = [], 0, ""
    for char in args:
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def parse_param(text: str) -> tuple[str, str, Distribution]:
    """``"optim.lr=loguniform(1e-5,1e-3)"`` -> ``("optim.lr", "loguniform(1e-05,0.001)",
    LogUniform(1e-5, 1e-3))``; a malformed spec raises a one-line ``ConfigError``."""
    match = _PARAM.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"bad --param {text!r}; {_USAGE}")
    key, kind, inner = match.groups()
    if key.count(".") != 1 or not all(key.split(".")):
        raise ConfigError(f"bad --param {text!r}: {key!r} is not a section.key config key; "
                          f"{_USAGE}")
    values = [parse_override(f"{key}={part}")[1] for part in _split(inner)]
    if "" in _split(inner):
        raise ConfigError(f"bad --param {text!r}: an empty value; {_USAGE}")
    if kind == "choice":
        return key, f"choice({','.join(json.dumps(v) for v in values)})", Choice(tuple(values))
    if len(values) != 2 or not all(_is_number(v) for v in values):
        raise ConfigError(f"bad --param {text!r}: {kind} takes two numbers LOW,HIGH; {_USAGE}")
    low, high = (float(v) for v in values)
    try:
        dist: Distribution = LogUniform(low, high) if kind == "loguniform" else Uniform(low, high)
    except ValueError as exc:
        raise ConfigError(f"bad --param {text!r}: {exc}; {_USAGE}") from None
    return key, f"{kind}({low!r},{high!r})", dist


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _field_hint(cfg: Any, key: str) -> Any:
    """The type annotation of config key ``section.name``; unknown keys raise the ``--set``
    error, with its suggestions."""
    section, name = key.split(".")
    if section not in SECTION_NAMES:
        raise unknown_key_error(section, list(SECTION_NAMES))
    cls = type(getattr(cfg, section))
    fields = [f.name for f in dataclasses.fields(cls)]
    if name not in fields:
        raise unknown_key_error(key, [f"{section}.{f}" for f in fields])
    return typing.get_type_hints(cls)[name]


def make_params(cfg: Any, texts: list[str], overrides: list[str]) -> tuple[Param, ...]:
    """Parse every ``--param`` against the config: known keys, once each, numeric ranges on
    numeric keys (integer keys are rounded)."""
    params: list[Param] = []
    fixed = {".".join(parse_override(o)[0]) for o in overrides}
    for text in texts:
        key, spec, dist = parse_param(text)
        hint = _field_hint(cfg, key)
        if key in fixed or any(p.key == key for p in params):
            raise ConfigError(f"{key} is given twice (--param, --set); give each key once")
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = set(typing.get_args(hint)) if union else {hint}
        if isinstance(dist, Choice):
            params.append(Param(key, spec, dist))
            continue
        if not kinds & {int, float} or bool in kinds:
            raise ConfigError(f"--param {key}: the key is not a number; search it with "
                              "choice(A,B,...)")
        params.append(Param(key, spec, dist, integer=int in kinds and float not in kinds))
    if not params:
        raise ConfigError("no --param to search; add e.g. --param 'optim.lr=loguniform(1e-5,1e-3)'")
    return tuple(params)


def _seed(search_seed: int, stream: int, trial: int) -> int:
    return int(np.random.SeedSequence([search_seed, stream, trial]).generate_state(1)[0])


def trial_seed(search_seed: int, trial: int) -> int:
    """``rlkit train --seed`` of a trial: hashed from (search seed, trial) by ``SeedSequence``."""
    return _seed(search_seed, TRIAL_STREAM, trial)


def eval_seed(search_seed: int, trial: int) -> int:
    """``rlkit evaluate --seed`` of a trial, from a stream no training or in-run evaluation
    uses (bar a one-in-2**32 collision of the hash)."""
    return _seed(search_seed, EVAL_STREAM, trial)


def format_value(value: Any) -> str:
    """A sampled value for a table: ``3.16e-04``, ``128``, ``true``."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return json.dumps(value)


@dataclass(frozen=True)
class Search:
    """One search: what every trial shares and what each samples."""

    config: str
    out: Path
    params: tuple[Param, ...]
    overrides: tuple[str, ...]
    steps: int
    seed: int
    episodes: int
    trials: tuple[dict[str, Any], ...]
    """Each trial's sampled values, ``key -> value`` (rounded for integer keys)."""
    resolved: dict[str, Any]
    """The config with ``--set`` applied (not the trials' values): what a rerun must match (the
    resolved config, so that reordered ``--set`` or an edit that changes nothing pass)."""
    eval_flags: tuple[str, ...]
    """``rlkit evaluate`` flags of the config's evaluation protocol."""

    def run_dir(self, trial: int) -> Path:
        return self.out / f"trial_{trial:03d}"

    def command(self) -> dict[str, Any]:
        """What makes two invocations the same search (``--trials``, ``--jobs``: not that)."""
        return {
            "config": self.resolved,
            "params": [[p.key, p.spec] for p in self.params],
            "steps": self.steps,
            "seed": self.seed,
            "episodes": self.episodes,
        }

    def trial_overrides(self, trial: int) -> list[str]:
        values = [f"{key}={json.dumps(v)}" for key, v in self.trials[trial].items()]
        return [*self.overrides, *values, "train.progress=false"]  # the log is a file


def make_search(config: str, params: list[str], *, trials: int, steps: int, out: str,
                seed: int = 0, episodes: int = 10, overrides: list[str] | None = None) -> Search:
    """Check everything a long search could trip on before the first trial starts: the specs,
    the keys, every trial's config, the env id and ``out``."""
    from agents.runner import check_env_id  # torch and the envs: after the cheap checks

    overrides = list(overrides or [])
    for name, value in (("--trials", trials), ("--steps", steps), ("--episodes", episodes)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    problem = seed_problem(seed, "--seed")
    if problem is not None:
        raise ConfigError(problem)
    cfg = load_config(config, overrides)
    space = make_params(cfg, params, overrides)
    samples = tuple(
        {p.key: p.value(v) for p, v in zip(space, sample.values(), strict=True)}
        for sample in sample_trials({p.key: p.dist for p in space}, trials, seed)
    )
    check_writable(out, "--out", directory=True)
    search = Search(
        config=config, out=Path(out), params=space, overrides=tuple(overrides), steps=steps,
        seed=seed, episodes=episodes, trials=samples, resolved=config_to_dict(cfg),
        eval_flags=("--greedy",) if cfg.train.eval_greedy
        else ("--epsilon", repr(cfg.train.eval_epsilon)),
    )
    for trial in range(trials):  # a sampled value the config refuses fails now, not at trial 9
        try:
            load_config(config, search.trial_overrides(trial))
        except ConfigError as exc:
            raise ConfigError(f"trial {trial}'s sampled value is refused: {exc}; keep each "
                              "--param range inside the key's valid values") from None
    check_env_id(cfg.env.id)
    return search


# ------------------------------------------------------------------------- results.json


class Record:
    """``OUT/results.json``: the search's command and its finished trials, rewritten atomically
    (under a lock: trials finish in worker threads) each time a trial finishes."""

    def __init__(self, search: Search) -> None:
        self.path = search.out / RESULTS
        self.lock = threading.Lock()
        self.command = json.loads(json.dumps(search.command()))  # as JSON reads it back
        self.trials: dict[int, dict[str, Any]] = {}
        if self.path.exists():
            try:
                stored = json.loads(self.path.read_text())
                command, trials = stored["command"], stored["trials"]
            except (ValueError, KeyError, TypeError):
                raise SearchError(f"{self.path} is not a search record; pass another --out") \
                    from None
            changed = [k for k in self.command if command.get(k) != self.command[k]]
            if changed:
                what = ", ".join("the config or --set" if k == "config" else f"--{k}"
                                 for k in changed).replace("--params", "--param")
                raise SearchError(
                    f"{search.out} holds a search with another command (changed: {what}); run "
                    "that search's own command again to continue it, or pass a new --out")
            self.trials = {int(t["trial"]): t for t in trials}
        else:
            self._write()

    def add(self, result: dict[str, Any]) -> None:
        with self.lock:
            self.trials[result["trial"]] = result
            self._write()

    def _write(self) -> None:
        trials = [self.trials[i] for i in sorted(self.trials)]
        write_text(self.path, json.dumps({"command": self.command, "trials": trials}, indent=2)
                   + "\n")


# ------------------------------------------------------------------------- one trial


def _diverged(log: Path) -> bool:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return any(line.startswith(NAN_STOP) for line in lines[-20:])


def _evaluate(search: Search, trial: int, launcher: Launcher) -> dict[str, Any]:
    """``rlkit evaluate`` of the trial's ``last.pt``; its ``eval.json`` is reused when it is
    newer than the checkpoint and played the same games."""
    run_dir = search.run_dir(trial)
    ckpt, out = run_dir / "checkpoints" / "last.pt", run_dir / "eval.json"
    seed = eval_seed(search.seed, trial)
    if out.exists() and out.stat().st_mtime >= ckpt.stat().st_mtime:
        result = json.loads(out.read_text())
        if result.get("episodes") == search.episodes and result.get("seed") == seed:
            return result
    args = ["evaluate", str(ckpt), "--episodes", str(search.episodes), "--seed", str(seed),
            *search.eval_flags, "--json", str(out)]
    code = launcher.run(args, run_dir / "train.log")
    if code != 0:
        raise SearchError(f"trial {trial}: rlkit evaluate exited with code {code} (see "
                          f"{run_dir / 'train.log'}); fix it and run the same command again")
    result = json.loads(out.read_text())
    result["seed"] = seed
    write_text(out, json.dumps(result, indent=2) + "\n")
    return result


def run_trial(search: Search, trial: int, launcher: Launcher) -> dict[str, Any]:
    """Train (or resume) the trial to the budget and evaluate it; its record."""
    run_dir, log = search.run_dir(trial), search.run_dir(trial) / "train.log"
    try:
        state = run_state(run_dir)
    except CheckpointError as exc:
        raise SearchError(f"trial {trial}: {exc}; delete {run_dir} to run the trial again") \
            from None
    diverged, start = False, time.perf_counter()
    if not budget_reached(state, search.steps):
        args = train_args(search.config, run_dir, search.steps, trial_seed(search.seed, trial),
                          search.trial_overrides(trial), state)
        code = launcher.run(args, log)
        diverged = code != 0 and _diverged(log)
        if code != 0 and not diverged:
            raise SearchError(f"trial {trial}: rlkit train exited with code {code} (see {log}); "
                              "fix it and run the same command again")
        state = run_state(run_dir)
    score, eval_start = None, time.perf_counter()
    if not diverged:
        if not budget_reached(state, search.steps):
            raise SearchError(f"trial {trial}: training stopped short of its budget (see {log}); "
                              "run the same command again to resume it")
        result = _evaluate(search, trial, launcher)
        score = {k: result[k] for k in ("mean", "std", "median", "min", "max", "episodes")}
    if diverged or state is None:  # no checkpoint of the end: this invocation's wall time
        seconds = time.perf_counter() - start
    else:  # the checkpoint's clock spans every resume
        seconds = state["wall_seconds"] + time.perf_counter() - eval_start
    return {
        "trial": trial,
        "params": search.trials[trial],
        "score": score,
        "diverged": diverged,
        "steps": 0 if state is None else state["steps"],
        "solved_at": None if state is None else state["solved_at"],
        "seconds": round(seconds, 1),
        "seed": trial_seed(search.seed, trial),
        "eval_seed": eval_seed(search.seed, trial),
        "run_dir": run_dir.name,
    }


# ------------------------------------------------------------------------- report


def _score_text(result: dict[str, Any]) -> str:
    score = result["score"]
    if score is None:
        return "diverged (NaN guard)"
    return f"{score['mean']:.1f} ± {score['std']:.1f}"


def trial_line(search: Search, result: dict[str, Any], done: int) -> str:
    """The line printed as a trial finishes, the ``done``-th of the search."""
    values = " ".join(f"{k}={format_value(v)}" for k, v in result["params"].items())
    head = f"trial {result['trial']} ({done}/{len(search.trials)} done): {values}:"
    if result["diverged"]:
        log = search.run_dir(result["trial"]) / "train.log"
        return f"{head} diverged (NaN guard, see {log}), {result['seconds']:.0f} s"
    solved = " (target reached)" if result["solved_at"] is not None else ""
    return (f"{head} score {_score_text(result)} over {search.episodes} games, "
            f"{result['steps']} steps{solved}, {result['seconds']:.0f} s")


def ranked(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best mean score first; equal scores: fewer agent steps first; diverged trials last."""
    def key(r: dict[str, Any]) -> tuple[float, int, int]:
        mean = -math.inf if r["score"] is None else r["score"]["mean"]
        return -mean, r["steps"], r["trial"]

    return sorted(results, key=key)


def summary(search: Search, results: list[dict[str, Any]]) -> str:
    """The ranked table, the best trial and the parameters whose best value is on the border."""
    order = ranked(results)
    keys = [p.key for p in search.params]
    header = ["rank", "trial", *keys, "score (mean ± std)", "steps", "seconds"]
    rows = [[str(n + 1), str(r["trial"]), *(format_value(r["params"][k]) for k in keys),
             _score_text(r), str(r["steps"]), f"{r['seconds']:.0f}"]
            for n, r in enumerate(order)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
             for row in [header, *rows]]
    space = {p.key: p.dist for p in search.params}
    finite = [r for r in order if r["score"] is not None and math.isfinite(r["score"]["mean"])]
    if not finite:
        return "\n".join([*lines, "no trial scored: every trial diverged"])
    # In rank order, so that SearchResult.best (the first maximum) is the table's first row.
    result = SearchResult(space, maximize=True,
                          trials=[(r["params"], r["score"]["mean"]) for r in finite])
    best = finite[0]
    values = ", ".join(f"{k}={format_value(best['params'][k])}" for k in keys)
    lines.append(f"best: trial {best['trial']} ({values}): {_score_text(best)} over "
                 f"{search.episodes} games")
    border = result.on_border(BORDER_MARGIN)
    for p in search.params:
        if p.key in border:
            lines.append(f"on the border: the best {p.key}, {format_value(best['params'][p.key])}"
                         f", lies in the outer {BORDER_MARGIN:.0%} of {p.spec}; widen the range "
                         "past that end and search again")
    if not border:
        lines.append(f"no best value on the border (the outer {BORDER_MARGIN:.0%} of its range)")
    return "\n".join(lines)


# ------------------------------------------------------------------------- the command


def run_search(search: Search, jobs: int = 1) -> int:
    """Run the search's unfinished trials, ``jobs`` at a time; print each trial's line and the
    summary; 0, or 130 when stopped by a signal (finished trials recorded, runs checkpointed)."""
    search.out.mkdir(parents=True, exist_ok=True)
    record = Record(search)
    todo = [i for i in range(len(search.trials)) if i not in record.trials]
    done = len(search.trials) - len(todo)
    if done:
        print(f"rlkit search: {done} of {len(search.trials)} trials already in "
              f"{record.path}; running the other {len(todo)}", flush=True)
    launcher = Launcher(log_to_files=True)

    def one(trial: int) -> None:
        result = run_trial(search, trial, launcher)
        record.add(result)
        with record.lock:
            done = sum(i < len(search.trials) for i in record.trials)
            print(trial_line(search, result, done), flush=True)

    with launcher.forwarding_signals(), ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, trial) for trial in todo]
        wait(futures)
    if launcher.stop.is_set():
        print(f"rlkit: interrupted: finished trials are in {record.path} and the running ones "
              "are checkpointed; run the same command again to continue", file=sys.stderr)
        return 130
    errors = [f.exception() for f in futures if f.exception() is not None]
    for error in errors[1:]:  # one line each; the first is raised
        print(f"rlkit: error: {error}", file=sys.stderr)
    if errors:
        raise typing.cast(BaseException, errors[0])
    text = summary(search, [record.trials[i] for i in range(len(search.trials))])
    write_text(search.out / "summary.txt", text + "\n")
    print(text)
    return 0
