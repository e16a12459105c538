"""Data-parallel training on ``torch.distributed``: one process ("rank") per learner replica.

Launch with PyTorch's own launcher (``torchrun`` / ``python -m torch.distributed.run``), which
starts the ranks, sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` for each, and tears the whole job down when one rank exits with an error.
:func:`init_distributed` reads those variables; without them (or with ``WORLD_SIZE=1``) it returns
a single-process context whose collectives are no-ops, so training code has one path.

What the ranks share, and how:

- **Gradients** are averaged every update by :meth:`DistributedContext.average_gradients`: the
  gradients are flattened into a few large buffers (one ``all_reduce`` per buffer instead of one
  per tensor), summed across ranks, divided by the world size and copied back. Plug it into
  ``rlkit.update.UpdateStep(..., grad_sync=ctx.average_gradients)``: it runs after ``backward``
  and before clipping, so every rank clips the same averaged gradient and takes the same step.
  With batch-mean losses (``rlkit.grads.batch_mean``), N ranks with B examples each produce the
  gradient of one batch of N x B examples. We use this explicit all-reduce rather than
  ``DistributedDataParallel``: it leaves the module unwrapped (checkpoint keys, evaluation and
  acting are unchanged), it is indifferent to how many forward passes built the loss (PAAC keeps
  the graph of ``t_max`` acting passes), and on CPU/gloo it measured as fast as DDP
  (``scripts/bench_distributed.py --compare-ddp``; numbers in ``docs/distributed.md``).
- **Parameters** start equal through :meth:`~DistributedContext.broadcast_module` (rank 0's
  copy wins) and stay bit-identical because every rank applies the same update;
  :meth:`~DistributedContext.assert_in_sync` checks that with one all-gather of checksums.
- **Randomness** differs per rank where it must (exploration, envs):
  :meth:`~DistributedContext.rank_seed` and :meth:`~DistributedContext.env_seed`.

Failures: a rank that raises exits non-zero and ``torchrun`` stops the others and reports the
failed rank; a rank that hangs makes the others fail after ``timeout`` seconds (the process-group
timeout) instead of waiting forever.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from rlkit.device import resolve_device

DEFAULT_TIMEOUT_S = 1800.0
"""Process-group timeout: how long a collective waits for a silent (hung) rank before failing.
Long enough for rank 0 to run a periodic evaluation while the others wait at the next update."""

BUCKET_BYTES = 25 * 1024**2
"""Gradient bucket size for :meth:`DistributedContext.average_gradients` (DDP's default too):
large enough that per-call latency is amortised, small enough to bound the extra memory."""

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A distributed set-up problem (bad launcher variables, ranks out of sync, world size)."""


def _env_int(name: str, environ: dict[str, str]) -> int:
    raw = environ.get(name)
    if raw is None:
        raise DistributedError(
            f"WORLD_SIZE is set but {name} is not; launch with torchrun (or rlkit train "
            "--nproc N), which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT"
        )
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"{name}={raw!r} is not an integer; let torchrun set it") from None


def rank_seed(base_seed: int, rank: int) -> int:
    """A seed for rank ``rank``'s own generators: ``base_seed`` itself on rank 0 (so a one-rank
    run is the same as a plain run), and for other ranks a 31-bit hash of ``(base_seed, rank)``
    from numpy's ``SeedSequence``, so the streams neither coincide nor overlap as ``base + k``
    offsets would (``base + 1`` is often another seed of the same run, e.g. the evaluation's)."""
    if rank == 0:
        return int(base_seed)
    return int(np.random.SeedSequence([int(base_seed), int(rank)]).generate_state(1)[0] >> 1)


def bucket_tensors(tensors: Sequence[torch.Tensor], cap_bytes: int = BUCKET_BYTES
                   ) -> list[list[int]]:
    """Group tensor indices into buckets of one device and dtype, each at most ``cap_bytes``
    (a single larger tensor gets a bucket of its own); order is preserved inside a bucket."""
    buckets: list[list[int]] = []
    open_bucket: dict[tuple[torch.device, torch.dtype], tuple[list[int], int]] = {}
    for i, t in enumerate(tensors):
        key = (t.device, t.dtype)
        size = t.numel() * t.element_size()
        members, used = open_bucket.get(key, ([], 0))
        if members and used + size > cap_bytes:
            buckets.append(members)
            members, used = [], 0
        members.append(i)
        open_bucket[key] = (members, used + size)
    buckets.extend(members for members, _ in open_bucket.values() if members)
    return buckets


_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def tensor_checksum(t: torch.Tensor) -> torch.Tensor:
    """Two int64 sums over a tensor's bit patterns (plain, and position-weighted so a swap of
    two values shows): equal tensors give equal checksums, and any changed bit changes them
    unless two changes cancel exactly. Computed where ``t`` lives; int64 overflow just wraps."""
    flat = t.detach().contiguous().reshape(-1)
    bits = flat.view(_BITS[flat.element_size()]).to(torch.int64)
    weights = torch.arange(bits.numel(), device=bits.device, dtype=torch.int64) % 65_521 + 1
    return torch.stack([bits.sum(), (bits * weights).sum()])


@dataclass
class DistributedContext:
    """Which rank this process is and the collectives training needs.

    ``backend is None`` means a single process: every collective is a no-op, ``rank == 0``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """Rank 0: the one rank that writes logs, TensorBoard and checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None

    # ------------------------------------------------------------------ life cycle

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def close(self, *, clean: bool = True) -> None:
        """Tear the process group down (idempotent; a no-op for a single process).

        ``clean`` (every rank finished normally): all ranks first meet at a barrier, so none
        destroys its connections while a peer may still be inside a collective or tearing down
        its own, and the group goes away on every rank at the same point. After a failure on
        this rank (``clean=False``) the peers may never arrive, so no collective is attempted:
        the group is destroyed locally and the launcher stops the rest of the job.
        """
        if not (self.is_distributed and dist.is_initialized()):
            return
        if clean:
            dist.barrier()
        dist.destroy_process_group()

    def __enter__(self) -> DistributedContext:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: Any) -> None:
        """``with init_distributed(...) as ctx:`` closes cleanly unless the block raised."""
        self.close(clean=exc_type is None)

    # ------------------------------------------------------------------ seeds and counters

    def rank_seed(self, base_seed: int) -> int:
        """This rank's seed for its own generators (exploration noise, replay sampling)."""
        return rank_seed(base_seed, self.rank)

    def env_seed(self, base_seed: int, envs_per_rank: int) -> int:
        """Seed of this rank's first env when env ``i`` of a vector env gets ``seed + i``:
        rank ``r`` then owns envs ``r*n .. (r+1)*n - 1`` of one ``N*n``-env run, so N ranks with
        ``n`` envs each play exactly the games a single process with ``N*n`` envs would."""
        return int(base_seed) + self.rank * int(envs_per_rank)

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Sum a few host numbers over ranks (e.g. episode counts for a global log line)."""
        if not self.is_distributed:
            return [float(v) for v in values]
        buf = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(buf)
        return buf.tolist()

    def any_true(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (so that every rank takes the same branch, e.g.
        stopping on a signal only one rank saw, or starting updates once all buffers can sample).
        """
        if not self.is_distributed:
            return bool(flag)
        return self.all_sum([1.0 if flag else 0.0])[0] > 0

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. the run directory name rank 0 chose)."""
        if not self.is_distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (in rank order), ``None`` elsewhere. Pickled, with
        tensors moved to the CPU first (a GPU tensor of rank r would otherwise be unpickled onto
        rank r's GPU inside rank 0's process); meant for per-rank state such as a checkpoint's."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(to_cpu(obj), out, dst=0)
        return out

    def scatter_objects(self, objs: Sequence[Any] | None) -> Any:
        """Rank 0 hands ``objs[r]`` to rank ``r`` (others pass ``None``); returns this rank's."""
        if not self.is_distributed:
            if objs is None or len(objs) != 1:
                raise DistributedError("scatter_objects on one process needs a list of one object")
            return objs[0]
        if self.is_main and (objs is None or len(objs) != self.world_size):
            raise DistributedError(
                f"scatter_objects needs one object per rank ({self.world_size}) on rank 0"
            )
        out: list[Any] = [None]
        send = list(objs) if self.is_main and objs is not None else None  # rank 0's: checked
        dist.scatter_object_list(out, send, src=0)
        return out[0]

    def check_world_size(self, saved_world_size: int) -> None:
        """Resume only with the world size a checkpoint was written by (its envs, seeds and
        per-rank states are laid out for that many ranks)."""
        if int(saved_world_size) != self.world_size:
            raise DistributedError(
                f"checkpoint was written by {saved_world_size} rank(s), this run has "
                f"{self.world_size}; resume with --nproc {saved_world_size}"
            )

    # ------------------------------------------------------------------ parameters

    def average_gradients(self, params: Iterable[torch.Tensor]) -> None:
        """Replace every gradient by its mean over ranks (bucketed all-reduce).

        A parameter without a gradient on this rank contributes zeros (its ``.grad`` is set to
        zeros), so every rank reduces the same buffer layout and no collective can mismatch.
        """
        if not self.is_distributed:
            return
        grads: list[torch.Tensor] = []
        for p in params:
            if p.requires_grad:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        for bucket in bucket_tensors(grads):
            members = [grads[i] for i in bucket]
            flat = torch.cat([g.reshape(-1) for g in members])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(self.world_size)
            offset = 0
            for g in members:
                n = g.numel()
                g.copy_(flat[offset:offset + n].view_as(g))
                offset += n

    @staticmethod
    def _state_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
        return list(module.named_parameters()) + list(module.named_buffers())

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module`` (start of training
        and after loading a checkpoint, so that all ranks begin from the same weights)."""
        if not self.is_distributed:
            return
        with torch.no_grad():
            for _, t in self._state_tensors(module):
                dist.broadcast(t.data, src=0)

    def assert_in_sync(self, module: nn.Module) -> None:
        """Raise ``DistributedError`` on every rank if any parameter or buffer differs in any bit
        between ranks (one all-gather of per-tensor checksums; costs a host sync, so call it at
        start-up and at checkpoints, not every update)."""
        if not self.is_distributed:
            return
        named = self._state_tensors(module)
        if not named:
            return
        local = torch.stack([tensor_checksum(t).to(self.device) for _, t in named])
        gathered = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(gathered, local)
        table = torch.stack(gathered).cpu()  # (world, tensors, 2)
        differs = (table != table[0]).any(dim=2)  # (world, tensors)
        if differs.any():
            ranks, tensors = differs.nonzero(as_tuple=True)
            raise DistributedError(
                f"parameters out of sync: '{named[int(tensors[0])][0]}' differs between rank 0 "
                f"and rank {int(ranks[0])} ({int(differs.any(0).sum())} tensor(s) differ); every "
                "rank must apply the same averaged update (UpdateStep grad_sync)"
            )


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor inside dicts, lists and tuples moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple
        return type(obj)(*(to_cpu(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


SHUTDOWN_TIMEOUT_S = 600
"""Seconds the launcher gives the ranks to write their checkpoint after Ctrl-C or SIGTERM."""

_QUIET_LAUNCHER = """
import logging, sys
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.run import main
for name in ("torch.distributed.elastic.agent.server.api",
             "torch.distributed.elastic.multiprocessing.api"):
    logging.getLogger(name).setLevel(logging.ERROR)
try:
    main(sys.argv[1:])
except SignalException as exc:
    sys.exit(128 + int(exc.sigval))
"""
"""``torch.distributed.run`` minus its reaction to a stop signal: the launcher forwards Ctrl-C or
SIGTERM to the ranks (they write their checkpoint), waits for them, then exits 128 + signal
quietly instead of with a ``SignalException`` traceback and shutdown warnings."""


def launch(nproc: int, module: str, args: Sequence[str]) -> int:
    """Run :func:`launch_command` and return its exit code (130 after Ctrl-C, 143 after SIGTERM).

    The ranks run in sessions of their own (torchrun starts them so), out of reach of the
    terminal's Ctrl-C: the launcher, which shares this process's group, receives it and forwards
    it to every rank. This process keeps waiting for the launcher, and passes a SIGTERM it
    receives on to it.
    """
    command = launch_command(nproc, module, args)
    env = dict(os.environ)
    # torchrun kills ranks 30 s after forwarding a stop signal by default: too short for a rank
    # writing a checkpoint with its replay buffer (up to 2 GB). The user's own setting wins.
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_TIMEOUT_S))
    # A rank killed by a signal (e.g. SIGABRT from native code) then prints every thread's Python
    # stack, so the launcher's "exitcode -6" comes with where each rank was.
    env.setdefault("PYTHONFAULTHANDLER", "1")
    proc = subprocess.Popen([command[0], "-c", _QUIET_LAUNCHER, *command[3:]], env=env)
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)


def launch_command(nproc: int, module: str, args: Sequence[str]) -> list[str]:
    """The command that runs ``python -m module *args`` as ``nproc`` ranks on this machine under
    PyTorch's elastic launcher (``--standalone``: a local rendezvous on a free port). The launcher
    restarts nothing (``--max-restarts 0``): when one rank fails it stops the others and exits
    non-zero with a summary naming the failed rank."""
    if nproc < 1:
        raise DistributedError(f"--nproc must be >= 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(nproc), "--max-restarts", "0", "-m", module, *args]


def under_launcher() -> bool:
    """Whether this process is one rank of a multi-process job (``WORLD_SIZE`` > 1)."""
    raw = os.environ.get("WORLD_SIZE", "1").strip()
    return raw not in ("", "1")


def init_distributed(device: str | torch.device = "auto", *,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> DistributedContext:
    """The context torchrun's variables describe (a single-process context without them).

    CUDA devices use NCCL with one GPU per rank (``cuda:LOCAL_RANK``); CPU uses gloo. ``device``
    is the user's request (``auto``/``cpu``/``cuda``); the rank's actual device is ``ctx.device``.
    The process group rendezvous is ``env://``: under torchrun it joins the launcher's store.
    """
    env = dict(os.environ)
    world_raw = env.get("WORLD_SIZE")
    requested = resolve_device(device)
    if world_raw is None or world_raw.strip() == "1":
        return DistributedContext(device=requested, timeout_s=timeout_s)
    world_size = _env_int("WORLD_SIZE", env)
    rank, local_rank = _env_int("RANK", env), _env_int("LOCAL_RANK", env)
    if world_size < 1 or not 0 <= rank < world_size:
        raise DistributedError(
            f"RANK={rank} WORLD_SIZE={world_size} is not a valid rank layout; let torchrun set them"
        )
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise DistributedError(
                f"{name} is not set; launch with torchrun (or rlkit train --nproc N)"
            )
    if dist.is_initialized():
        raise DistributedError("torch.distributed is already initialised in this process; "
                               "call init_distributed once per process")
    if requested.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPU(s); "
                "use --nproc at most the number of GPUs per node"
            )
        rank_device = resolve_device(f"cuda:{local_rank}")
        torch.cuda.set_device(rank_device)
        backend = "nccl"
    else:
        rank_device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(
        backend, init_method="env://", rank=rank, world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank,
                              device=rank_device, backend=backend, timeout_s=timeout_s)
