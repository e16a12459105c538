"""Published Atari scores that learning curves are drawn against, each with its source.

Every number is a final evaluation score from a paper's table (a horizontal line on a plot, not a
curve), quoted with the training budget that produced it so a reader can tell how far along the
published agent was. Games without published data here get no lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.registry import ale_game, is_atari

NATURE_DQN = (
    "Mnih et al. 2015, 'Human-level control through deep reinforcement learning' "
    "(Nature), Extended Data Table 2"
)
PAAC = (
    "Clemente, Castejon & Chandra 2017, 'Efficient Parallel Methods for Deep Reinforcement "
    "Learning', Table 1"
)


@dataclass(frozen=True)
class Reference:
    """One published score for one game."""

    label: str
    score: float
    source: str
    budget: str
    """Training that produced the score (``"-"`` for human play)."""


REFERENCES: dict[str, tuple[Reference, ...]] = {
    "pong": (
        Reference("human (Nature DQN table)", 9.3, NATURE_DQN, "-"),
        Reference("DQN, Nature 2015", 18.9, NATURE_DQN, "50M frames"),
        Reference("PAAC, NIPS network", 20.6, PAAC, "80M agent steps (320M frames)"),
    ),
    "breakout": (
        Reference("human (Nature DQN table)", 31.8, NATURE_DQN, "-"),
        Reference("DQN, Nature 2015", 401.2, NATURE_DQN, "50M frames"),
    ),
}
"""ALE ROM name (``envs.registry.ale_game``) -> its published scores."""


def references_for(env_id: str) -> tuple[Reference, ...]:
    """The published scores for ``env_id``'s game (any Atari id spelling); empty if none."""
    return REFERENCES.get(ale_game(env_id), ()) if is_atari(env_id) else ()
