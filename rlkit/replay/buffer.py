"""Experience replay with frame-deduplicated storage and n-step returns (numpy only).

The buffer stores and gathers; which transitions a batch holds is its sampler's choice
(``rlkit.replay.samplers``: uniform by default, proportional for prioritised replay).

Why this layout. A DQN replay of 1M stacked Atari observations costs 28 GB when each transition
keeps its ``(4, 84, 84)`` stack and 56 GB when it also keeps ``next_obs``. Consecutive stacks of
one episode share all but one frame, so each env stream keeps a ring of single frames and every
transition stores only a pointer to the newest frame of its ``next_obs``; both stacks are rebuilt
at sample time with one fancy-indexing gather. The first transition of an episode also pushes the
whole stack its ``obs`` holds (whatever the env put there: copies of the first frame or zeros), so
stacks come back exactly as the env emitted them, and the last transition's ``next_obs`` is the
true final observation (truncated episodes bootstrap from it, not from the next episode).

With ``frame_stack == 1`` the whole observation is one "frame" and the same scheme stores each
observation once (plus one extra per episode start) instead of twice.

Streams. With ``num_envs`` envs each env owns a contiguous share of ``capacity`` transition slots
and of the frame ring, so streams never interleave. Transition ``j`` of env ``e`` (counted from 0
over the env's whole history) lives in slot ``offset[e] + j % capacity[e]``.

Frame ring size. Episode starts use ``frame_stack`` extra frames. For small observations (a stack
of at most 4 KiB) the ring holds ``(frame_stack + 1)`` frames per transition, so nothing is ever
evicted early. For image observations it holds ``capacity + max(frame_stack + 1, capacity // 72)``
frames per env (1.4% headroom, 7,175 bytes per transition at Atari shape); when episodes are so
short that the ring fills first, the oldest transitions are dropped early and ``len`` says so.

n-step (Sutton & Barto 2018, Sec. 7.1; Hessel et al. 2018, "Rainbow", Eq. 2). Returns are
computed at sample time from the stored one-step rewards, so no transition is ever lost at an
episode end: the last ``n - 1`` transitions of an episode get shorter windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlkit.replay.memory import warn_if_too_large
from rlkit.replay.samplers import Sampler, UniformSampler

TERMINATED = np.uint8(1)
TRUNCATED = np.uint8(2)
STREAM_BREAK = np.uint8(4)  # the env's stream did not continue: end the episode, bootstrap

# Python-int flag bits and dtypes for the per-transition add path (numpy scalars are slow there).
_TERMINATED, _TRUNCATED = int(TERMINATED), int(TRUNCATED)
_FLOAT32, _BOOL = np.dtype(np.float32), np.dtype(np.bool_)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Python scalar types that ``add`` stores without ``np.asarray``, by storage dtype kind: numpy
# casts them on assignment exactly as ``np.asarray`` does, and that cast cannot lose a value
# (a float is checked to be finite first, see ``_per_env``).
_STORED_AS_IS = {bool: "biuf", float: "f"}

# What to do instead, per ``add`` argument, when its values cannot be stored losslessly.
_FIXES = {
    "obs": "add observations as the env returns them (uint8 frames, not scaled to [0, 1]), or "
    "build the buffer with obs_dtype set to your observations' dtype",
    "action": "pass the integer actions the env was stepped with, or build the buffer with "
    "action_dtype set to your actions' dtype",
    "reward": "a NaN or inf reward would poison every return it enters; check the env or the "
    "reward shaping that produced it",
    "terminated": "pass the env's flags (True/False or 0/1)",
}
_FIXES["next_obs"] = _FIXES["obs"]
_FIXES["truncated"] = _FIXES["terminated"]

_SMALL_STACK_BYTES = 4096
_HEADROOM_DIVISOR = 72


@dataclass
class Batch:
    """A sampled minibatch; all fields are numpy arrays with batch size ``B`` first.

    ``obs``/``next_obs``: ``(B, *obs_shape)`` of ``obs_dtype``; ``actions``: ``(B,
    *action_shape)``; ``rewards``: n-step discounted return, ``discounts``: ``gamma**k`` (0 if
    the episode terminated inside the window), ``weights``: importance weights (1 for uniform
    replay), all float32 ``(B,)``; ``indices``: int64 slots to pass to ``update_priorities``.
    With ``n_step == 1``, ``obs`` and ``next_obs`` are overlapping views of one gather (they
    share ``frame_stack - 1`` frames): read them freely, copy before writing into them.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    discounts: np.ndarray
    weights: np.ndarray
    indices: np.ndarray


def frame_ring_capacity(env_capacity: int, frame_stack: int, frame_nbytes: int) -> int:
    """Frames kept per env for ``env_capacity`` transitions (see the module docstring)."""
    if frame_nbytes * frame_stack <= _SMALL_STACK_BYTES:
        return (frame_stack + 1) * env_capacity
    return env_capacity + max(frame_stack + 1, env_capacity // _HEADROOM_DIVISOR)


def _expected(dtype: np.dtype, finite: bool) -> str:
    """The values a storage dtype takes without loss, for error messages."""
    if dtype.kind == "b":
        return "bool (True/False or 0/1)"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return f"{dtype} integers{f' in [{info.min}, {info.max}]' if info.bits <= 16 else ''}"
    return f"{'finite ' if finite else ''}{dtype}"


def _refuse(
    name: str, dtype: np.dtype, finite: bool, given: np.ndarray, bad: Any, cast: bool
) -> ValueError:
    """The one-line error for a value of ``name`` (from ``given``) that ``dtype`` cannot hold
    (``cast``: converting it would change it)."""
    value = bad.item() if isinstance(bad, np.generic) else bad
    shown = f"{value:.6g}" if isinstance(value, float) else repr(value)
    why = " (only lossless conversions are stored)" if cast else ""
    return ValueError(
        f"{name} must be {_expected(dtype, finite)}, got {given.dtype} value {shown}{why}; "
        f"{_FIXES.get(name, 'pass values of that dtype')}"
    )


def _lossless(x: Any, dtype: np.dtype, name: str, finite: bool) -> np.ndarray:
    """``x`` as a C-contiguous array of ``dtype``; ValueError if the cast would change a value
    (a fraction or an out-of-range number into an integer, anything but 0/1 into bool, text),
    or, with ``finite``, if a value is NaN or infinite. Vectorised: one pass per argument, and
    none for an integer or bool argument that already has the storage dtype."""
    given = arr = np.asarray(x)
    if arr.dtype != dtype:
        if arr.dtype.kind not in "biuf":
            raise _refuse(name, dtype, finite, given, arr.flat[0] if arr.size else arr, True)
        with np.errstate(invalid="ignore", over="ignore"):
            arr = given.astype(dtype)
        if dtype.kind in "biu":
            changed = arr != given  # NaN compares unequal too
            if changed.any():
                raise _refuse(name, dtype, finite, given, given[changed].flat[0], True)
    if finite and dtype.kind == "f":
        wrong = ~np.isfinite(arr)
        if wrong.any():
            raise _refuse(name, dtype, finite, given, given[wrong].flat[0], False)
    return np.asarray(arr, order="C")


def _as_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class ReplayBuffer:
    """Replay of ``(obs, action, reward, next_obs, terminated, truncated)`` transitions.

    The buffer stores transitions and knows which can be sampled; its ``sampler`` chooses among
    them (uniformly unless another is given, see ``rlkit.replay.samplers``). Learners call
    ``sample`` and ``update_priorities`` alike for every sampler.

    Args:
        capacity: transitions kept, summed over all envs.
        obs_shape: shape of one observation, e.g. ``(4, 84, 84)``.
        obs_dtype: storage dtype of observations (uint8 for Atari frames).
        action_shape, action_dtype: shape and dtype of one action.
        frame_stack: with ``frame_stack > 1``, ``obs_shape[0]`` must equal it and each frame is
            stored once; with 1 each observation is stored once.
        n_step: rewards summed per sampled transition.
        gamma: discount used for n-step returns and ``Batch.discounts``.
        num_envs: envs added together; every ``add`` argument then has a leading env axis.
        seed: seed of the uniform sampler's own ``np.random.Generator`` (never the global
            state); a ``sampler`` passed in brings its own seed instead.
        sampler: how batches are drawn; default ``UniformSampler(seed)``.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: int | Sequence[int],
        *,
        obs_dtype: Any = np.uint8,
        action_shape: tuple[int, ...] = (),
        action_dtype: Any = np.int64,
        frame_stack: int = 1,
        n_step: int = 1,
        gamma: float = 0.99,
        num_envs: int = 1,
        seed: int | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        if sampler is not None and seed is not None:
            raise ValueError("pass seed to the sampler you give, not to the buffer")
        self.num_envs = _as_int(num_envs, "num_envs", 1)
        self.n_step = _as_int(n_step, "n_step", 1)
        self.frame_stack = _as_int(frame_stack, "frame_stack", 1)
        self.capacity = _as_int(capacity, "capacity", 1)
        if self.capacity < self.num_envs * self.n_step:
            raise ValueError(
                f"capacity={capacity} is too small: each of the {num_envs} envs needs room for "
                f"n_step={n_step} transitions; use capacity >= {self.num_envs * self.n_step}"
            )
        self.obs_shape = tuple(map(int, np.atleast_1d(obs_shape)))  # an int is a 1-d shape
        if not self.obs_shape or any(d < 1 for d in self.obs_shape):
            raise ValueError(f"obs_shape must be a tuple of positive ints, got {obs_shape}")
        if self.frame_stack > 1 and self.obs_shape[0] != self.frame_stack:
            raise ValueError(
                f"frame_stack={frame_stack} needs obs_shape[0] == {frame_stack} (channel-first "
                f"stacks, oldest frame first), got obs_shape={self.obs_shape}; "
                "use frame_stack=1 to store whole observations"
            )
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.gamma = float(gamma)
        self.obs_dtype = np.dtype(obs_dtype)
        self.action_shape = tuple(int(d) for d in action_shape)
        self.action_dtype = np.dtype(action_dtype)

        k = self.frame_stack
        self._frame_shape = self.obs_shape[1:] if k > 1 else self.obs_shape
        frame_nbytes = int(np.prod(self._frame_shape)) * self.obs_dtype.itemsize
        base, rest = divmod(self.capacity, self.num_envs)
        self.env_capacities = np.array(
            [base + (e < rest) for e in range(self.num_envs)], np.int64
        )
        """Transition slots of each env: env ``e`` owns ``env_capacities[e]`` of them."""
        self.env_offsets = np.concatenate(([0], np.cumsum(self.env_capacities)[:-1])).astype(
            np.int64
        )
        """First slot of each env: transition ``j`` of env ``e`` (counted over its whole
        history) lives in slot ``env_offsets[e] + j % env_capacities[e]``."""
        self.env_offsets.flags.writeable = self.env_capacities.flags.writeable = False
        self._frame_cap = np.array(
            [frame_ring_capacity(int(c), k, frame_nbytes) for c in self.env_capacities], np.int64
        )
        self._frame_off = np.concatenate(([0], np.cumsum(self._frame_cap)[:-1])).astype(np.int64)
        # Python-int copies for the per-transition add path (numpy scalars are slow there).
        self._cap_py = self.env_capacities.tolist()
        self._off_py = self.env_offsets.tolist()
        self._fcap_py = self._frame_cap.tolist()
        self._foff_py = self._frame_off.tolist()

        # np.zeros maps zero pages lazily: memory is committed only as the buffer fills, so
        # the size check further down still comes before any of it is used.
        self._frames = np.zeros((int(self._frame_cap.sum()), *self._frame_shape), self.obs_dtype)
        self._actions = np.zeros((self.capacity, *self.action_shape), self.action_dtype)
        self._rewards = np.zeros(self.capacity, np.float32)
        self._flags = np.zeros(self.capacity, np.uint8)
        # Absolute (never wrapped) index of the newest frame of each transition's next_obs.
        self._frame_idx = np.zeros(self.capacity, np.int64)

        self._count = [0] * self.num_envs  # transitions ever added, per env
        self._written = [0] * self.num_envs  # frames ever pushed, per env
        self._oldest = [0] * self.num_envs  # first transition still stored with all its frames
        self._last_end = [-1] * self.num_envs  # last transition that ended an episode
        self._done = [True] * self.num_envs  # the next add starts a new episode
        self._last_next: list[bytes | None] = [None] * self.num_envs
        self._gamma_pows = self.gamma ** np.arange(self.n_step + 1, dtype=np.float64)
        self.sampler: Sampler = UniformSampler(seed) if sampler is None else sampler
        self.sampler.attach(self)  # before the size check: the sampler sizes its arrays here
        warn_if_too_large(self.nbytes, type(self).__name__)

    # ------------------------------------------------------------------ sizes
    @property
    def nbytes(self) -> int:
        """Bytes of all storage arrays and the sampler's, allocated in full (pages are
        committed lazily)."""
        arrays = (self._frames, self._actions, self._rewards, self._flags, self._frame_idx)
        return sum(a.nbytes for a in arrays) + self.sampler.nbytes

    @property
    def frame_capacity(self) -> int:
        """Frames the rings hold over all envs (see ``frame_ring_capacity``)."""
        return int(self._frame_cap.sum())

    def __len__(self) -> int:
        """Transitions that can be sampled now (n-step window complete or episode ended)."""
        return sum(hi - lo for lo, hi in self.sampleable())

    def _env_range(self, e: int) -> tuple[int, int]:
        """Env ``e``'s sampleable transitions are ``lo <= j < hi`` (a contiguous range).

        ``j`` is sampleable when all its frames are still stored and its n-step window is
        complete (``j + n - 1`` added) or an episode end follows it (the window stops there).
        """
        lo, count = self._oldest[e], self._count[e]
        hi = min(count, max(count - self.n_step + 1, self._last_end[e] + 1))
        return lo, max(lo, hi)

    def sampleable(self) -> list[tuple[int, int]]:
        """Per env, the range ``[lo, hi)`` of transition numbers that can be sampled now."""
        if self.num_envs == 1:
            return [self._env_range(0)]
        return list(map(self._env_range, range(self.num_envs)))

    # ------------------------------------------------------------------ add
    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray | int | float,
        reward: np.ndarray | float,
        next_obs: np.ndarray,
        terminated: np.ndarray | bool,
        truncated: np.ndarray | bool,
    ) -> None:
        """Store one transition per env (a leading ``num_envs`` axis when ``num_envs > 1``).

        Per env, a transition right after an episode end whose ``obs`` equals that episode's
        final ``next_obs`` is gymnasium's NEXT_STEP autoreset step and is not stored. An ``obs``
        that does not continue the previous ``next_obs`` without an episode end in between ends
        the previous episode there (it bootstraps, like a truncation) and starts a new one.

        Arguments are converted to the storage dtypes only when no value changes (uint8 frames
        as floats are fine if integral and in [0, 255], flags may be 0/1) and rewards must be
        finite: anything else raises a one-line ValueError naming the argument, and a refused
        call stores nothing.
        """
        obs_e = self._per_env(obs, self.obs_shape, self.obs_dtype, "obs")
        next_obs_e = self._per_env(next_obs, self.obs_shape, self.obs_dtype, "next_obs")
        action_e = self._per_env(action, self.action_shape, self.action_dtype, "action")
        reward_e = self._per_env(reward, (), _FLOAT32, "reward", finite=True)
        terminated_e = self._per_env(terminated, (), _BOOL, "terminated")
        truncated_e = self._per_env(truncated, (), _BOOL, "truncated")
        # Check every env before storing anything, so a bad call leaves the buffer unchanged.
        checked: Sequence[tuple[bytes, bool] | None]
        if self.num_envs == 1:  # no per-env list: ~1 us of a ~10 us single-env add
            checked = (self._check(0, obs_e[0], next_obs_e[0]),)
        else:
            checked = list(map(self._check, range(self.num_envs), obs_e, next_obs_e))
        for e, step in enumerate(checked):
            if step is not None:  # None: NEXT_STEP autoreset, obs is the last episode's final obs
                self._add_one(
                    e,
                    obs_e[e],
                    action_e[e],
                    reward_e[e],
                    next_obs_e[e],
                    *step,
                    bool(terminated_e[e]),
                    bool(truncated_e[e]),
                )
        self.sampler.added()

    def _per_env(
        self, x: Any, shape: tuple[int, ...], dtype: np.dtype, name: str, finite: bool = False
    ) -> np.ndarray | tuple[np.ndarray]:
        """``x`` as a C-contiguous array of ``dtype`` indexable by env (``x[e]``), converted
        only losslessly (``_lossless``); ``finite`` also refuses NaN and infinity.

        With one env, a value without the leading axis comes back in a 1-tuple: cheaper to
        build and to index than a new ``arr[None]`` view, and ``add`` runs once per env step.
        A Python bool or float that ``_STORED_AS_IS`` allows stays as it is (no 0-d array).
        """
        if (
            self.num_envs == 1
            and not shape
            and dtype.kind in _STORED_AS_IS.get(type(x), "")
            and (not finite or abs(x) <= _FLOAT32_MAX)  # NaN fails too; finite: float32 reward
        ):
            return (x,)
        arr = _lossless(x, dtype, name, finite)
        if self.num_envs == 1 and arr.shape == shape:
            return (arr,)
        if arr.shape == (self.num_envs, *shape):
            return arr
        raise ValueError(
            f"{name} has shape {arr.shape}, expected {(self.num_envs, *shape)} "
            f"(num_envs={self.num_envs} leading axis{'' if self.num_envs > 1 else ' optional'})"
        )

    def _check(self, e: int, obs: np.ndarray, next_obs: np.ndarray) -> tuple[bytes, bool] | None:
        """Validate env ``e``'s step without storing anything.

        Returns ``None`` for a NEXT_STEP autoreset step (not stored), else ``next_obs``'s bytes
        (kept to compare with the next ``obs``) and whether ``obs`` continues the previous
        ``next_obs``. ``bytes.startswith`` reads an array through the buffer protocol, so each
        comparison is one memcmp without copying the array (equal lengths: it is equality).
        """
        last = self._last_next[e]
        # numpy's stubs declare ndarray's buffer protocol (``__buffer__``) for Python >= 3.12
        # only, but every supported Python reads an ndarray as a buffer.
        continues = last is not None and last.startswith(obs)  # type: ignore[arg-type]
        if continues and self._done[e]:
            return None
        next_bytes = next_obs.tobytes()
        if self.frame_stack > 1 and not next_bytes.startswith(obs[1:]):  # type: ignore[arg-type]
            raise ValueError(
                f"next_obs[:-1] must equal obs[1:] for frame_stack={self.frame_stack} "
                "(stacks of consecutive frames, oldest first); use frame_stack=1 for other "
                f"observations (env {e})"
            )
        return next_bytes, continues

    def _add_one(
        self,
        e: int,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        next_bytes: bytes,
        continues: bool,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store env ``e``'s transition, already checked by ``_check``."""
        count = self._count[e]
        start = self._done[e]
        if not start and not continues:
            previous = self._off_py[e] + (count - 1) % self._cap_py[e]
            self._flags[previous] |= STREAM_BREAK
            self._last_end[e] = count - 1
            start = True
        stack: np.ndarray | tuple[np.ndarray]
        if self.frame_stack > 1:
            stack, newest = obs, next_obs[-1]
        else:  # the whole observation is one frame
            stack, newest = (obs,), next_obs
        # An episode's first transition keeps its whole obs stack, whatever the env put in it;
        # every transition pushes the newest frame of its next_obs.
        ring, ring_off, ring_cap = self._frames, self._foff_py[e], self._fcap_py[e]
        written = self._written[e]
        for frame in (*stack, newest) if start else (newest,):
            ring[ring_off + written % ring_cap] = frame
            written += 1
        self._written[e] = written

        slot = self._off_py[e] + count % self._cap_py[e]
        self._frame_idx[slot] = written - 1
        self._actions[slot] = action
        self._rewards[slot] = reward
        self._flags[slot] = (_TERMINATED if terminated else 0) | (_TRUNCATED if truncated else 0)
        count += 1
        self._count[e] = count
        done = terminated or truncated
        if done:
            self._last_end[e] = count - 1
        self._done[e] = done
        self._last_next[e] = next_bytes
        self._evict(e, count, written)

    def _evict(self, e: int, count: int, written: int) -> None:
        """Advance env ``e``'s oldest transition past overwritten slots and frames (``count``
        transitions and ``written`` frames added so far)."""
        cap, off = self._cap_py[e], self._off_py[e]
        oldest = self._oldest[e]
        if oldest < count - cap:
            oldest = count - cap
        # A transition reads frames from its newest frame index minus frame_stack on.
        first_kept = written - self._fcap_py[e] + self.frame_stack
        frame_idx = self._frame_idx
        while frame_idx[off + oldest % cap] < first_kept:
            oldest += 1
        self._oldest[e] = oldest

    # ------------------------------------------------------------------ sample
    def sample(self, batch_size: int, beta: float | None = None) -> Batch:
        """Draw ``batch_size`` sampleable transitions with replacement, as the sampler chooses.

        ``beta`` is the importance-sampling exponent of a prioritised sampler (None: its
        default); uniform sampling ignores it, its weights being 1 for every ``beta``.
        """
        batch_size = _as_int(batch_size, "batch_size", 1)
        try:
            slots, weights = self.sampler.sample(batch_size, beta)
        except LookupError:
            raise ValueError(self._empty_message()) from None
        return self.gather(slots, weights)

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Pass the new priorities (|TD errors|) of a sampled batch's ``indices`` to the sampler;
        a no-op for uniform sampling."""
        self.sampler.update(indices, priorities)

    def _empty_message(self) -> str:
        return (
            f"cannot sample: no transition is sampleable yet ({sum(self._count)} added, "
            f"n_step={self.n_step} windows need n_step transitions or an episode end); add more"
        )

    def gather(self, slots: np.ndarray, weights: np.ndarray) -> Batch:
        """The batch of the transitions in ``slots`` (sampleable ones, as a sampler returns them)
        with importance ``weights``, all vectorised over the batch; ``indices`` is ``slots``."""
        if self.num_envs == 1:
            env = np.zeros(len(slots), np.int64)
        else:
            env = np.searchsorted(self.env_offsets, slots, side="right") - 1
        first = slots
        if self.n_step == 1:
            rewards = self._rewards[first]
            terminated = (self._flags[first] & TERMINATED) != 0
            steps = np.ones(first.shape, np.int64)
            last = first
        else:
            cap = self.env_capacities[env][:, None]
            off = self.env_offsets[env][:, None]
            window = off + (first[:, None] - off + np.arange(self.n_step)) % cap  # (B, n)
            flags = self._flags[window]
            # Step i is summed when no episode end happened at steps 0..i-1 of the window.
            included = np.ones(window.shape, bool)
            included[:, 1:] = np.cumprod(flags[:, :-1] == 0, axis=1, dtype=bool)
            rewards = (self._rewards[window] * self._gamma_pows[: self.n_step] * included).sum(1)
            terminated = (included & ((flags & TERMINATED) != 0)).any(1)
            steps = included.sum(1)
            last = window[np.arange(len(window)), steps - 1]
        discounts = np.where(terminated, 0.0, self._gamma_pows[steps])
        size, k = len(first), self.frame_stack
        if self.n_step == 1:
            # next_obs is obs shifted by one frame: gather k + 1 frames per transition once and
            # return two overlapping views (5 frames instead of 8 at frame_stack=4).
            frames = self._frames_of(env, self._frame_idx[first], k + 1)
            obs = frames[:, :k].reshape(size, *self.obs_shape)
            next_obs = frames[:, 1:].reshape(size, *self.obs_shape)
        else:
            # One gather into one allocation: two large temporaries per call let glibc trim
            # and re-fault the heap, which doubled sample time here.
            both = self._frames_of(
                np.concatenate((env, env)),
                np.concatenate((self._frame_idx[first] - 1, self._frame_idx[last])),
                k,
            ).reshape(2 * size, *self.obs_shape)
            obs, next_obs = both[:size], both[size:]
        return Batch(
            obs=obs,
            actions=self._actions[first],
            rewards=np.asarray(rewards, np.float32),
            next_obs=next_obs,
            discounts=discounts.astype(np.float32),
            weights=weights,
            indices=first,
        )

    def _frames_of(self, env: np.ndarray, newest: np.ndarray, count: int) -> np.ndarray:
        """The ``count`` frames up to absolute frame ``newest`` of each env, one gather:
        shape ``(B, count, *frame_shape)``."""
        frames = newest[:, None] + np.arange(1 - count, 1)
        rows = self._frame_off[env][:, None] + frames % self._frame_cap[env][:, None]
        return self._frames[rows]

    # ------------------------------------------------------------------ state
    def _config(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "obs_shape": self.obs_shape,
            "obs_dtype": self.obs_dtype.str,
            "action_shape": self.action_shape,
            "action_dtype": self.action_dtype.str,
            "frame_stack": self.frame_stack,
            "n_step": self.n_step,
            "num_envs": self.num_envs,
            **self.sampler.config(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: storage, positions and the sampler's state (its RNG,
        and priorities if it has them).

        The arrays are views of the live storage (a full Atari buffer is 7 GB; copying it would
        double that), trimmed to the part written so far: serialise before the next ``add``.
        """
        used = [min(c, cap) for c, cap in zip(self._count, self._cap_py, strict=True)]
        used_frames = [min(w, f) for w, f in zip(self._written, self._fcap_py, strict=True)]
        per_env = {
            name: [arr[o : o + n] for o, n in zip(self._off_py, used, strict=True)]
            for name, arr in (
                ("actions", self._actions),
                ("rewards", self._rewards),
                ("flags", self._flags),
                ("frame_idx", self._frame_idx),
            )
        }
        last_next = np.zeros((self.num_envs, *self.obs_shape), self.obs_dtype)
        for e, raw in enumerate(self._last_next):
            if raw is not None:
                last_next[e] = np.frombuffer(raw, self.obs_dtype).reshape(self.obs_shape)
        return {
            "config": self._config(),
            "frames": [
                self._frames[o : o + n] for o, n in zip(self._foff_py, used_frames, strict=True)
            ],
            **per_env,
            "count": np.array(self._count, np.int64),
            "written": np.array(self._written, np.int64),
            "oldest": np.array(self._oldest, np.int64),
            "last_end": np.array(self._last_end, np.int64),
            "done": np.array(self._done, bool),
            "has_last_next": np.array([r is not None for r in self._last_next], bool),
            "last_next": last_next,
            **self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``; raises ``ValueError`` if it came from another layout."""
        saved = state.get("config")
        if not isinstance(saved, dict):
            raise ValueError("not a replay buffer state_dict: it has no 'config' entry")
        mine = self._config()
        diffs = [
            f"{key}={saved.get(key)!r} (this buffer: {value!r})"
            for key, value in mine.items()
            if _normalise(saved.get(key)) != _normalise(value)
        ]
        if diffs:
            raise ValueError(
                "replay state_dict does not fit this buffer: saved with "
                + ", ".join(diffs)
                + "; construct the buffer with the saved settings"
            )
        self.sampler.load_state_dict(state)  # checks its part before it changes anything
        for e in range(self.num_envs):
            o, fo = self._off_py[e], self._foff_py[e]
            frames = state["frames"][e]
            self._frames[fo : fo + len(frames)] = frames
            for name in ("actions", "rewards", "flags", "frame_idx"):
                part = state[name][e]
                getattr(self, f"_{name}")[o : o + len(part)] = part
        self._count = [int(x) for x in state["count"]]
        self._written = [int(x) for x in state["written"]]
        self._oldest = [int(x) for x in state["oldest"]]
        self._last_end = [int(x) for x in state["last_end"]]
        self._done = [bool(x) for x in state["done"]]
        self._last_next = [
            np.ascontiguousarray(state["last_next"][e], self.obs_dtype).tobytes() if has else None
            for e, has in enumerate(state["has_last_next"])
        ]
        self.sampler.attach(self)  # the sampler's state describes the restored contents


def _normalise(value: Any) -> Any:
    """Tuples and lists compare equal after a round trip through a checkpoint format."""
    if isinstance(value, (list, tuple)):
        return tuple(_normalise(v) for v in value)
    return value
