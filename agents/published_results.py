"""Published Atari scores that learning curves are drawn against, each with its source.

Every number is a final evaluation score from a paper's table (a horizontal line on a plot, not a
curve), quoted with the training budget that produced it so a reader can tell how far along the
published agent was. Games without published data here get no lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.atari_scores import RANDOM_AND_HUMAN, game_name
from envs.registry import ale_game, is_atari

NATURE_DQN = (
    "Mnih et al. 2015, 'Human-level control through deep reinforcement learning' "
    "(Nature), Extended Data Table 2"
)
RL_ZOO3 = "rl-baselines3-zoo (Raffin et al.), benchmark table, 10M agent steps"
CLEANRL = "CleanRL (Huang et al. 2022), dqn_atari.py benchmark, 10M agent steps"


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
        Reference("DQN, Nature 2015", 18.9, NATURE_DQN, "50M agent steps"),
        Reference("DQN, CleanRL", 20.25, CLEANRL, "40M frames"),
        Reference("A2C, rl-zoo3", 17.3, RL_ZOO3, "40M frames"),
    ),
    "breakout": (
        Reference("DQN, Nature 2015", 401.2, NATURE_DQN, "50M agent steps"),
        Reference("A2C, rl-zoo3", 279.8, RL_ZOO3, "40M frames"),
    ),
}
"""ALE ROM name (``envs.registry.ale_game``) -> its published agents' scores."""


def references_for(env_id: str) -> tuple[Reference, ...]:
    """The published scores for ``env_id``'s game (any Atari id spelling); empty if none.

    The human line of every game in the Nature DQN table comes from ``envs.atari_scores``."""
    if not is_atari(env_id):
        return ()
    human = []
    game = game_name(env_id)
    if game is not None:
        human = [Reference("human (Nature DQN table)", RANDOM_AND_HUMAN[game][1], NATURE_DQN, "-")]
    return (*human, *REFERENCES.get(ale_game(env_id), ()))
