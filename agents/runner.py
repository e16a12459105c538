"""The training runner shared by every algorithm: run directory, progress bar, TensorBoard,
checkpoints, periodic evaluation, resume, and clean shutdown on Ctrl-C / SIGTERM.

A run directory holds ``config.yaml`` (the resolved config), ``checkpoints/last.pt`` (written
every ``checkpoint.every`` agent steps, at the end, and on SIGINT/SIGTERM, after which the run
exits 130/143), ``checkpoints/best.pt`` (the best evaluated policy) and TensorBoard event files
(every curve against agent steps).

Evaluation (``Runner.evaluate``): every ``train.eval_every`` steps a few games screen the policy
(``eval/*`` curves). With confirmation on (``train.confirm_episodes``, 100 games by default when
``train.target_score`` is set), a screen that reaches the target or beats the best confirmed
score is confirmed on fresh games (``confirm/*``). The best confirmed mean chooses ``best.pt``;
training stops once a confirmation's mean less three standard errors reaches the target
(``confirm/lower_bound``). Neither rests on a lucky handful of games. Evaluations play their
own envs with the learner's evaluation generator: training's random streams never move.
With ``train.eval_ema`` every evaluation and confirmation plays the EMA of the weights, so
``best.pt`` is the best EMA; ``last.pt`` and ``best.pt`` each hold both the trained weights
(what ``--resume`` continues) and the EMA (``learner["update"]["ema"]``, what ``rlkit evaluate``
and ``rlkit export`` play). ``optim.lr_schedule: plateau`` is fed each periodic evaluation's mean.
When training ends (budget, target, signal or a NaN stop) ``summarize`` prints the in-run
monitors' per-layer summary and logs it as TensorBoard text.

``--resume RUN_DIR`` continues the run exactly where ``last.pt`` left it: step counters,
schedules, optimizer, every RNG, the replay buffer when it was saved (without it the resume says
it is not exact), (for in-process envs that pickle) the episodes in progress, and the evaluation
state (best confirmed score, confirmations played), so the resumed run evaluates, confirms and
stops where the uninterrupted one would; a run that reached its target is not resumed.
``--resume RUN_DIR --steps N`` raises the budget only: schedules that
followed ``train.steps`` keep their horizon (``config.change_budget``).

Data-parallel runs (``rlkit train --nproc N`` or torchrun; docs/distributed.md): every rank runs
this runner with its own learner; rank 0 alone writes the config, TensorBoard, checkpoints and
runs periodic evaluations. ``last.pt`` also holds ``world_size`` and the other ranks' own learner
and RNG states (``"ranks"``), so ``--resume`` continues every rank, and only with the same N.
"""

from __future__ import annotations

import collections
import math
import random
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import envs
from agents.algorithms import algorithm
from agents.config import (
    Config,
    ConfigError,
    change_budget,
    config_to_dict,
    dump_config,
    load_config,
)
from agents.environments import open_eval_envs
from agents.evaluate import CHECKPOINT_FORMAT, play_games, read_checkpoint
from agents.learner import Learner
from rlkit.atomic import check_writable, remove_stale_temps
from rlkit.checkpoint import rng_state, save_checkpoint, set_rng_state
from rlkit.device import resolve_device, set_cpu_threads
from rlkit.distributed import DistributedContext, init_distributed
from rlkit.logger import Logger
from rlkit.malloc import keep_freed_memory
from rlkit.monitors import UpdateRatioWarning

SAVE_REPLAY_LIMIT = 2 * 1024**3
"""``checkpoint.save_replay: null`` saves the learner's optional state (DQN's replay buffer) when
it is smaller than this."""


class RunError(ValueError):
    """A run directory problem a user can fix (exists already, nothing to resume, ...)."""


def make_learner(cfg: Config, device: torch.device, logger: Logger,
                 dist: DistributedContext | None = None) -> Learner:
    """Build the learner that ``cfg.agent.algo`` names (one rank of ``dist`` when given)."""
    factory = algorithm(cfg.algo).learner_factory()
    if dist is not None and dist.is_distributed:
        return factory(cfg, device, logger, dist=dist)
    return factory(cfg, device, logger)


def check_env_id(env_id: str) -> None:
    """Fail at start-up, as a config error, on an env id ``envs.make_env`` does not know or
    cannot make (a MinAtar id without the ``minatar`` extra)."""
    try:
        envs.make_env(env_id).close()
    except (ValueError, envs.MissingExtraError) as exc:
        raise ConfigError(f"env.id: {exc}") from None


def seed_everything(seed: int) -> None:
    """Seed Python, numpy's and torch's global generators (learners own their generators)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


CONFIRM_STANDARD_ERRORS = 3.0
"""A confirmation reaches ``train.target_score`` when its mean minus this many standard errors
(std / sqrt(games)) does. A policy whose true mean sits at the target then stops about 0.1% of
the time rather than half the time, and the stopped policy also scores the target on further
games: on CartPole, 100 new games of a stopped policy averaged 484-500 (23 runs)."""

CONFIRM_STREAM = 0xC0F1
"""Mixed into confirmation seeds so that they share no seed with training or periodic runs."""


def confirmation_seed(train_seed: int, index: int) -> int:
    """Env and policy seed of a run's ``index``-th confirmation evaluation.

    Hashed from (seed, ``CONFIRM_STREAM``, index) by numpy's ``SeedSequence``: every confirmation
    plays games that no periodic evaluation (seed + 10000), no training env (the seed plus an
    offset) and no earlier confirmation played, bar a one-in-2**32 collision of the hash.
    """
    return int(np.random.SeedSequence([train_seed, CONFIRM_STREAM, index]).generate_state(1)[0])


def solved_line(cfg: Config, step: int, score: float) -> str:
    """How a run reached ``train.target_score``, for the final message and a refused resume."""
    games = cfg.train.confirmation_games
    played = (f"{games} confirmation games, at least {CONFIRM_STANDARD_ERRORS:g} standard errors "
              "above the target" if games
              else f"{cfg.train.eval_episodes} periodic evaluation games")
    return (f"train.target_score={cfg.train.target_score:g} reached at step {step} "
            f"(mean {score:.1f} over {played})")


@dataclass
class RunState:
    """The runner's own counters, stored in every checkpoint under ``"runner"``."""

    next_checkpoint: int = 0
    next_eval: int = 0
    best_score: float = float("-inf")
    """Mean score of ``best.pt``: its confirmation's, or with confirmation off its screen's."""
    recent_scores: list[float] | None = None
    elapsed: float = 0.0
    confirmations: int = 0
    """Confirmation evaluations played so far (the next one's seed index)."""
    solved_at: int | None = None
    """Agent step at which ``train.target_score`` was reached (confirmed); the run stopped there."""
    solved_score: float | None = None
    """The mean score that reached the target."""


class Runner:
    """Drives one learner to ``cfg.train.steps`` agent steps inside ``run_dir``."""

    def __init__(self, cfg: Config, run_dir: Path, *, resume: dict[str, Any] | None = None,
                 dist: DistributedContext | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.dist = dist or DistributedContext(device=resolve_device(cfg.train.device))
        self.device = self.dist.device
        if resume is not None:
            self.dist.check_world_size(resume.get("world_size", 1))
        set_cpu_threads(cfg.train.threads)
        keep_freed_memory()  # fewer page faults per update (see rlkit/malloc.py)
        check_env_id(cfg.env.id)
        if self.dist.is_main:
            remove_stale_temps(self.ckpt_dir)  # left by a save killed mid-write (kill -9)
            dump_config(cfg, self.run_dir / "config.yaml")
        seed_everything(cfg.train.seed)  # same on every rank: identical network init
        self.logger = Logger(self.run_dir if self.dist.is_main else None)
        self.learner = make_learner(cfg, self.device, self.logger, self.dist)
        every, eval_every = cfg.checkpoint.every, cfg.train.eval_every
        self.state = RunState(next_checkpoint=every, next_eval=eval_every, recent_scores=[])
        if resume is not None:
            own = resume if self.dist.is_main else resume["ranks"][self.dist.rank - 1]
            self.learner.load_state_dict(own["learner"])
            self.state = RunState(**resume["runner"])
            set_rng_state(own["rng"])
        self.recent = collections.deque(self.state.recent_scores or [], maxlen=100)
        save = cfg.checkpoint.save_replay
        optional_bytes = sum(part.nbytes for part in self.learner.optional_state().values())
        self.save_replay = optional_bytes < SAVE_REPLAY_LIMIT if save is None else save
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, name: str = "last.pt", *, include_optional: bool | None = None,
                   all_ranks: bool = True) -> Path:
        """Write ``checkpoints/<name>`` atomically (rank 0 writes; with ``all_ranks``, which every
        rank must then call together, the other ranks' own states go in too, for resume)."""
        include = self.save_replay if include_optional is None else include_optional
        self.state.recent_scores = list(self.recent)
        learner, rng = self.learner.state_dict(optional=include), rng_state()
        ranks = None
        if all_ranks and self.dist.is_distributed:
            mine = None if self.dist.is_main else {"learner": learner, "rng": rng}
            ranks = (self.dist.gather_objects(mine) or [None])[1:]
        path = self.ckpt_dir / name
        if not self.dist.is_main:
            return path
        return save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT,
            "config": config_to_dict(self.cfg),
            "learner": learner,
            "runner": vars(self.state).copy(),
            "rng": rng,
            "world_size": self.dist.world_size,
            "ranks": ranks,
        })

    def _play(self, episodes: int, seed: int, prefix: str) -> dict[str, Any]:
        """Play ``episodes`` evaluation games from ``seed``, log them under ``prefix``, return
        their summary. The env is this call's own and the policy draws from the learner's
        evaluation generator, so training's random streams are untouched."""
        train = self.cfg.train
        with open_eval_envs(self.cfg.env, episodes) as envs:
            result = play_games(
                lambda obs: self.learner.act(obs, greedy=train.eval_greedy,
                                             epsilon=train.eval_epsilon),
                envs, episodes, seed=seed,
            )
        summary = result.summary()
        self.logger.scalars({k: summary[k] for k in ("mean", "median", "std", "min", "max")},
                            self.learner.env_steps, prefix=prefix)
        return summary

    def evaluate(self) -> float:
        """Periodic evaluation, and its confirmation when it is promising (see the module doc);
        returns the periodic evaluation's mean score."""
        train, state = self.cfg.train, self.state
        target = train.target_score
        screen = self._play(train.eval_episodes, train.seed + 10_000, "eval/")["mean"]
        games = train.confirmation_games
        if not games:
            self._judge(screen, screen)
        elif screen > state.best_score or (target is not None and screen >= target):
            state.confirmations += 1
            summary = self._play(games, confirmation_seed(train.seed, state.confirmations),
                                 "confirm/")
            bound = summary["mean"] - CONFIRM_STANDARD_ERRORS * summary["std"] / math.sqrt(games)
            self.logger.scalar("confirm/lower_bound", bound, self.learner.env_steps)
            self._judge(summary["mean"], bound)
        return screen

    def _judge(self, mean: float, bound: float) -> None:
        """A new best ``mean`` writes ``best.pt``; a ``bound`` at the target stops training."""
        state, target = self.state, self.cfg.train.target_score
        if mean > state.best_score:
            state.best_score = mean
            self.checkpoint("best.pt", include_optional=False, all_ranks=False)
        if target is not None and bound >= target:
            state.solved_at, state.solved_score = self.learner.env_steps, mean

    # ------------------------------------------------------------------ main loop

    def summarize(self, pointer: CheckPointer | None = None) -> list[str]:
        """The end-of-run summary of the in-run monitors (``rlkit.monitors.RunDiagnostics``):
        printed, written to TensorBoard's text tab (``diagnostics/summary``) and returned. Flagged
        problems add one line, and ``pointer`` the pointer to ``rlkit check`` if not yet shown."""
        update = self.learner.update
        diag = update.diagnostics
        lines = [f"rlkit: run summary after {update.updates} updates (in-run monitors, every "
                 f"{update.monitor_every} updates):"] + [f"  {line}" for line in diag.lines()]
        problems = diag.problems()
        if problems:
            lines.append(f"rlkit: flagged: {'; '.join(problems)}")
        if update.ema is not None:
            lines.append(f"rlkit: evaluations played the EMA of the weights (train.eval_ema="
                         f"{self.cfg.train.eval_ema:g}, {update.ema.updates} updates averaged)")
        if self.cfg.optim.lr_schedule == "plateau":
            lines.append(f"rlkit: reduce-on-plateau LR: {update.lr:.3g} after "
                         f"{getattr(update.lr_schedule, 'reductions', 0)} reduction(s)")
        print("\n".join(lines))
        self.logger.text("diagnostics/summary", diag.markdown(), self.learner.env_steps)
        if problems and pointer is not None:
            pointer.point()
        return lines

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signal = signum

    def _should_stop(self) -> bool:
        """A signal or the target score, seen by any rank, stops every rank at the same step."""
        return self.dist.any_true(self._stop_signal is not None or self.state.solved_at is not None)

    def run(self) -> int:
        """Train to the budget (or a signal), checkpoint, and return the exit code: 0, or
        128 + the signal number when a signal stopped the run (130 SIGINT, 143 SIGTERM), the
        shell's convention, so ``rlkit train ... && rlkit evaluate ...`` stops there."""
        cfg, learner, state = self.cfg, self.learner, self.state
        total = cfg.train.steps
        handlers = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        pointer = CheckPointer(self.run_dir / "config.yaml", self.dist.is_main)
        if cfg.train.expectation and self.dist.is_main:
            print(f"rlkit: expect: {cfg.train.expectation}", file=sys.stderr)
        bar = tqdm(total=total, initial=min(learner.env_steps, total), unit="step",
                   disable=not (cfg.train.progress and self.dist.is_main), dynamic_ncols=True,
                   smoothing=0.05)
        start, shown = time.perf_counter() - state.elapsed, learner.env_steps
        sps_clock, sps_steps, last_bar = time.perf_counter(), learner.env_steps, 0.0
        finished = False
        try:
            while learner.env_steps < total and not self._should_stop():
                scalars = learner.train_iteration()
                step = learner.env_steps
                for episode in learner.pop_episodes():
                    self.recent.append(episode.score)
                    self.logger.scalar("game/score", episode.score, step)
                    self.logger.scalar("game/length", episode.length, step)
                if scalars:
                    now = time.perf_counter()
                    self.logger.scalars(scalars, step)
                    self.logger.scalar("perf/sps", (step - sps_steps) / (now - sps_clock), step)
                    sps_clock, sps_steps = now, step
                if cfg.train.eval_every and step >= state.next_eval:
                    state.next_eval += cfg.train.eval_every
                    score = self.evaluate() if self.dist.is_main else None
                    # The other ranks wait at their next all-reduce, or here for the score
                    # that a reduce-on-plateau LR schedule needs on every rank.
                    if cfg.optim.lr_schedule == "plateau":
                        learner.update.observe_score(self.dist.broadcast_object(score))
                if cfg.checkpoint.every and step >= state.next_checkpoint:
                    state.next_checkpoint += cfg.checkpoint.every
                    state.elapsed = time.perf_counter() - start
                    self.checkpoint()
                if bar.disable is False and time.perf_counter() - last_bar > 0.5:
                    last_bar = time.perf_counter()
                    bar.update(min(step, total) - shown)
                    shown = min(step, total)
                    if self.recent:
                        bar.set_postfix(score=f"{np.mean(list(self.recent)[-10:]):.1f}",
                                        refresh=False)
            bar.update(min(learner.env_steps, total) - shown)
            state.elapsed = time.perf_counter() - start
            path = self.checkpoint()
            finished = True
        finally:
            bar.close()
            if self.dist.is_main:
                self.summarize(pointer)
            pointer.restore()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self.logger.close()
            learner.close()
            self.dist.close(clean=finished)
        code = 0 if self._stop_signal is None else 128 + self._stop_signal
        if not self.dist.is_main:
            return code
        if state.solved_at is not None and state.solved_score is not None:  # set together
            print(f"rlkit: {solved_line(cfg, state.solved_at, state.solved_score)}; stopped "
                  "early (last.pt holds that policy)")
        if self._stop_signal is not None:
            name = signal.Signals(self._stop_signal).name
            print(f"rlkit: {name} at step {learner.env_steps}: checkpoint written to {path}; "
                  f"continue with: rlkit train --resume {self.run_dir}")
        return code


def check_pointer(config: Path) -> str:
    """The one line that points from a flagged run to ``rlkit check``."""
    return (f"rlkit: to diagnose it before a run: rlkit check {config} (the update/weight "
            "ratio per layer, gradients, dead units, what to change)")


class CheckPointer:
    """Prints ``check_pointer`` once per run: after the in-run monitor's first update/weight-ratio
    warning, or (``point``) when the end-of-run summary flags a problem and no warning did.
    ``restore()`` puts the original warning display back."""

    def __init__(self, config: Path, enabled: bool = True) -> None:
        self.config, self.enabled, self.pointed = config, enabled, False
        self._original = warnings.showwarning
        if enabled:
            warnings.showwarning = self._show

    def _show(self, message: Warning | str, category: type[Warning], *args: Any,
              **kwargs: Any) -> None:
        self._original(message, category, *args, **kwargs)
        if issubclass(category, UpdateRatioWarning):
            self.point()

    def point(self) -> None:
        if self.enabled and not self.pointed:
            self.pointed = True
            print(check_pointer(self.config), file=sys.stderr)

    def restore(self) -> None:
        if self.enabled:
            warnings.showwarning = self._original


def default_run_dir(config_path: str | Path) -> Path:
    """``runs/<config name>-<date>-<time>``."""
    return Path("runs") / f"{Path(config_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def start_run(config_path: str | Path, overrides: list[str], run_dir: str | Path | None = None
              ) -> Runner:
    """A new run from a YAML config; refuses a run directory that already has a checkpoint."""
    cfg = load_config(config_path, overrides)
    dist = init_distributed(cfg.train.device)  # one rank of torchrun's job, or a plain process
    if run_dir is None:  # rank 0's clock names the run for every rank
        run_dir = dist.broadcast_object(str(default_run_dir(config_path)))
    run_dir = Path(run_dir)
    return _runner(cfg, run_dir, dist, None)


def _make_run_dir(run_dir: Path) -> Path | None:
    """Create ``run_dir`` (one clear line if it cannot be); returns the topmost directory this
    call created (``run_dir`` or one of its parents), None if ``run_dir`` existed."""
    check_writable(run_dir, "run directory", directory=True)
    top, probe = None, run_dir
    while not probe.exists():
        top, probe = probe, probe.parent
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create run directory {run_dir} ({exc.strerror}); pass another "
                       "--run-dir") from None
    return top


def _runner(cfg: Config, run_dir: Path, dist: DistributedContext,
            resume: dict[str, Any] | None) -> Runner:
    """Build the runner. A failure (e.g. a world-size mismatch) still closes the process group,
    and a new run directory made here is removed again, so a refused run leaves no debris."""
    created = None
    try:
        if resume is None and (run_dir / "checkpoints" / "last.pt").exists():
            raise RunError(f"run directory {run_dir} already holds a checkpoint; continue it "
                           f"with --resume {run_dir} or pick another --run-dir")
        if dist.is_main:
            created = _make_run_dir(run_dir)
        return Runner(cfg, run_dir, resume=resume, dist=dist)
    except BaseException:
        dist.close(clean=False)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def resume_run(run_dir: str | Path, *, steps: int | None = None, device: str | None = None
               ) -> Runner:
    """Continue ``run_dir`` from ``checkpoints/last.pt``, optionally to a new budget of ``steps``
    agent steps (schedules keep their horizons) or on another ``device``."""
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist; pass a directory made by "
                       "rlkit train")
    if not last.exists():
        raise RunError(f"run directory {run_dir} has no checkpoints/last.pt to resume from; "
                       "start a new run with rlkit train CONFIG")
    ckpt, _ = read_checkpoint(last)
    if ckpt.get("policy_only"):
        raise RunError(f"{last} holds only a policy network (rlkit export); it can be evaluated "
                       "but not resumed: restore the run's own last.pt")
    cfg = load_config(run_dir / "config.yaml", [] if device is None else [f"train.device={device}"])
    notes = _resume_notes(cfg, ckpt, steps)
    runner = _runner(cfg, run_dir, init_distributed(cfg.train.device), ckpt)
    saved = ckpt["learner"]
    notes += [part.note for key, part in runner.learner.optional_state().items()
              if saved.get(key) is None]
    if runner.dist.is_main:  # said once the resume is accepted (world size, config, ...)
        for note in notes:
            print(f"rlkit: {note}", file=sys.stderr)
    return runner


def _resume_notes(cfg: Config, ckpt: dict[str, Any], steps: int | None) -> list[str]:
    """Apply a new budget to ``cfg`` and say, one line each, how this resume differs from a run
    that never stopped; ``RunError`` if there is nothing left to train."""
    current = int(ckpt["learner"]["env_steps"])
    notes = []
    solved = ckpt["runner"].get("solved_at")
    if solved is not None:
        line = solved_line(cfg, solved, ckpt["runner"]["solved_score"])
        raise RunError(f"the run stopped when {line}; nothing to resume (to train past the "
                       "target, start a new run with --set train.target_score=null)")
    if steps is not None and steps <= current:
        raise RunError(f"--steps {steps} is not above the run's current step {current}; pass a "
                       f"larger budget (the stored one is {cfg.train.steps})")
    if steps is None and current >= cfg.train.steps:
        raise RunError(f"the run already reached its budget of {cfg.train.steps} agent steps; "
                       f"pass --steps N with N > {current} to train further")
    if steps is not None and steps != cfg.train.steps:
        old = cfg.train.steps
        pinned = change_budget(cfg, steps)
        kept = (f"; {' and '.join(pinned)} pinned to {old} so the schedules keep their horizon"
                if pinned else "")
        notes.append(f"budget changed from {old} to {steps} agent steps{kept}")
    return notes
