"""The one table of algorithms: ``agent.algo`` -> everything that differs per algorithm.

Config loading, training, evaluation, export and ``rlkit check`` all look an algorithm up here
(``algorithm(name)``) and nowhere else. Adding an algorithm is one module (its learner and
policy builder) plus its config dataclass in ``agents.algo_configs`` and one row below; ``rlkit
check`` also wants a probe for it in ``agents.check``, next to the other probes, which share
most of their checks.

The config dataclasses are imported directly: they are torch-free, so ``import agents.config``
stays light. Everything else is named as ``"module:attribute"`` and imported on first use, so
that loading a config never imports torch or the learners; ``tests/test_algorithms.py`` resolves
every name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.algo_configs import DQNConfig, PAACConfig, PPOConfig

if TYPE_CHECKING:
    from agents.check import Probe
    from agents.learner import LearnerFactory
    from agents.policy import PolicyBuilder


@dataclass(frozen=True)
class Algorithm:
    """What one ``agent.algo`` value selects."""

    config: type
    """Dataclass of the ``agent:`` section."""
    learner: str
    """``"module:Class"`` of the learner the runner drives (``agents.learner.LearnerFactory``)."""
    policy: str
    """``"module:function"`` building a checkpoint's evaluation policy
    (``agents.policy.PolicyBuilder``): only the acting network, no envs or replay."""
    acting_state: tuple[str, ...]
    """Entries of a checkpoint's ``learner`` state that the policy builder reads (what
    ``rlkit export`` keeps; a run with ``train.eval_ema`` exports the EMA weights under them)."""
    probe: str
    """``"module:Class"`` of ``rlkit check``'s probe, built as ``Probe(learner, cfg)``."""

    def learner_factory(self) -> LearnerFactory:
        return _load(self.learner)

    def policy_builder(self) -> PolicyBuilder:
        return _load(self.policy)

    def probe_class(self) -> type[Probe]:
        return _load(self.probe)


_DQN = Algorithm(
    config=DQNConfig,
    learner="agents.dqn:DQNLearner",
    policy="agents.dqn:build_policy",
    acting_state=("q",),
    probe="agents.check:DQNProbe",
)

ALGORITHMS: dict[str, Algorithm] = {
    "dqn": _DQN,
    "double_dqn": _DQN,  # the same learner; DQNConfig.double turns on Double DQN's target
    "paac": Algorithm(
        config=PAACConfig,
        learner="agents.paac:PAACLearner",
        policy="agents.paac:build_policy",
        acting_state=("net",),
        probe="agents.check:PAACProbe",
    ),
    "ppo": Algorithm(
        config=PPOConfig,
        learner="agents.ppo:PPOLearner",
        policy="agents.ppo:build_policy",
        acting_state=("net",),
        probe="agents.check:PPOProbe",
    ),
}
"""``agent.algo`` -> its ``Algorithm``."""


def algorithm(name: str) -> Algorithm:
    """The table row of ``name``; ``KeyError`` naming the known algorithms otherwise (configs are
    validated on load, so only a hand-made config can get here)."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
