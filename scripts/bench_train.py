"""End-to-end training throughput of rlkit's learners against Stable-Baselines3, in one run.

Each section times whole training steps (act, env step, store, update) on Pong for rlkit and for
the SB3 counterpart with the same network, buffer size, batch size and update frequency, after
an untimed warm-up that fills the buffer, and reports agent steps per second. Sections:

* ``dqn``: ``agents.dqn.DQNLearner`` (configs/pong_dqn.yaml) vs ``stable_baselines3.DQN``
  (``CnnPolicy`` = the same Nature CNN, ``make_atari_env`` + 4-frame stack).
* ``paac``: ``agents.paac.PAACLearner`` (configs/pong_paac.yaml) vs ``stable_baselines3.A2C``
  with 16 and 32 envs, n_steps 5, the same Nature CNN; plus the NIPS CNN and learner-only
  updates/s (``--steps`` is the timed agent steps per measurement).
* ``ppo``: ``agents.ppo.PPOLearner`` (configs/pong_ppo.yaml: 8 envs, 128 steps, 4 epochs of 4
  minibatches, Nature CNN) vs ``stable_baselines3.PPO`` with the same settings; whole
  iterations (rollout + every epoch), ``--steps`` rounded up to whole rollouts of 1,024 steps.
* ``distributed`` (``--nproc N``): PAAC on Pong, 16 envs per rank, with 1 and with N gloo ranks
  on this CPU; global frames/s and scaling efficiency (``scripts/bench_distributed.py``).

Add a section by writing ``bench_<name>(args) -> dict`` and one entry in ``SECTIONS``.

    python scripts/bench_train.py                      # every section, CPU
    python scripts/bench_train.py --only dqn --steps 2000 --device cuda
    python scripts/bench_train.py --nproc 2              # data-parallel scaling only

Prints one JSON object (and writes it to ``--json PATH`` if given). Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
EPSILON = 0.1
"""Constant exploration for both libraries, so both run the network on ~90% of steps (with
epsilon near 1 at the start of training both would skip it and time only the updates)."""


def _rlkit_dqn_sps(args: argparse.Namespace) -> float:
    from agents.config import load_config
    from agents.dqn import DQNLearner
    from rlkit.logger import Logger

    cfg = load_config(ROOT / "configs" / "pong_dqn.yaml", [
        f"agent.buffer_size={args.buffer_size}", f"agent.learning_starts={args.warmup}",
        "agent.batch_size=32", "agent.train_freq=4", f"train.device={args.device}",
        "env.backend=sync", f"train.seed={args.seed}", "train.log_every=1000000000",
        f"agent.epsilon_start={EPSILON}", f"agent.epsilon_final={EPSILON}",
    ])
    learner = DQNLearner(cfg, torch.device(args.device), Logger(None))
    try:
        while learner.env_steps < args.warmup:
            learner.train_iteration()
        start_steps, start = learner.env_steps, time.perf_counter()
        while learner.env_steps < args.warmup + args.steps:
            learner.train_iteration()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return (learner.env_steps - start_steps) / (time.perf_counter() - start)
    finally:
        learner.close()


def _sb3_dqn_sps(args: argparse.Namespace) -> float:
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=args.seed), 4)
    model = DQN(
        "CnnPolicy", env, buffer_size=args.buffer_size, learning_starts=args.warmup,
        batch_size=32, train_freq=4, gradient_steps=1, target_update_interval=10_000,
        learning_rate=2.5e-4, gamma=0.99, device=args.device, seed=args.seed, verbose=0,
        exploration_initial_eps=EPSILON, exploration_final_eps=EPSILON,
    )
    try:
        model.learn(total_timesteps=args.warmup)
        start = time.perf_counter()
        model.learn(total_timesteps=args.steps, reset_num_timesteps=False)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return args.steps / (time.perf_counter() - start)
    finally:
        env.close()


def bench_dqn(args: argparse.Namespace) -> dict[str, Any]:
    """DQN on Pong, updates on (one every 4 agent steps, batch 32), same buffer size."""
    rlkit_sps = _rlkit_dqn_sps(args)
    sb3_sps = _sb3_dqn_sps(args)
    return {
        "rlkit_steps_per_s": round(rlkit_sps, 1),
        "sb3_steps_per_s": round(sb3_sps, 1),
        "speedup": round(rlkit_sps / sb3_sps, 2),
        "settings": {"env": "Pong (frame skip 4, 84x84x4)", "network": "Nature CNN",
                     "buffer_size": args.buffer_size, "batch_size": 32, "train_freq": 4,
                     "warmup_steps": args.warmup, "timed_steps": args.steps},
    }


def _paac_learner(args: argparse.Namespace, n_envs: int, encoder: str) -> Any:
    from agents.config import load_config
    from agents.paac import PAACLearner
    from rlkit.logger import Logger

    cfg = load_config(ROOT / "configs" / "pong_paac.yaml", [
        f"env.num_envs={n_envs}", f"agent.encoder={encoder}", f"train.device={args.device}",
        f"train.seed={args.seed}", "train.log_every=1000000000",
    ])
    return PAACLearner(cfg, torch.device(args.device), Logger(None))


def _sync(args: argparse.Namespace) -> None:
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()


def _rlkit_paac_sps(args: argparse.Namespace, n_envs: int, encoder: str) -> tuple[float, str]:
    """Agent steps/s of whole PAAC iterations (t_max=5 rollout + update), and the env backend."""
    learner = _paac_learner(args, n_envs, encoder)
    try:
        for _ in range(3):  # warm-up: allocator, first-update RMSProp state
            learner.train_iteration()
        start_steps, start = learner.env_steps, time.perf_counter()
        while learner.env_steps - start_steps < args.steps:
            learner.train_iteration()
        _sync(args)
        sps = (learner.env_steps - start_steps) / (time.perf_counter() - start)
        return sps, type(learner.envs).__name__
    finally:
        learner.close()


def _rlkit_paac_updates_per_s(args: argparse.Namespace, n_envs: int, encoder: str) -> float:
    """Learner-only: the t_max acting forward passes, bootstrap, loss and update on stored
    observations (no env stepping), i.e. everything PAAC computes per update."""
    from agents.paac import Rollout, sample_actions

    learner = _paac_learner(args, n_envs, encoder)
    try:
        t_max = learner.agent.t_max
        frames = [learner.obs]
        for _ in range(t_max):
            obs, *_ = learner.envs.step(learner.envs.action_space.sample())
            frames.append(learner._to_device(obs))
        zeros = torch.zeros(t_max, n_envs, device=learner.device)
        flags = zeros.bool()

        def update() -> None:
            outs = [learner.net(frames[t]) for t in range(t_max)]
            logits = torch.stack([o[0] for o in outs])
            actions = sample_actions(logits.detach().flatten(0, 1), learner.generator)
            with torch.no_grad():
                bootstrap = learner.net(frames[t_max])[1]
            learner.learn(Rollout(logits, torch.stack([o[1] for o in outs]),
                                  actions.view(t_max, n_envs), zeros, flags, flags, ~flags,
                                  bootstrap))

        for _ in range(3):
            update()
        _sync(args)
        count = max(10, args.steps // (t_max * n_envs))
        start = time.perf_counter()
        for _ in range(count):
            update()
        _sync(args)
        return count / (time.perf_counter() - start)
    finally:
        learner.close()


def _sb3_a2c_sps(args: argparse.Namespace, n_envs: int) -> float:
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=n_envs, seed=args.seed), 4)
    # CnnPolicy = Nature CNN shared by policy and value heads; n_steps = PAAC's t_max.
    model = A2C("CnnPolicy", env, n_steps=5, learning_rate=7e-4, ent_coef=0.01,
                device=args.device, seed=args.seed, verbose=0)
    try:
        model.learn(total_timesteps=3 * 5 * n_envs)  # warm-up, as for rlkit
        start = time.perf_counter()
        model.learn(total_timesteps=args.steps, reset_num_timesteps=False)
        _sync(args)
        return (model.num_timesteps - 3 * 5 * n_envs) / (time.perf_counter() - start)
    finally:
        env.close()


def bench_paac(args: argparse.Namespace) -> dict[str, Any]:
    """PAAC on Pong vs SB3 A2C, 16 and 32 envs, n_steps = t_max = 5.

    Same network on both sides for the comparison (Nature CNN, SB3's ``CnnPolicy``); the
    original PAAC default (NIPS CNN) is reported too. rlkit uses its ``auto`` env backend
    (ale-py's native threaded vector env for this config); SB3 its default ``DummyVecEnv``.
    """
    result: dict[str, Any] = {}
    for n_envs in (16, 32):
        nature_sps, backend = _rlkit_paac_sps(args, n_envs, "nature")
        nips_sps, _ = _rlkit_paac_sps(args, n_envs, "nips")
        sb3_sps = _sb3_a2c_sps(args, n_envs)
        result[f"n_envs_{n_envs}"] = {
            "rlkit_nature_steps_per_s": round(nature_sps, 1),
            "sb3_a2c_nature_steps_per_s": round(sb3_sps, 1),
            "speedup": round(nature_sps / sb3_sps, 2),
            "rlkit_nips_steps_per_s": round(nips_sps, 1),
            "rlkit_nature_learner_updates_per_s": round(
                _rlkit_paac_updates_per_s(args, n_envs, "nature"), 1),
            "rlkit_nips_learner_updates_per_s": round(
                _rlkit_paac_updates_per_s(args, n_envs, "nips"), 1),
            "rlkit_env_backend": backend,
        }
    result["settings"] = {"env": "Pong (frame skip 4, 84x84x4)", "t_max": 5,
                          "timed_steps": args.steps, "frames_per_step": 4}
    return result


PPO_ROLLOUT = 8 * 128
"""Agent steps per PPO iteration in configs/pong_ppo.yaml: 8 envs x 128 steps."""


def _ppo_iterations(args: argparse.Namespace) -> int:
    return max(1, -(-args.steps // PPO_ROLLOUT))


def _rlkit_ppo_sps(args: argparse.Namespace, backend: str) -> float:
    """Agent steps/s of whole PPO iterations (rollout, GAE, 4 epochs x 4 minibatches)."""
    from agents.config import load_config
    from agents.ppo import PPOLearner
    from rlkit.logger import Logger

    cfg = load_config(ROOT / "configs" / "pong_ppo.yaml", [
        f"env.backend={backend}", f"train.device={args.device}", f"train.seed={args.seed}",
        "train.log_every=1000000000",
    ])
    learner = PPOLearner(cfg, torch.device(args.device), Logger(None))
    try:
        learner.train_iteration()  # warm-up: allocator, Adam state
        _sync(args)
        start_steps, start = learner.env_steps, time.perf_counter()
        for _ in range(_ppo_iterations(args)):
            learner.train_iteration()
        _sync(args)
        return (learner.env_steps - start_steps) / (time.perf_counter() - start)
    finally:
        learner.close()


def _sb3_ppo_sps(args: argparse.Namespace) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=8, seed=args.seed), 4)
    # The rl-zoo3 / CleanRL Atari settings that configs/pong_ppo.yaml holds.
    model = PPO("CnnPolicy", env, n_steps=128, n_epochs=4, batch_size=256, learning_rate=2.5e-4,
                clip_range=0.1, clip_range_vf=0.1, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
                gamma=0.99, gae_lambda=0.95, device=args.device, seed=args.seed, verbose=0)
    try:
        model.learn(total_timesteps=PPO_ROLLOUT)  # warm-up: one iteration, as for rlkit
        _sync(args)
        start_steps, start = model.num_timesteps, time.perf_counter()
        model.learn(total_timesteps=_ppo_iterations(args) * PPO_ROLLOUT,
                    reset_num_timesteps=False)
        _sync(args)
        return (model.num_timesteps - start_steps) / (time.perf_counter() - start)
    finally:
        env.close()


def bench_ppo(args: argparse.Namespace) -> dict[str, Any]:
    """PPO on Pong vs SB3 PPO with the same network and hyperparameters.

    rlkit is timed with its ``auto`` env backend (ale-py's native vector env) and with the
    ``sync`` backend (one env after another in this process, as SB3's default ``DummyVecEnv``),
    so the ratio that comes from the learner alone is visible too.
    """
    auto_sps = _rlkit_ppo_sps(args, "auto")
    sync_sps = _rlkit_ppo_sps(args, "sync")
    sb3_sps = _sb3_ppo_sps(args)
    return {
        "rlkit_auto_backend_steps_per_s": round(auto_sps, 1),
        "rlkit_sync_backend_steps_per_s": round(sync_sps, 1),
        "sb3_ppo_steps_per_s": round(sb3_sps, 1),
        "speedup": round(auto_sps / sb3_sps, 2),
        "speedup_same_env_stepping": round(sync_sps / sb3_sps, 2),
        "settings": {"env": "Pong (frame skip 4, 84x84x4)", "num_envs": 8, "n_steps": 128,
                     "n_epochs": 4, "minibatch": 256, "network": "Nature CNN",
                     "timed_steps": _ppo_iterations(args) * PPO_ROLLOUT, "frames_per_step": 4},
    }


def bench_distributed(args: argparse.Namespace) -> dict[str, Any]:
    from bench_distributed import scaling  # scripts/ is on sys.path when run as a script

    envs_per_rank = 16
    return scaling(argparse.Namespace(
        nproc=args.nproc or 2, env="pong", envs_per_rank=envs_per_rank, warmup=5,
        iterations=max(1, args.steps // (5 * envs_per_rank))))


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "dqn": bench_dqn,
    "paac": bench_paac,
    "ppo": bench_ppo,
    "distributed": bench_distributed,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append",
                        help="run only this section (repeatable); default: all")
    parser.add_argument("--steps", type=int, default=3000, help="timed agent steps per library")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="untimed agent steps first (= learning_starts)")
    parser.add_argument("--buffer-size", type=int, default=100_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both libraries)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--nproc", type=int,
                        help="run the 'distributed' section with N ranks (default sections: all "
                             "but 'distributed')")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "device": args.device,
                    "torch_threads": args.threads, "torch": torch.__version__},
    }
    default = ["distributed"] if args.nproc else [n for n in SECTIONS if n != "distributed"]
    for name in args.only or default:
        result[name] = SECTIONS[name](args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
