"""rlkit.distributed on CPU with gloo: launcher variables, gradient averaging equals one big batch,
bit-identical parameters across ranks, desync detection, seeds, world-size checks, and a dead or
hung rank ending the job with an error instead of a hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from rlkit.distributed import (
    DistributedContext,
    DistributedError,
    bucket_tensors,
    init_distributed,
    launch_command,
    rank_seed,
    tensor_checksum,
    to_cpu,
)
from rlkit.grads import batch_mean
from rlkit.update import UpdateStep

ROOT = Path(__file__).resolve().parents[1]
K_UPDATES, HALF_BATCH, MAX_NORM = 6, 8, 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """K batches of 2 x HALF_BATCH examples; rank r trains on half r of each batch."""
    g = torch.Generator().manual_seed(123)
    x = torch.randn(K_UPDATES, 2 * HALF_BATCH, 3, generator=g)
    y = torch.randn(K_UPDATES, 2 * HALF_BATCH, 2, generator=g) * 3
    return x, y


def _train(model: nn.Module, ctx: DistributedContext | None, batches) -> list[float]:
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01)
    step = UpdateStep(model, opt, max_grad_norm=MAX_NORM, monitor_every=10_000,
                      grad_sync=None if ctx is None else ctx.average_gradients)
    norms = []
    for x, y in batches:
        norms.append(step.update(batch_mean((model(x) - y).pow(2).sum(-1))).grad_norm.item())
    return norms


def _set_launch_env(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: different init per rank, broadcast, K updates on this rank's half of the data."""
    torch.set_num_threads(1)
    _set_launch_env(rank, world, port)
    with init_distributed("cpu", timeout_s=60) as ctx:
        report: dict = {"rank": ctx.rank, "world": ctx.world_size, "backend": ctx.backend,
                        "is_main": ctx.is_main}
        model = _model(seed=rank)  # ranks start different; broadcast must fix that
        ctx.broadcast_module(model)
        ctx.assert_in_sync(model)
        x, y = _data()
        half = slice(rank * HALF_BATCH, (rank + 1) * HALF_BATCH)
        report["norms"] = _train(model, ctx, zip(x[:, half], y[:, half], strict=True))
        ctx.assert_in_sync(model)
        report["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        report["all_sum"] = ctx.all_sum([rank + 1, 10.0])
        report["gathered"] = ctx.gather_objects({"r": rank})
        report["any"] = [ctx.any_true(rank == 1), ctx.any_true(False)]
        report["broadcast"] = ctx.broadcast_object(f"run-dir-of-rank-{rank}")
        report["scattered"] = ctx.scatter_objects(["to0", "to1"] if ctx.is_main else None)
        with torch.no_grad():  # flip the lowest bit of one weight on rank 1 only
            if rank == 1:
                w = model[2].bias
                w[0] = torch.nextafter(w[0], torch.tensor(float("inf")))
        try:
            ctx.assert_in_sync(model)
            report["desync"] = None
        except DistributedError as exc:
            report["desync"] = str(exc)
        ctx.barrier()
        torch.save(report, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def two_rank_reports(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("dist")
    mp.start_processes(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True,
                       start_method="spawn")
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def test_ranks_know_who_they_are(two_rank_reports):
    r0, r1 = two_rank_reports
    assert (r0["rank"], r0["world"], r0["backend"], r0["is_main"]) == (0, 2, "gloo", True)
    assert (r1["rank"], r1["is_main"]) == (1, False)


def test_parameters_bit_identical_across_ranks_after_updates(two_rank_reports):
    r0, r1 = two_rank_reports
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    assert r0["norms"] == r1["norms"]


def test_two_ranks_with_half_the_data_equal_one_rank_with_all(two_rank_reports):
    """Averaged batch-mean gradients == gradient of the whole batch; clipping must come after
    the average (the norm exceeds MAX_NORM, so clipping per rank would give other weights)."""
    model = _model(seed=0)
    x, y = _data()
    norms = _train(model, None, zip(x, y, strict=True))
    assert max(norms) > MAX_NORM
    assert two_rank_reports[0]["norms"] == pytest.approx(norms, rel=1e-5)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(two_rank_reports[0]["state"][key], value, rtol=1e-5,
                                   atol=1e-6)


def test_collective_helpers(two_rank_reports):
    r0, r1 = two_rank_reports
    assert r0["all_sum"] == r1["all_sum"] == [3.0, 20.0]
    assert r0["gathered"] == [{"r": 0}, {"r": 1}] and r1["gathered"] is None
    assert (r0["scattered"], r1["scattered"]) == ("to0", "to1")
    assert r0["any"] == r1["any"] == [True, False]
    assert r0["broadcast"] == r1["broadcast"] == "run-dir-of-rank-0"


def test_launch_command_uses_torch_elastic_launcher():
    cmd = launch_command(3, "agents.cli", ["train", "c.yaml"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[3:] == ["--standalone", "--nproc_per_node", "3", "--max-restarts", "0", "-m",
                       "agents.cli", "train", "c.yaml"]
    with pytest.raises(DistributedError, match="--nproc must be >= 1, got 0"):
        launch_command(0, "agents.cli", [])


def test_one_flipped_bit_is_caught_on_every_rank(two_rank_reports):
    expected = ("parameters out of sync: '2.bias' differs between rank 0 and rank 1 "
                "(1 tensor(s) differ);")
    for report in two_rank_reports:
        assert report["desync"] is not None and report["desync"].startswith(expected)


# ---------------------------------------------------------------------- single process, pure


def test_single_process_context_without_launcher_variables(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (0, 1, True, False)
    model = _model(0)
    model(torch.ones(1, 3)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    ctx.average_gradients(model.parameters())
    ctx.broadcast_module(model)
    ctx.assert_in_sync(model)
    ctx.barrier()
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before, strict=True))
    assert ctx.gather_objects("x") == ["x"] and ctx.all_sum([2, 3]) == [2.0, 3.0]
    ctx.close()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not init_distributed("cpu").is_distributed


def _recording_teardown(monkeypatch) -> list[str]:
    """Replace the process-group calls that ``close`` makes by recorders (no real group)."""
    import rlkit.distributed as rd

    calls: list[str] = []
    monkeypatch.setattr(rd.dist, "is_initialized", lambda: "destroy" not in calls)
    monkeypatch.setattr(rd.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(rd.dist, "destroy_process_group", lambda: calls.append("destroy"))
    return calls


def test_clean_close_meets_every_rank_before_destroying(monkeypatch):
    calls = _recording_teardown(monkeypatch)
    ctx = DistributedContext(rank=1, world_size=2, backend="gloo")
    with ctx:
        pass
    ctx.close()  # idempotent
    assert calls == ["barrier", "destroy"]


def test_close_after_a_failure_waits_for_no_peer(monkeypatch):
    calls = _recording_teardown(monkeypatch)
    with pytest.raises(RuntimeError), DistributedContext(rank=1, world_size=2, backend="gloo"):
        raise RuntimeError("this rank failed")
    assert calls == ["destroy"]  # a barrier could wait for a peer that never comes


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not; launch with torchrun"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer; let torchrun set it"),
        ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"},
         "RANK=2 WORLD_SIZE=2 is not a valid rank layout"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "MASTER_ADDR is not set"),
    ],
)
def test_bad_launcher_variables_raise_one_line(monkeypatch, env, message):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DistributedError, match=message) as info:
        init_distributed("cpu")
    assert "\n" not in str(info.value)


def test_world_size_check_message():
    ctx = DistributedContext(rank=0, world_size=3)
    ctx.check_world_size(3)
    with pytest.raises(DistributedError) as info:
        ctx.check_world_size(2)
    assert str(info.value) == ("checkpoint was written by 2 rank(s), this run has 3; resume with "
                               "--nproc 2")


def test_seeds_differ_per_rank_and_envs_tile_the_global_range():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(7, r) for r in range(64)}
    assert len(seeds) == 64 and all(0 <= s < 2**31 for s in seeds)
    assert rank_seed(8, 1) != rank_seed(7, 1)
    # rank r with n envs owns envs r*n .. (r+1)*n-1 of the single-process run (env i: seed + i)
    firsts = [DistributedContext(rank=r, world_size=4).env_seed(100, 8) for r in range(4)]
    assert firsts == [100, 108, 116, 124]


def test_buckets_respect_cap_dtype_and_order():
    ts = [torch.zeros(10), torch.zeros(10), torch.zeros(3, dtype=torch.float64), torch.zeros(30),
          torch.zeros(5), torch.zeros(2, dtype=torch.float64)]
    buckets = bucket_tensors(ts, cap_bytes=80)  # 20 float32 per bucket
    assert buckets == [[0, 1], [3], [4], [2, 5]]
    flat = sorted(i for b in buckets for i in b)
    assert flat == list(range(len(ts)))


def test_checksum_sees_single_bits_and_swaps():
    t = torch.randn(100)
    base = tensor_checksum(t)
    flipped = t.clone()
    flipped[37] = torch.nextafter(flipped[37], torch.tensor(float("inf")))
    swapped = t.clone()
    swapped[[3, 4]] = swapped[[4, 3]]
    assert torch.equal(tensor_checksum(t.clone()), base)
    assert not torch.equal(tensor_checksum(flipped), base)
    assert not torch.equal(tensor_checksum(swapped), base)
    assert tensor_checksum(torch.zeros(3, dtype=torch.float16)).dtype == torch.int64


# ---------------------------------------------------------------------- failures under torchrun

FAILING_SCRIPT = """
import sys, time
import torch.distributed as dist
from rlkit.distributed import init_distributed

ctx = init_distributed("cpu", timeout_s={timeout})
if ctx.rank == 1:
    {rank1}
dist.barrier()  # rank 0 waits here for a rank that will never come
ctx.close()
"""


def _torchrun(tmp_path: Path, rank1: str, timeout: float) -> tuple[int, str, float]:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(FAILING_SCRIPT).format(rank1=rank1, timeout=timeout))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--monitor-interval", "0.5", str(script)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def test_a_dead_rank_ends_the_job_naming_the_rank(tmp_path):
    rc, output, elapsed = _torchrun(tmp_path, 'raise RuntimeError("rank one fails on purpose")',
                                    timeout=600)
    assert rc != 0
    assert "rank one fails on purpose" in output
    assert "rank      : 1 (local_rank: 1)" in output  # torchrun's root-cause summary
    assert elapsed < 60  # far below the 600 s process-group timeout: not a hang


def test_a_hung_rank_times_out_instead_of_waiting_forever(tmp_path):
    rc, output, elapsed = _torchrun(tmp_path, "time.sleep(300)", timeout=3)
    assert rc != 0
    assert "rank      : 0 (local_rank: 0)" in output  # the waiting rank gave up
    assert elapsed < 60


def test_update_step_syncs_gradients_after_backward_before_clipping():
    """grad_sync sees the raw gradients and clipping sees what grad_sync left (here: x10)."""
    model = _model(0)
    seen = []

    def times_ten(params):
        seen.append([p.grad.clone() for p in params])
        for p in params:
            p.grad.mul_(10)

    step = UpdateStep(model, torch.optim.SGD(model.parameters(), lr=0.0), grad_sync=times_ten)
    x = torch.randn(4, 3)
    loss = model(x).pow(2).mean()
    raw = torch.autograd.grad(loss, list(model.parameters()))
    stats = step.update(model(x).pow(2).mean())
    assert all(torch.equal(s, r) for s, r in zip(seen[0], raw, strict=True))
    expected = 10 * torch.sqrt(sum((g**2).sum() for g in raw))
    torch.testing.assert_close(stats.grad_norm, expected)


def test_to_cpu_walks_containers():
    from typing import NamedTuple

    class Pair(NamedTuple):
        a: torch.Tensor
        b: int

    nested = {"x": [torch.ones(2), (Pair(torch.zeros(1), 3), "s")], "n": None}
    out = to_cpu(nested)
    assert isinstance(out["x"][1][0], Pair) and out["x"][1][0].b == 3 and out["n"] is None
    assert torch.equal(out["x"][0], torch.ones(2)) and out["x"][1][1] == "s"
