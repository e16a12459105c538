"""PAAC data-parallel: 2 gloo ranks with n_e envs each equal, update for update, one process with
2 x n_e envs (same seed, CPU): same games, same actions, same weights to float tolerance."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.multiprocessing as mp

from agents.config import load_config
from agents.paac import PAACLearner
from rlkit.distributed import init_distributed
from rlkit.logger import Logger

ROOT = Path(__file__).resolve().parents[1]
PAAC_ITERATIONS, ENVS_PER_RANK = 8, 3


def _paac(num_envs: int, dist=None) -> PAACLearner:
    cfg = load_config(ROOT / "configs" / "cartpole_paac.yaml",
                      [f"env.num_envs={num_envs}", "train.seed=11", "train.device=cpu",
                       "agent.mlp_hidden=[32]", "optim.max_grad_norm=0.05"])
    return PAACLearner(cfg, torch.device("cpu"), Logger(None), dist)


def _run_paac(learner: PAACLearner) -> dict:
    initial = {k: v.clone() for k, v in learner.net.state_dict().items()}
    norms = []
    for _ in range(PAAC_ITERATIONS):
        learner.train_iteration()
        norms.append(learner._acc["grad_norm"].item())
    out = {"net": learner.net.state_dict(), "initial": initial, "obs": learner.obs.clone(),
           "env_steps": learner.env_steps, "updates": learner.update.updates, "norms": norms}
    learner.close()
    return out


def _paac_rank(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with init_distributed("cpu", timeout_s=60) as ctx:
        torch.save(_run_paac(_paac(ENVS_PER_RANK, ctx)), Path(out) / f"rank{rank}.pt")


def test_paac_two_ranks_equal_one_process_with_twice_the_envs(tmp_path):
    from test_distributed import free_port

    mp.start_processes(_paac_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = _run_paac(_paac(2 * ENVS_PER_RANK))
    n = ENVS_PER_RANK
    assert ranks[0]["env_steps"] == ranks[1]["env_steps"] == single["env_steps"]
    assert ranks[0]["updates"] == single["updates"] == PAAC_ITERATIONS
    # same games: rank r's envs are the single run's envs r*n .. (r+1)*n-1, step for step
    for r in range(2):
        torch.testing.assert_close(ranks[r]["obs"], single["obs"][r * n:(r + 1) * n])
    # same updates (clipping active: max_grad_norm is below the gradient norms)
    assert min(single["norms"]) > 0.05
    for key, value in single["net"].items():
        assert torch.equal(ranks[0]["net"][key], ranks[1]["net"][key]), key
        torch.testing.assert_close(ranks[0]["net"][key], value, rtol=1e-5, atol=1e-6)
        assert not torch.equal(value, single["initial"][key]), key
