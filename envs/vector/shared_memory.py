"""The ``async`` backend: worker processes that step several envs each into shared memory.

Design (PAAC-style, Clemente et al. 2017): worker processes each own a contiguous slice of the
envs. Actions, observations, rewards and done flags live in one ``multiprocessing.shared_memory``
block; the pipes carry only tiny commands and the per-env info dicts, never observations. A
step writes the actions, sends ``"step"`` to every worker and waits for every reply, so the
workers step their slices in parallel.

By default the calling process steps an equal share of the envs itself, into the same block,
while one worker per remaining core steps the rest: it would otherwise sit idle for the whole
step. Each process then has a core to itself, so instead of sleeping on its pipe it polls it
for a few milliseconds: waking a sleeping process costs tens to hundreds of microseconds on a
VM, twice per step. Measured on 2 cores (Pong, 16 envs): about 20% more steps per second than
two workers and an idle caller. With more processes than cores nobody polls.

Autoreset follows gymnasium 1.x NEXT_STEP: the step after an env terminated or truncated
returns its reset observation, reward 0, ``terminated=truncated=False`` and the reset info,
and ignores that env's action.

Failures never hang: while waiting, the main process also watches each worker's process
sentinel, so a worker that dies (even by SIGKILL) raises ``WorkerError`` naming its env
indices at once; an exception inside an env is re-raised naming the exact env index.
``close()`` stops every worker and unlinks the shared-memory block.
"""

from __future__ import annotations

import ast
import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, cast

import cv2
import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs.guard import GuardedVectorEnv, array_shape
from envs.vector.group import EnvGroup, seeds_for, stack_infos

if TYPE_CHECKING:
    from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext


class WorkerError(RuntimeError):
    """A worker process of the async backend died or one of its envs raised."""


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":``, with the operands in either order."""
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)):
        return False
    test = node.test
    if len(test.comparators) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    left, right = test.left, test.comparators[0]
    return _name_is_main(left, right) or _name_is_main(right, left)


def _name_is_main(name: ast.expr, value: ast.expr) -> bool:
    return (
        isinstance(name, ast.Name)
        and name.id == "__name__"
        and isinstance(value, ast.Constant)
        and value.value == "__main__"
    )


def _guarded_lines(path: str) -> list[tuple[int, int]]:
    """Line ranges of the top-level ``if __name__ == "__main__":`` blocks of the script at
    ``path`` (none if it cannot be read or parsed)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    return [(n.lineno, n.end_lineno or n.lineno) for n in tree.body if _is_main_guard(n)]


def unguarded_main_line() -> tuple[str, int] | None:
    """``(script, line)`` when this call comes from the top level of the ``__main__`` script
    outside an ``if __name__ == "__main__":`` block, else None.

    Why: the ``spawn`` and ``forkserver`` start methods run the main script's top level again in
    the new processes (as ``__mp_main__``), so an unguarded ``make_vector_env`` there would
    build the vector env again inside its own workers and fail with a page of tracebacks.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None:  # REPL, ``python -c``, notebooks: nothing is re-run
        return None
    top = None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is vars(main):
            top = frame
        frame = frame.f_back
    if top is None:
        return None
    line = top.f_lineno
    if any(lo <= line <= hi for lo, hi in _guarded_lines(path)):
        return None
    return path, line


def choose_start_method(requested: str | None) -> str:
    """The start method for the workers: ``requested``, or by default ``"fork"`` when called
    from an unguarded script top level (see ``unguarded_main_line``) and ``"forkserver"``
    otherwise (safe in processes that already run threads, such as torch's)."""
    where = unguarded_main_line()
    if where is None:
        return "forkserver" if requested is None else requested
    can_fork = "fork" in mp.get_all_start_methods()
    if requested == "fork" or (requested is None and can_fork):
        return "fork"
    script, line = where
    raise ValueError(
        f"context={requested or 'forkserver'!r} runs the top level of {script} again in every "
        f"worker, which would build this vector env again (line {line}); put that code under "
        '`if __name__ == "__main__":`'
        + (", or leave context unset (fork is chosen then)" if can_fork else "")
    )


@dataclass(frozen=True)
class _Field:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int


@dataclass(frozen=True)
class _Layout:
    """Where each batched array lives inside the shared block (64-byte aligned)."""

    shm_name: str
    fields: tuple[_Field, ...]

    def views(self, buf: memoryview) -> dict[str, np.ndarray]:
        return {
            f.name: np.ndarray(f.shape, dtype=np.dtype(f.dtype), buffer=buf, offset=f.offset)
            for f in self.fields
        }


def _plan(num_envs: int, obs_space: gym.Space, act_space: gym.Space) -> tuple[list, int]:
    specs = [
        ("obs", obs_space.dtype, array_shape(obs_space, "observation")),
        ("actions", act_space.dtype, array_shape(act_space, "action")),
        ("rewards", np.float64, ()),
        ("terminated", np.bool_, ()),
        ("truncated", np.bool_, ()),
    ]
    fields, offset = [], 0
    for name, dtype, shape in specs:
        full = (num_envs, *shape)
        fields.append((name, np.dtype(dtype).str, full, offset))
        offset += -(-int(np.prod(full)) * np.dtype(dtype).itemsize // 64) * 64
    return fields, max(offset, 64)


def _attach(name: str) -> SharedMemory:
    """Open the main process's block without registering it with a resource tracker: the main
    process alone owns and unlinks it. Before Python 3.13 attaching always registers, and a
    worker started by ``fork`` starts a tracker of its own, which would unlink the block (or
    warn of a leak) when the worker exits (CPython gh-82300)."""
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None  # no other thread here uses it
    try:
        return SharedMemory(name=name)
    finally:
        resource_tracker.register = register


# How long an idle process polls its pipe before it sleeps on it. A worker polls for the
# caller's next command, which in training follows a learner update of tens of milliseconds, so
# it gives up sooner than the caller, who polls only for workers that are mid-step.
_WORKER_POLL_S = 0.002
_CALLER_POLL_S = 0.02


def _poll(conn: Connection, seconds: float) -> None:
    """Poll ``conn`` for up to ``seconds`` so that a message arriving meanwhile is read without
    the cost of waking a sleeping process. Only for a process with a core to itself."""
    if seconds > 0.0:
        deadline = time.perf_counter() + seconds
        while not conn.poll() and time.perf_counter() < deadline:
            pass


def _group_over(envs: Sequence[gym.Env], start: int, views: dict[str, np.ndarray]) -> EnvGroup:
    """An ``EnvGroup`` stepping ``envs`` (global indices from ``start``) into their rows."""
    rows = slice(start, start + len(envs))
    return EnvGroup(
        envs,
        start,
        views["obs"][rows],
        views["rewards"][rows],
        views["terminated"][rows],
        views["truncated"][rows],
    )


def _worker(
    conn: Connection, env_fns: Sequence[Callable[[], gym.Env]], start: int, poll_s: float
) -> None:
    """Worker loop: build the envs, report spaces, then serve reset/step/close commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    cv2.setNumThreads(1)  # one core per worker; OpenCV threads would only oversubscribe
    current = start
    group: EnvGroup | None = None
    shm: SharedMemory | None = None
    try:
        envs = []
        for j, fn in enumerate(env_fns):
            current = start + j
            envs.append(fn())
        conn.send(("spaces", (envs[0].observation_space, envs[0].action_space)))
        actions: np.ndarray | None = None
        while True:
            _poll(conn, poll_s)
            command, payload = conn.recv()
            if command == "step":
                assert group is not None and actions is not None
                conn.send(("ok", group.step(actions.copy())))
            elif command == "reset":
                assert group is not None
                conn.send(("ok", group.reset(*payload)))
            elif command == "attach":
                shm = _attach(payload.shm_name)
                views = payload.views(shm.buf)
                group = _group_over(envs, start, views)
                actions = views["actions"][start : start + len(envs)]
                del views
                conn.send(("ok", None))
            elif command == "close":
                for env in envs:
                    env.close()
                conn.send(("ok", None))
                return
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return  # the main process went away; nothing to report to
    except Exception:
        index = group.current if group is not None else current
        conn.send(("error", (index, traceback.format_exc())))
    finally:
        group = actions = None  # drop shm views before closing
        if shm is not None:
            shm.close()


class SharedMemoryVectorEnv(GuardedVectorEnv):
    """Vector env whose envs run in worker processes writing into shared memory.

    ``num_workers=None`` (the default) runs one worker per CPU core but one and steps the first
    ``main_envs`` envs (default: an equal share) in the calling process; an explicit
    ``num_workers`` leaves every env to the workers unless ``main_envs`` is given. A worker that
    dies is reported at once; ``timeout_s`` also reports one that stops answering (an env stuck
    in a loop), which is otherwise waited for.

    ``context`` is the multiprocessing start method; by default ``"forkserver"`` (safe in
    processes that already run threads, such as torch's; ``env_fns`` must then be picklable,
    e.g. ``functools.partial(make_env, "Pong", seed=3)``), or ``"fork"`` when this is built at
    the unguarded top level of a script, which other start methods would run again in every
    worker (see ``choose_start_method``); ``start_method`` says which one was used.
    """

    backend = "async"

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        *,
        num_workers: int | None = None,
        main_envs: int | None = None,
        context: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.closed = True  # nothing to close until the checks below pass
        self.num_envs = len(env_fns)
        cores = os.cpu_count() or 1
        workers = min(self.num_envs, max(1, cores - 1)) if num_workers is None else num_workers
        if main_envs is None:
            main_envs = self.num_envs // (workers + 1) if num_workers is None else 0
        if not 0 <= main_envs < self.num_envs:
            raise ValueError(
                f"main_envs={main_envs} is out of range; it must be in [0, num_envs - 1="
                f"{self.num_envs - 1}] (the workers need at least one env)"
            )
        if not isinstance(workers, int) or not 1 <= workers <= self.num_envs - main_envs:
            raise ValueError(
                f"num_workers={num_workers} is out of range; it must be in [1, num_envs - "
                f"main_envs={self.num_envs - main_envs}]"
            )
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s={timeout_s!r} must be > 0 seconds, or None to wait")
        self.main_envs = main_envs
        self.timeout_s = timeout_s
        polls = workers + 1 <= cores  # every process has a core to itself
        self._poll_s = _CALLER_POLL_S if polls else 0.0
        self.start_method = choose_start_method(context)
        # get_context(str) is typed BaseContext, which has no Process; every start method's
        # context has one (an unknown method raises in get_context).
        ctx = cast(
            "ForkContext | SpawnContext | ForkServerContext", mp.get_context(self.start_method)
        )
        chunks = np.array_split(np.arange(main_envs, self.num_envs), workers)
        self._ranges = [(int(c[0]), int(c[-1]) + 1) for c in chunks]
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._shm: SharedMemory | None = None
        self._views: dict[str, np.ndarray] = {}
        self._group: EnvGroup | None = None
        self._broken: str | None = None
        self.closed = False
        try:
            worker_poll_s = _WORKER_POLL_S if polls else 0.0
            for lo, hi in self._ranges:
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker,
                    args=(child, list(env_fns[lo:hi]), lo, worker_poll_s),
                    daemon=True,
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            local = [fn() for fn in env_fns[:main_envs]]  # built while the workers build theirs
            spaces = [self._receive(w, "spaces") for w in range(workers)]
            self.single_observation_space, self.single_action_space = spaces[0]
            self._allocate(local)
        except BaseException:
            self.close()
            raise
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def _allocate(self, local: list[gym.Env]) -> None:
        fields, size = _plan(self.num_envs, self.single_observation_space, self.single_action_space)
        self._shm = SharedMemory(create=True, size=size)
        layout = _Layout(self._shm.name, tuple(_Field(*f) for f in fields))
        # buf is typed Optional because close() sets it to None; this block was just created.
        self._views = layout.views(cast(memoryview, self._shm.buf))
        if local:
            self._group = _group_over(local, 0, self._views)
        self._broadcast("attach", layout)

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers (worker w owns envs ``env_ranges[w]``)."""
        return [p.pid for p in self._procs]

    @property
    def env_ranges(self) -> list[tuple[int, int]]:
        """Half-open env index range ``[lo, hi)`` of each worker."""
        return list(self._ranges)

    @property
    def shm_name(self) -> str | None:
        """Name of the shared-memory block (None once closed)."""
        return None if self._shm is None else self._shm.name

    def _receive(self, w: int, expected: str = "ok") -> Any:
        """Wait for worker ``w``'s reply; raise WorkerError as soon as it dies, or when it has
        not answered within ``timeout_s``."""
        conn, proc = self._conns[w], self._procs[w]
        _poll(conn, self._poll_s)
        ready = wait([conn, proc.sentinel], timeout=self.timeout_s)
        if not ready:
            self._raise_lost(w, f"did not answer within {self.timeout_s:g} s (an env may hang)")
        kind: str = "dead"
        payload: Any = None
        if conn in ready:
            with contextlib.suppress(EOFError, ConnectionResetError):
                kind, payload = conn.recv()
        if kind == expected:
            return payload
        if kind == "error":
            index, trace = payload
            self._broken = f"env {index} raised"
            raise WorkerError(f"env {index} (async worker {w}) raised:\n{trace}")
        self._raise_dead(w)

    def _raise_dead(self, w: int) -> NoReturn:
        """Worker ``w`` is gone: reap it for its exit code and report it (``_raise_lost``)."""
        proc = self._procs[w]
        proc.join(timeout=1.0)
        self._raise_lost(w, f"died (exit code {proc.exitcode})")

    def _raise_lost(self, w: int, what: str) -> NoReturn:
        """Mark this vector env unusable and raise WorkerError naming worker ``w``'s envs."""
        proc, (lo, hi) = self._procs[w], self._ranges[w]
        self._broken = f"worker {w} {what}"
        raise WorkerError(
            f"async worker {w} (pid {proc.pid}) running envs {lo}..{hi - 1} {what}; env "
            f"indices {list(range(lo, hi))} are lost, close this vector env and make a new one"
        )

    def _send(self, w: int, message: tuple[str, Any]) -> None:
        """Send a command to worker ``w``. A worker killed since the last step closes its pipe,
        so the send itself fails: report that as the dead worker, not as a bare pipe error."""
        try:
            self._conns[w].send(message)
        except (BrokenPipeError, ConnectionResetError):
            self._raise_dead(w)

    def _broadcast(self, command: str, payload: Any = None) -> list[Any]:
        self._check_usable()
        for w in range(len(self._conns)):
            self._send(w, (command, payload))
        return [self._receive(w) for w in range(len(self._conns))]

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise WorkerError(f"this vector env is unusable ({self._broken}); make a new one")

    def _run(
        self, command: str, payloads: list[Any], local: Callable[..., list], *args: Any
    ) -> list[Any]:
        """Send ``command`` to every worker (with its payload), run ``local`` (an ``EnvGroup``
        method) on the calling process's envs meanwhile, then collect the workers' replies:
        returns all infos in env order."""
        self._check_usable()
        try:
            for w, payload in enumerate(payloads):
                self._send(w, (command, payload))
            try:
                infos = local(self._group, *args) if self._group is not None else []
            except Exception as error:
                self._broken = f"env {self._group.current} raised"  # type: ignore[union-attr]
                for w in range(len(self._conns)):  # keep the pipes in step before reporting
                    with contextlib.suppress(WorkerError):
                        self._receive(w)
                raise WorkerError(
                    f"env {self._group.current} (calling process) raised: {error!r}"  # type: ignore[union-attr]
                ) from error
            for w in range(len(self._conns)):
                infos.extend(self._receive(w))
        except KeyboardInterrupt:
            # Some envs stepped and some replies are unread: a later step would read a stale
            # reply as its own, so refuse instead.
            self._broken = f"interrupted during {command}"
            raise
        return infos

    def _reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        seeds = seeds_for(seed, self.num_envs)
        payloads = [(seeds[lo:hi], options) for lo, hi in self._ranges]
        infos = self._run("reset", payloads, EnvGroup.reset, seeds[: self.main_envs], options)
        return self._views["obs"].copy(), stack_infos(infos)

    def _step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        v = self._views
        v["actions"][:] = actions
        mine = v["actions"][: self.main_envs]
        infos = self._run("step", [None] * len(self._conns), EnvGroup.step, mine)
        return (
            v["obs"].copy(),
            v["rewards"].copy(),
            v["terminated"].copy(),
            v["truncated"].copy(),
            stack_infos(infos),
        )

    def close_extras(self, **kwargs: Any) -> None:
        """Stop every worker (politely, then by force) and unlink the shared-memory block."""
        for conn, proc in zip(self._conns, self._procs, strict=False):
            if proc.is_alive():
                with contextlib.suppress(BrokenPipeError, OSError):
                    conn.send(("close", None))
        for proc in self._procs:
            proc.join(timeout=2.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()
        if self._group is not None:
            self._group.close()
            self._group = None
        self._views = {}
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def close(self, **kwargs: Any) -> None:
        if not getattr(self, "closed", True):
            self.close_extras(**kwargs)
            self.closed = True

    def __del__(self) -> None:
        self.close()  # a forgotten close() must not leak processes or shared memory
