"""The environments an agent trains and is evaluated on, built from the ``env:`` config section.

Training envs follow the config (life-loss episodes and clipped rewards on Atari, by default);
evaluation envs always follow the DQN evaluation protocol (Mnih et al. 2015): full games, raw
score, up to 30 no-op starts, with the config's preprocessing so observations match training.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import gymnasium as gym
import numpy as np

import envs
from agents.config import EnvConfig
from agents.episodes import EpisodeTracker

EVAL_NOOP_MAX = 30
"""No-op starts of the evaluation protocol (Mnih et al. 2015: up to 30 random no-ops)."""

PARALLEL_GAMES = 16
"""Evaluation games played side by side, so that one batched forward pass picks the actions of
up to this many envs (``agents.evaluate.play_games``): 100 games play 6.1x (CartPole) and 4.7x
(MinAtar Breakout) as many agent steps per second as one at a time (scripts/bench_evaluate.py)."""


def make_train_envs(cfg: EnvConfig, seed: int) -> gym.vector.VectorEnv:
    """``cfg.num_envs`` training envs (Atari options applied only to Atari ids)."""
    kwargs = cfg.atari_kwargs() if envs.is_atari(cfg.id) else {}
    return envs.make_vector_env(cfg.id, cfg.num_envs, backend=cfg.backend, seed=seed, **kwargs)


def make_eval_env(cfg: EnvConfig, seed: int | None = None,
                  render_mode: str | None = None) -> gym.Env:
    """One evaluation env: whole games, unclipped rewards, no-op starts, the training preprocessing.

    Atari games are capped at ``cfg.max_episode_frames`` frames (108k = 30 minutes by default).
    """
    extra: dict[str, Any] = {} if render_mode is None else {"render_mode": render_mode}
    if envs.is_atari(cfg.id):
        kwargs = cfg.atari_kwargs()
        kwargs.update(episodic_life=False, clip_rewards=False, noop_max=EVAL_NOOP_MAX)
        return envs.make_atari(cfg.id, seed=seed, **kwargs, **extra)
    env = envs.make_env(cfg.id, **extra)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


@contextmanager
def open_eval_envs(cfg: EnvConfig, games: int, render_mode: str | None = None
                   ) -> Iterator[list[gym.Env]]:
    """The evaluation envs of ``games`` games: ``min(games, PARALLEL_GAMES)`` unseeded
    ``make_eval_env`` envs (``play_games`` seeds them), only the first rendering; all of them
    are closed on leaving the block, also those built before one failed to build."""
    count = max(1, min(games, PARALLEL_GAMES))
    with ExitStack() as closing:
        built = []
        for k in range(count):
            env = make_eval_env(cfg, render_mode=render_mode if k == 0 else None)
            closing.callback(env.close)
            built.append(env)
        yield built


def _in_process(vec: gym.vector.VectorEnv) -> list[gym.Env] | None:
    """The real env objects ``vec`` steps in this process (sync backends expose ``envs``), or
    None when it has none."""
    sub_envs = getattr(vec, "envs", None)
    if isinstance(sub_envs, list) and all(isinstance(e, gym.Env) for e in sub_envs):
        return sub_envs
    return None


def snapshot_vector_env(vec: gym.vector.VectorEnv) -> bytes | None:
    """Pickle the state of an in-process vector env whose sub-envs pickle, else ``None``.

    Classic-control envs (CartPole) pickle whole, RNG included, so a resumed run continues the very
    same episodes and ``N/2 + resume + N/2`` steps equal ``N`` straight ones. Emulators (ALE) and
    worker-process backends do not pickle; their resume starts new games instead.
    """
    if _in_process(vec) is None:
        return None
    state = {key: value for key, value in vars(vec).items() if key != "env_fns"}
    try:
        return pickle.dumps(state)
    except (pickle.PicklingError, TypeError, AttributeError, RuntimeError):
        return None


def restore_vector_env(vec: gym.vector.VectorEnv, blob: bytes | None) -> bool:
    """Load a ``snapshot_vector_env`` blob into ``vec``; ``False`` if it cannot be restored."""
    sub_envs = _in_process(vec)
    if blob is None or sub_envs is None:
        return False
    state = pickle.loads(blob)
    if state.get("num_envs") != vec.num_envs:
        return False
    for env in sub_envs:
        env.close()
    vars(vec).update(state)
    return True


def capture_env_stream(
    vec: gym.vector.VectorEnv, obs: np.ndarray, autoreset: np.ndarray, tracker: EpisodeTracker
) -> dict[str, Any]:
    """What a learner needs to continue its env stream exactly: the envs (when they pickle), the
    current observations, the NEXT_STEP autoreset flags and the scores of games in progress."""
    return {
        "obs": np.array(obs, copy=True),
        "autoreset": np.array(autoreset, dtype=bool, copy=True),
        "tracker": tracker.state_dict(),
        "envs": snapshot_vector_env(vec),
    }


def resume_env_stream(
    vec: gym.vector.VectorEnv,
    state: dict[str, Any],
    tracker: EpisodeTracker,
    reset_seed: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Restore ``capture_env_stream``'s state into ``vec`` and ``tracker``; returns ``(obs,
    autoreset)``. Emulators do not pickle: they start new games seeded with ``reset_seed``
    (derive it from the step count so a resumed run is reproducible)."""
    if restore_vector_env(vec, state.get("envs")):
        tracker.load_state_dict(state["tracker"])
        return np.asarray(state["obs"]), np.array(state["autoreset"], dtype=bool, copy=True)
    obs, _ = vec.reset(seed=reset_seed)
    return obs, np.zeros(vec.num_envs, dtype=bool)
