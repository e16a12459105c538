"""``AtariOptions``: the Atari preprocessing options, their defaults, meanings and valid ranges.

The one definition every other place derives from: ``make_atari`` and ``make_vector_env`` take
these fields as keyword arguments, the ``ale`` backend (``AleVectorEnv``) takes an instance, and
the training config's ``env`` section (``agents.config.EnvConfig``) inherits the fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class AtariOptions:
    """How an Atari game is preprocessed (the DQN stack; see ``envs.wrappers`` for each step)."""

    frame_skip: int = 4
    """Atari: frames per agent step (actions repeated, last two frames max-pooled)."""
    frame_stack: int = 4
    """Atari: frames stacked into one observation."""
    screen_size: int = 84
    """Atari: side of the square grayscale observation."""
    noop_max: int = 30
    """Atari: up to this many no-op actions after reset (random start states)."""
    episodic_life: bool = True
    """Atari, training only: a lost life ends the learner's episode (the game goes on)."""
    clip_rewards: bool = True
    """Atari, training only: rewards clipped to their sign (scores are still logged unclipped)."""
    fire_reset: bool = True
    """Atari: press FIRE after reset in games that need it."""
    repeat_action_probability: float = 0.0
    """Atari: sticky actions probability (0 = deterministic ALE)."""
    max_episode_frames: int | None = 108_000
    """Atari: frames before a game is truncated (108k frames = 30 minutes), in training and
    evaluation; None: no cap."""

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> AtariOptions:
        """The options named in ``kwargs`` (defaults for the rest), checked: a ``ValueError``
        names an unknown option or the first out-of-range value."""
        unknown = sorted(set(kwargs) - set(ATARI_OPTION_NAMES))
        if unknown:
            raise ValueError(
                f"unknown Atari option(s) {', '.join(unknown)}; the options are "
                f"{', '.join(ATARI_OPTION_NAMES)}"
            )
        options = cls(**kwargs)
        problems = options.problems()
        if problems:
            raise ValueError(problems[0])
        return options

    def problems(self) -> list[str]:
        """One line per out-of-range option, naming it and its allowed values."""
        frames = self.max_episode_frames
        checks = [
            ("frame_skip", self.frame_skip >= 1, "an int >= 1"),
            ("frame_stack", self.frame_stack >= 1, "an int >= 1"),
            ("screen_size", self.screen_size >= 8, "an int >= 8"),
            ("noop_max", self.noop_max >= 0, "an int >= 0"),
            ("repeat_action_probability", 0.0 <= self.repeat_action_probability <= 1.0,
             "a float in [0, 1]"),
            ("max_episode_frames", frames is None or frames >= 1, "an int >= 1 or None"),
        ]
        return [
            f"{name}={getattr(self, name)!r} is out of range; {name} must be {allowed}"
            for name, ok, allowed in checks
            if not ok
        ]

    def atari_kwargs(self) -> dict[str, Any]:
        """The options as keyword arguments of ``make_atari`` / ``make_vector_env``."""
        return {name: getattr(self, name) for name in ATARI_OPTION_NAMES}


ATARI_OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AtariOptions))
"""The option names, in declaration order."""
