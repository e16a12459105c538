"""MinAtar (Young & Tian 2019): five miniature Atari games on a 10x10 grid, channels first.

MinAtar's gymnasium envs (package ``minatar``, the optional extra ``pip install -e '.[minatar]'``)
emit ``bool`` observations ``(10, 10, C)``, one binary channel per kind of object (C = 4 for
Asterix and Breakout, 7 for Freeway, 10 for Seaquest, 6 for SpaceInvaders). ``make_minatar``
turns them into ``uint8`` ``(C, 10, 10)`` with values 0 and 1 (``ChannelsFirst``), the layout
every learner here takes; they are not pixels, so the MinAtar network uses them unscaled.

Ids: ``MinAtar/<Game>-v0`` acts with all 6 actions of every game (no-op, left, up, right, down,
fire), as in the paper; ``-v1`` with the game's minimal action set (Breakout 3, Freeway 3,
SpaceInvaders 4, Asterix 5, Seaquest 6). Both are registered by ``minatar.gym.register_envs``,
which ``import minatar`` does not call; ``make_minatar`` calls it on first use.

Settings are MinAtar's own, which are the paper's: the gymnasium registration passes only the
game and the action set, so ``minatar.Environment``'s defaults apply, ``sticky_action_prob=0.1``
(the previous action is repeated instead of the agent's with probability 0.1) and
``difficulty_ramping=True`` (Asterix, Seaquest and SpaceInvaders speed up as a game goes on).
There is no frame skip (one step is one frame) and no time limit: Freeway's game ends by itself
(``terminated``) after 2,500 time steps, its 2,501st step reporting the end; the other games end
when the player dies, which a strong Breakout player may put off indefinitely
(``max_episode_steps`` caps a game when that matters).

Seeding: ``reset(seed=s)`` gives the game one ``numpy.random.RandomState(s)`` for both its
randomness and the sticky actions. MinAtar keeps the previous action across episodes; a seeded
reset here also clears it, so that a seeded reset replays exactly what a new env seeded with
``s`` plays. Unseeded resets keep MinAtar's behaviour.
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box

from envs.guard import EnvGuard

MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
"""The five games of the paper, spelled as in their gymnasium ids."""

MINATAR_IDS = tuple(f"MinAtar/{game}-v{v}" for game in MINATAR_GAMES for v in (0, 1))
"""Every id ``make_minatar`` takes: ``-v0`` all 6 actions, ``-v1`` the minimal action set."""

STICKY_ACTION_PROB = 0.1
"""MinAtar's default (and the paper's) probability of repeating the previous action."""

INSTALL_HINT = "install the minatar extra: pip install -e '.[minatar]'"


class MissingExtraError(ImportError):
    """An optional dependency of rlkit is not installed; the message names the extra."""


def is_minatar(env_id: str) -> bool:
    """True for ids in the ``MinAtar/`` namespace (known games or not: see ``make_minatar``)."""
    return env_id.startswith("MinAtar/")


def unknown_minatar_error(env_id: str) -> ValueError:
    """A one-line ValueError for a ``MinAtar/`` id that is not one of the ten."""
    # Compare what follows "MinAtar/": the shared prefix would make every id look close.
    tails = {known[len("MinAtar/"):].lower(): known for known in MINATAR_IDS}
    tail = env_id[len("MinAtar/"):].lower()
    close = [tails[t] for t in difflib.get_close_matches(tail, list(tails), n=3, cutoff=0.6)]
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "no close match"
    return ValueError(
        f"unknown MinAtar id {env_id!r}: {hint} (MinAtar has {', '.join(MINATAR_GAMES)}, as "
        "'MinAtar/<Game>-v0' with all 6 actions or '-v1' with the minimal action set)"
    )


def check_minatar_id(env_id: str) -> None:
    """Raise ``unknown_minatar_error`` for an unknown game or version, then ``MissingExtraError``
    when the ``minatar`` package cannot be imported; register its ids in gymnasium if needed."""
    if env_id not in MINATAR_IDS:
        raise unknown_minatar_error(env_id)
    if env_id in gym.registry:
        return
    try:
        from minatar.gym import register_envs
    except ImportError:
        raise MissingExtraError(
            f"{env_id} needs the MinAtar package, which is not installed; {INSTALL_HINT}"
        ) from None
    register_envs()


class ChannelsFirst(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """``(H, W, C)`` bool (or 0/1) observations -> ``uint8`` ``(C, H, W)`` with values 0 and 1."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        shape = env.observation_space.shape
        if shape is None or len(shape) != 3:
            raise ValueError(
                f"ChannelsFirst needs (H, W, C) observations, got {env.observation_space}; "
                "wrap an image env such as MinAtar's"
            )
        height, width, channels = shape
        self.observation_space = Box(0, 1, (channels, height, width), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(observation, dtype=np.uint8).transpose(2, 0, 1))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            # MinAtar's Environment keeps the last action across episodes for its sticky
            # actions; a seeded reset starts from the no-op, as a freshly made env does.
            game = getattr(self.env.unwrapped, "game", None)
            if game is not None and hasattr(game, "last_action"):
                game.last_action = 0
            # gymnasium's contract: reset(seed) seeds env.np_random. MinAtar's reset seeds only
            # its own RandomState (nothing draws from np_random), so seed it here.
            self.np_random, _ = gym.utils.seeding.np_random(seed)
        return super().reset(seed=seed, options=options)


def make_minatar(
    env_id: str,
    *,
    seed: int | None = None,
    sticky_action_prob: float = STICKY_ACTION_PROB,
    difficulty_ramping: bool = True,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """A MinAtar game with ``uint8`` ``(C, 10, 10)`` observations (see the module docstring).

    ``sticky_action_prob`` and ``difficulty_ramping`` are MinAtar's own options, with its (the
    paper's) defaults; ``max_episode_steps`` truncates games (None: MinAtar has no limit).
    ``seed`` seeds the game with one ``reset(seed=seed)`` here and seeds the action space.
    ``EnvGuard`` sits outermost, as in ``make_atari``.
    """
    check_minatar_id(env_id)
    if not 0.0 <= sticky_action_prob <= 1.0:
        raise ValueError(
            f"sticky_action_prob={sticky_action_prob!r} is out of range; it must be in [0, 1]"
        )
    if max_episode_steps is not None and max_episode_steps < 1:
        raise ValueError(
            f"max_episode_steps={max_episode_steps!r} is out of range; use an int >= 1 or None"
        )
    # The registry's spec, not the id: gymnasium would warn that v0 is "out of date" because a
    # v1 exists, but MinAtar's v1 is another action set, not a newer version.
    env = gym.make(
        gym.registry[env_id],
        sticky_action_prob=sticky_action_prob,
        difficulty_ramping=difficulty_ramping,
        max_episode_steps=max_episode_steps,
        render_mode=render_mode,
        disable_env_checker=True,
    )
    env = EnvGuard(ChannelsFirst(env))
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
