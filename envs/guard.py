"""Action validation and use-after-close refusal, shared by single envs and every vector backend.

Why one place: an invalid action used to fail differently in each backend (an ``IndexError``
deep in ALE, a worker process that died and took its async vector env with it, the ``ale``
backend hanging forever, or a negative index silently wrapping to another action), and a closed
env kept stepping. ``check_actions`` is the single rule; ``EnvGuard`` applies it to a single env
(``make_atari`` and ``make_env`` put it outermost) and ``GuardedVectorEnv`` to every vector env.
Nothing is stepped before the whole batch is checked, so a refused step leaves the env usable.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ClosedEnvironmentError
from gymnasium.spaces import Discrete
from gymnasium.vector import VectorEnv


def _integer_range(space: Discrete) -> str:
    lo = int(space.start)
    return f"integers in [{lo}, {lo + int(space.n)})"


def check_actions(actions: Any, space: gym.Space, num_envs: int | None = None) -> Any:
    """``actions`` if valid for ``space`` (one per env when ``num_envs`` is given), as an int64
    array for a vector of ``Discrete`` actions; else a one-line ValueError naming the fix.

    ``Discrete`` actions must be integers in range. Other spaces are checked for their shape
    only (one action per env); their values are the env's business (e.g. Box clipping).
    """
    if num_envs is None:
        return _check_single(actions, space)
    arr = np.asarray(actions)
    shape = (num_envs, *(space.shape or ()))
    if arr.shape != shape:
        raise ValueError(
            f"actions has shape {arr.shape}, expected {shape}: one action per env "
            f"(num_envs={num_envs}); pass an array of {num_envs} actions"
        )
    if not isinstance(space, Discrete):
        return actions
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"actions must be {_integer_range(space)} ({space}), got a {arr.dtype} array; "
            "pass integer actions, e.g. actions.astype(np.int64)"
        )
    lo, hi = int(space.start), int(space.start) + int(space.n)
    outside = (arr < lo) | (arr >= hi)
    if outside.any():
        env = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"action {arr[env]} for env {env} is out of range; actions must be "
            f"{_integer_range(space)} ({space}); nothing was stepped"
        )
    return arr.astype(np.int64, copy=False)


def _check_single(action: Any, space: gym.Space) -> Any:
    """``check_actions`` for one env: a plain int in range passes at the cost of two compares."""
    if not isinstance(space, Discrete):
        return action
    lo = int(space.start)
    if isinstance(action, (int, np.integer)) and lo <= action < lo + int(space.n):
        return action
    arr = np.asarray(action)
    if arr.shape != ():
        raise ValueError(
            f"action has shape {arr.shape}, expected one integer ({space}); pass a single "
            "action to a single env (vector envs take one per env)"
        )
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"action must be an integer ({_integer_range(space)}, {space}), got {action!r} of "
            f"type {type(action).__name__}; pass an int"
        )
    if not lo <= arr < lo + int(space.n):
        raise ValueError(
            f"action {arr.item()} is out of range; actions must be {_integer_range(space)} "
            f"({space})"
        )
    return arr.item()


def array_shape(space: gym.Space, role: str) -> tuple[int, ...]:
    """The shape of one ``role`` ("observation" or "action") of ``space``; a one-line ValueError
    for a composite space (``Tuple``, ``Dict``, ...), whose ``shape`` is None.

    Why: vector backends and learners hold a batch in one array of ``(num_envs, *shape)``, and a
    composite space would otherwise fail later with a TypeError about unpacking None.
    """
    if space.shape is None:
        fix = (
            "wrap the env in gymnasium.wrappers.FlattenObservation"
            if role == "observation"
            else "use an env whose actions are Box, Discrete, MultiDiscrete or MultiBinary"
        )
        raise ValueError(
            f"{role} space {space} has no array shape, so a batch of them cannot be stored in "
            f"one array; {fix}"
        )
    return space.shape


def closed_error(what: str) -> ClosedEnvironmentError:
    """The error for stepping or resetting ``what`` after ``close()``."""
    return ClosedEnvironmentError(
        f"{what} is closed and cannot step or reset; make a new one instead of reusing it"
    )


class EnvGuard(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Refuse invalid actions (``check_actions``) and any step or reset after ``close()``.

    ``make_atari`` and ``make_env`` put it outermost, so a bad action never reaches the
    emulator (where an out-of-range index raised an ``IndexError`` and a negative one picked
    another action silently) and the env stays usable after the error.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._closed = False

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        if self._closed:
            raise closed_error("this env")
        return self.env.step(check_actions(action, self.action_space))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if self._closed:
            raise closed_error("this env")
        return self.env.reset(seed=seed, options=options)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.env.close()


class GuardedVectorEnv(VectorEnv):
    """Base of every vector backend: checks the actions once for the whole batch and refuses
    use after ``close()``, then calls the backend's ``_step`` / ``_reset``."""

    backend = ""  # "sync", "async" or "ale": the backend that ``make_vector_env`` picked

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self._refuse_if_closed()
        return self._step(check_actions(actions, self.single_action_space, self.num_envs))

    def reset(
        self, *, seed: Any = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._refuse_if_closed()
        return self._reset(seed=seed, options=options)

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise closed_error(f"this {self.backend} vector env")

    def _step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def _reset(
        self, *, seed: Any = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError
