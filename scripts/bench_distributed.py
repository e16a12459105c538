"""Data-parallel benchmarks on gloo ranks spawned on this machine (CPU, one thread per rank).

``--compare-ddp``: rlkit's bucketed all-reduce vs DistributedDataParallel. Every rank trains the
PAAC "NIPS" actor-critic on a ``--batch`` of Atari-shaped observations (PAAC's t_max x n_e),
once with ``UpdateStep(grad_sync=ctx.average_gradients)`` and once wrapped in
``DistributedDataParallel``, interleaved round by round so machine noise hits both alike; reports
milliseconds per update (median over rounds) for each, and for one process without communication.

``--scaling``: end-to-end PAAC training throughput (rollouts, env steps, updates, all-reduce)
with 1 rank and with ``--nproc`` ranks, ``--envs-per-rank`` envs each (weak scaling: the
global batch grows with N, as in ``rlkit train --nproc N``); reports global agent steps/s,
frames/s (x frame_skip on Atari), the speed-up over 1 rank and the efficiency (speed-up / N).

    python scripts/bench_distributed.py --compare-ddp --nproc 2
    python scripts/bench_distributed.py --scaling --nproc 2 --env pong --envs-per-rank 16

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from agents.networks import build_encoder
from rlkit.distributed import init_distributed
from rlkit.update import UpdateStep

ROOT = Path(__file__).resolve().parents[1]
OBS_SHAPE, ACTIONS = (4, 84, 84), 6


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = build_encoder(OBS_SHAPE, "nips")
        self.heads = nn.Linear(self.encoder.out_features, ACTIONS + 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.heads(self.encoder(obs))


def _loss(model: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    return model(obs).pow(2).mean()


def _time_updates(step: UpdateStep, model: nn.Module, obs: torch.Tensor, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step.update(_loss(model, obs))
    return (time.perf_counter() - start) / n * 1e3


def _rank(rank: int, args: argparse.Namespace, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(args.nproc), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with init_distributed("cpu") as ctx:
        torch.manual_seed(0)
        explicit = Net()
        ctx.broadcast_module(explicit)
        wrapped = Net()
        wrapped.load_state_dict(explicit.state_dict())
        ddp = DistributedDataParallel(wrapped)
        steps = {
            "explicit_allreduce": (explicit, UpdateStep(
                explicit, torch.optim.RMSprop(explicit.parameters(), lr=1e-4),
                max_grad_norm=3.0, monitor_every=10**9, grad_sync=ctx.average_gradients)),
            "ddp": (ddp, UpdateStep(ddp, torch.optim.RMSprop(ddp.parameters(), lr=1e-4),
                                    max_grad_norm=3.0, monitor_every=10**9)),
        }
        g = torch.Generator().manual_seed(rank)
        obs = torch.randint(0, 256, (args.batch, *OBS_SHAPE), generator=g, dtype=torch.uint8)
        times: dict[str, list[float]] = {name: [] for name in steps}
        for round_ in range(args.rounds + 1):
            for name, (model, step) in steps.items():
                ms = _time_updates(step, model, obs, args.updates)
                if round_ > 0:  # round 0 warms up both
                    times[name].append(ms)
        ctx.assert_in_sync(explicit)
        if ctx.is_main:
            Path(out).write_text(json.dumps({k: statistics.median(v) for k, v in times.items()}))


def _scaling_rank(rank: int, nproc: int, args: argparse.Namespace, port: int, out: str) -> None:
    from agents.config import load_config
    from agents.paac import PAACLearner
    from rlkit.logger import Logger

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    config = {"cartpole": "cartpole_paac.yaml", "pong": "pong_paac.yaml"}[args.env]
    cfg = load_config(ROOT / "configs" / config, [
        f"env.num_envs={args.envs_per_rank}", "env.backend=sync", "train.device=cpu",
        "train.log_every=1000000000"])
    with init_distributed("cpu") as ctx:
        learner = PAACLearner(cfg, ctx.device, Logger(None), ctx)
        try:
            for _ in range(args.warmup):
                learner.train_iteration()
            ctx.barrier()
            start, steps = time.perf_counter(), learner.env_steps
            for _ in range(args.iterations):
                learner.train_iteration()
            ctx.barrier()
            elapsed = time.perf_counter() - start
            ctx.assert_in_sync(learner.net)
            if ctx.is_main:
                Path(out).write_text(json.dumps({"sps": (learner.env_steps - steps) / elapsed}))
        finally:
            learner.close()


def scaling(args: argparse.Namespace) -> dict:
    """Global agent steps/s of PAAC with 1 rank and with ``args.nproc`` ranks."""
    frame_skip = 4 if args.env == "pong" else 1
    sps = {}
    for nproc in (1, args.nproc):
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "result.json")
            mp.start_processes(_scaling_rank, args=(nproc, args, _free_port(), out),
                               nprocs=nproc, join=True, start_method="spawn")
            sps[nproc] = json.loads(Path(out).read_text())["sps"]
    speedup = sps[args.nproc] / sps[1]
    return {
        "benchmark": f"PAAC end-to-end training, {args.env}, gloo on CPU, 1 thread per rank",
        "envs_per_rank": args.envs_per_rank, "timed_updates": args.iterations,
        "agent_steps_per_s": {str(n): round(v, 1) for n, v in sps.items()},
        "frames_per_s": {str(n): round(v * frame_skip, 1) for n, v in sps.items()},
        f"speedup_{args.nproc}_over_1": round(speedup, 3),
        "efficiency": round(speedup / args.nproc, 3),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single(args: argparse.Namespace) -> float:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Net()
    step = UpdateStep(model, torch.optim.RMSprop(model.parameters(), lr=1e-4), max_grad_norm=3.0,
                      monitor_every=10**9)
    obs = torch.randint(0, 256, (args.batch, *OBS_SHAPE), dtype=torch.uint8)
    _time_updates(step, model, obs, args.updates)
    return statistics.median(_time_updates(step, model, obs, args.updates)
                             for _ in range(args.rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--compare-ddp", action="store_true", help="all-reduce vs DDP")
    mode.add_argument("--scaling", action="store_true", help="PAAC steps/s, 1 vs N ranks")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--batch", type=int, default=80, help="examples per rank (t_max x n_e)")
    parser.add_argument("--updates", type=int, default=10, help="updates per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--env", choices=["cartpole", "pong"], default="cartpole")
    parser.add_argument("--envs-per-rank", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=5, help="untimed PAAC updates")
    parser.add_argument("--iterations", type=int, default=50, help="timed PAAC updates")
    args = parser.parse_args()
    if args.scaling:
        print(json.dumps({**scaling(args), "torch": torch.__version__}, indent=2))
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        mp.start_processes(_rank, args=(args, port, out), nprocs=args.nproc, join=True,
                           start_method="spawn")
        result = json.loads(Path(out).read_text())
    params = sum(p.numel() for p in Net().parameters())
    print(json.dumps({
        "benchmark": "gradient averaging, gloo on CPU, 1 thread per rank",
        "nproc": args.nproc, "batch_per_rank": args.batch, "parameters": params,
        "ms_per_update": {**{k: round(v, 2) for k, v in result.items()},
                          "single_process_no_comm": round(_single(args), 2)},
        "torch": torch.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
