"""Published Atari and MinAtar scores that learning curves are drawn against, with sources.

Every number is a final evaluation score from a paper's table (a horizontal line on a plot, not a
curve), quoted with the training budget that produced it so a reader can tell how far along the
published agent was. Games without published data here get no lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.atari_scores import RANDOM_AND_HUMAN, game_name
from envs.minatar import is_minatar
from envs.registry import ale_game, is_atari

NATURE_DQN = (
    "Mnih et al. 2015, 'Human-level control through deep reinforcement learning' "
    "(Nature), Extended Data Table 2"
)
RL_ZOO3 = "rl-baselines3-zoo (Raffin et al.), benchmark table, 10M agent steps"
CLEANRL = "CleanRL (Huang et al. 2022), dqn_atari.py benchmark, 10M agent steps"
MINATAR = (
    "Young & Tian 2019, 'MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible "
    "Reinforcement Learning Experiments', learning curves (30 runs, v0 actions), read at 5M frames"
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

MINATAR_REFERENCES: dict[str, tuple[float, float]] = {
    "Breakout": (10.0, 17.5),
    "Freeway": (50.0, 47.0),
    "SpaceInvaders": (43.0, 185.0),
    "Asterix": (17.0, 20.0),
    "Seaquest": (20.0, 15.0),
}
"""MinAtar game -> (DQN, AC(lambda=0.8)) scores at 5M frames, read off the paper's curves (~)."""


def _minatar_game(env_id: str) -> str:
    """``MinAtar/SpaceInvaders-v0`` -> ``SpaceInvaders``."""
    return env_id.split("/", 1)[-1].split("-v", 1)[0]


def references_for(env_id: str) -> tuple[Reference, ...]:
    """The published scores for ``env_id``'s game (any Atari id spelling); empty if none.

    The human line of every game in the Nature DQN table comes from ``envs.atari_scores``."""
    if is_minatar(env_id) and _minatar_game(env_id) in MINATAR_REFERENCES:
        dqn, actor_critic = MINATAR_REFERENCES[_minatar_game(env_id)]
        return (
            Reference("DQN, MinAtar paper", dqn, MINATAR, "5M frames"),
            Reference("AC(0.8), MinAtar paper", actor_critic, MINATAR, "5M frames"),
        )
    if not is_atari(env_id):
        return ()
    human = []
    game = game_name(env_id)
    if game is not None:
        human = [Reference("human (Nature DQN table)", RANDOM_AND_HUMAN[game][1], NATURE_DQN, "-")]
    return (*human, *REFERENCES.get(ale_game(env_id), ()))
