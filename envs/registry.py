"""Environment ids: which are Atari, their canonical ALE id, and helpful errors for unknown ones."""

from __future__ import annotations

import difflib
from functools import lru_cache

import ale_py
import gymnasium as gym

from envs.minatar import MINATAR_IDS

gym.register_envs(ale_py)


def _is_ale_spec(spec: gym.envs.registration.EnvSpec) -> bool:
    return "ale_py" in str(spec.entry_point) and "game" in spec.kwargs


@lru_cache(maxsize=1)
def _v5_ids_by_game() -> dict[str, str]:
    """ROM name (e.g. ``"space_invaders"``) -> ``"ALE/SpaceInvaders-v5"``."""
    return {
        spec.kwargs["game"]: spec.id
        for spec in gym.registry.values()
        if _is_ale_spec(spec) and spec.namespace == "ALE" and spec.version == 5
    }


def canonical_atari_id(env_id: str) -> str | None:
    """``"ALE/Pong-v5"``, ``"PongNoFrameskip-v4"`` and ``"Pong"`` all -> ``"ALE/Pong-v5"``.

    Any registered ALE id (v0, v4, NoFrameskip, v5) maps to the v5 id of the same game, because
    ``make_atari`` overrides every setting in which those versions differ (frame skip, sticky
    actions, frame cap). Returns None for ids that are not Atari games.
    """
    spec = gym.registry.get(env_id)
    if spec is not None:
        return _v5_ids_by_game().get(spec.kwargs["game"]) if _is_ale_spec(spec) else None
    bare = f"ALE/{env_id}-v5"
    return bare if "/" not in env_id and bare in gym.registry else None


def is_atari(env_id: str) -> bool:
    """True for any spelling of an Atari game id that ``make_atari`` accepts."""
    return canonical_atari_id(env_id) is not None


def ale_game(env_id: str) -> str:
    """The ROM name ale-py's native vector env expects (``"Pong"`` -> ``"pong"``)."""
    canonical = canonical_atari_id(env_id)
    if canonical is None:
        raise unknown_env_error(env_id)
    return gym.registry[canonical].kwargs["game"]


def not_atari_error(env_id: str) -> ValueError:
    """For ``make_atari`` given an id: a registered non-Atari id gets told where it belongs,
    anything else the closest known ids (``unknown_env_error``)."""
    if env_id not in gym.registry:
        return unknown_env_error(env_id)
    return ValueError(
        f"{env_id!r} is not an Atari game id; make_atari builds Atari games only, use "
        f"envs.make_env({env_id!r}) for other gymnasium envs"
    )


def unknown_env_error(env_id: str) -> ValueError:
    """A ValueError naming the closest registered ids (and bare Atari game names, and the MinAtar
    ids, registered only once a MinAtar env is made)."""
    bare_games = [spec_id[len("ALE/") : -len("-v5")] for spec_id in _v5_ids_by_game().values()]
    known = list(dict.fromkeys([*gym.registry.keys(), *bare_games, *MINATAR_IDS]))
    close = difflib.get_close_matches(env_id, known, n=5, cutoff=0.6)
    if not close:  # case slips ("pong-v5") are common; compare case-insensitively too
        lowered = {name.lower(): name for name in known}
        close = [lowered[m] for m in difflib.get_close_matches(env_id.lower(), lowered, n=5)]
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "no close match"
    return ValueError(
        f"unknown env id {env_id!r}: {hint} (use a registered gymnasium id such as "
        "'CartPole-v1', an Atari game as 'ALE/Pong-v5', 'PongNoFrameskip-v4' or 'Pong', or a "
        "MinAtar game as 'MinAtar/Breakout-v0')"
    )
