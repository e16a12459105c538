"""``make_vector_env``: one entry point over the ``sync``, ``async`` and ``ale`` backends."""

from __future__ import annotations

import functools
import os
from typing import Any

import gymnasium as gym
from gymnasium.vector import VectorEnv

from envs.factory import make_env
from envs.minatar import check_minatar_id, is_minatar
from envs.options import AtariOptions
from envs.registry import ale_game, is_atari, unknown_env_error
from envs.vector.ale import AleVectorEnv
from envs.vector.shared_memory import SharedMemoryVectorEnv
from envs.vector.sync import InProcessVectorEnv

BACKENDS = ("auto", "sync", "async", "ale")

def ale_unsupported(env_id: str, kwargs: dict[str, Any]) -> str | None:
    """Why the ``ale`` backend cannot honour these options, or None if it can."""
    if not is_atari(env_id):
        return (f"backend 'ale' runs Atari games only, {env_id!r} is not one; use backend "
                "'sync' or 'async' (or 'auto')")
    if kwargs.get("episodic_life", AtariOptions.episodic_life):
        return (
            "episodic_life=True is not supported by backend 'ale' (ale-py's native episodic life "
            "restarts the whole game at every lost life); allowed: episodic_life=False, or use "
            "backend 'sync'/'async'"
        )
    if kwargs.get("render_mode") is not None:
        return (
            f"render_mode={kwargs['render_mode']!r} is not supported by backend 'ale'; "
            "allowed: render_mode=None, or use backend 'sync'/'async'"
        )
    return None


def choose_backend(env_id: str, num_envs: int, kwargs: dict[str, Any]) -> str:
    """The ``auto`` rule, from ``scripts/bench_envs.py`` on 2 cores (Pong, random actions).

    - Atari with ``episodic_life=False`` and no ``render_mode`` -> ``ale`` (C++ threads,
      fastest measured);
    - other Atari (``episodic_life=True`` is ``make_atari``'s default, so plain
      ``make_vector_env("Breakout", 16)`` lands here) with >= 2 envs on >= 2 cores -> ``async``;
    - everything else (one env, one core, cheap classic-control envs whose steps cost less than
      a pipe round trip; MinAtar, whose 5-30 us steps ran 50x faster in-process than
      through worker processes, 8 envs on 2 busy cores) -> ``sync``.

    The vector env's ``backend`` attribute says which one was picked.
    """
    if is_atari(env_id):
        if ale_unsupported(env_id, kwargs) is None:
            return "ale"
        if num_envs >= 2 and (os.cpu_count() or 1) >= 2:
            return "async"
    return "sync"


def make_vector_env(
    env_id: str,
    num_envs: int,
    *,
    backend: str = "auto",
    seed: int | None = None,
    num_workers: int | None = None,
    timeout_s: float | None = None,
    **kwargs: Any,
) -> VectorEnv:
    """A gymnasium 1.x vector env of ``num_envs`` copies of ``make_env(env_id, **kwargs)``.

    Observations are batched ``(num_envs, *obs_shape)``; infos are a dict of per-env arrays with
    ``_key`` masks, carrying ``raw_reward`` and ``game_over`` for Atari; autoreset is NEXT_STEP.
    Env i is seeded with ``seed + i``. ``backend``: ``"sync"`` (in-process), ``"async"``
    (processes sharing memory: by default one worker per core but one, with the calling process
    stepping an equal share; ``num_workers`` workers and no share when given), ``"ale"``
    (ale-py's native vector env, Atari only) or ``"auto"`` (``ale`` for Atari with
    ``episodic_life=False``, ``async`` for Atari with episodic life, ``sync`` for the rest,
    MinAtar included; see ``choose_backend``). The returned env's ``backend`` attribute names
    the backend in use.
    ``async`` needs no ``if __name__ == "__main__":`` guard: from a script's unguarded top
    level its workers are forked (see ``envs.vector.shared_memory.choose_start_method``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown; allowed values: {', '.join(BACKENDS)}")
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs={num_envs!r} is out of range; num_envs must be an int >= 1")
    if is_minatar(env_id):
        check_minatar_id(env_id)  # unknown game or missing package: fail here, not in a worker
    elif not is_atari(env_id) and env_id not in gym.registry:
        raise unknown_env_error(env_id)
    if backend == "auto":
        backend = choose_backend(env_id, num_envs, kwargs)
    for name, value in (("num_workers", num_workers), ("timeout_s", timeout_s)):
        if value is not None and backend != "async":
            raise ValueError(
                f"{name} is an option of backend 'async' only, not {backend!r}; remove it"
            )
    if backend == "ale":
        reason = ale_unsupported(env_id, kwargs)
        if reason is not None:
            raise ValueError(reason)
        options = {k: v for k, v in kwargs.items() if k != "render_mode"}  # None: checked above
        return AleVectorEnv(ale_game(env_id), num_envs, AtariOptions.from_kwargs(options),
                            seed=seed)
    seeds = [None if seed is None else seed + i for i in range(num_envs)]
    env_fns = [functools.partial(make_env, env_id, seed=s, **kwargs) for s in seeds]
    if backend == "sync":
        return InProcessVectorEnv(env_fns)
    return SharedMemoryVectorEnv(env_fns, num_workers=num_workers, timeout_s=timeout_s)
