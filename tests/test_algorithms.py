"""The algorithm table: every name resolves, and loading a config needs neither torch nor a
learner module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.algorithms import ALGORITHMS, algorithm
from agents.check import Probe
from agents.config import ALGO_CONFIGS


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_row_resolves(name: str) -> None:
    row = algorithm(name)
    assert ALGO_CONFIGS[name] is row.config
    assert callable(row.learner_factory()) and callable(row.policy_builder())
    assert issubclass(row.probe_class(), Probe)
    assert row.acting_state


def test_unknown_algorithm_names_the_known_ones() -> None:
    known = "dqn, double_dqn, paac, ppo"
    with pytest.raises(KeyError, match=f"unknown algorithm 'a2c'; known: {known}"):
        algorithm("a2c")


def test_loading_a_config_imports_no_torch_and_no_learner() -> None:
    config = Path(__file__).parent.parent / "configs" / "cartpole_dqn.yaml"
    code = (
        f"import sys, agents.config as c; c.load_config({str(config)!r}); "
        "sys.exit(any(m in sys.modules for m in "
        "('torch', 'agents.dqn', 'agents.paac', 'agents.ppo')))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
