"""ReplayBuffer and PrioritizedReplayBuffer against a slow, obvious reference.

The reference (``ReferenceReplay``) keeps every transition as full ``obs`` / ``next_obs`` copies
in a per-env list and computes n-step targets by walking that list, so it shares no logic with the
buffer. It models the buffer's documented storage policy: ``capacity`` split over envs, a frame
ring of ``frame_ring_capacity`` frames per env (an episode start uses ``frame_stack + 1`` frames,
every other transition one), NEXT_STEP autoreset fillers dropped, and stream breaks ending the
episode (bootstrapping).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from rlkit.replay import Batch, PrioritizedReplayBuffer, ReplayBuffer
from rlkit.replay.buffer import frame_ring_capacity


class FrameSource:
    """Unique frames: every frame ever made differs, so any mix-up in a stack shows."""

    def __init__(self, frame_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.frame_shape = frame_shape
        self.dtype = np.dtype(dtype)
        self.next_id = 1

    def make(self) -> np.ndarray:
        i = self.next_id
        self.next_id += 1
        if self.dtype == np.uint8:
            frame = np.full(int(np.prod(self.frame_shape)), i % 251, np.uint8)
            frame[:3] = [(i >> 16) & 255, (i >> 8) & 255, i & 255]
            return frame.reshape(self.frame_shape)
        return (
            (np.arange(np.prod(self.frame_shape)) * 1e-3 + i)
            .astype(self.dtype)
            .reshape(self.frame_shape)
        )


@dataclass
class Step:
    obs: np.ndarray
    action: int
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    kind: str  # "start", "normal", "break" (new episode without a done) or "filler"


class EnvStream:
    """One env's random episodes: terminations, truncations, optional NEXT_STEP autoreset
    fillers, optional stream breaks, and reset stacks of repeated first frames or zeros."""

    def __init__(
        self,
        rng: np.random.Generator,
        frames: FrameSource,
        frame_stack: int,
        *,
        autoreset: bool,
        break_prob: float,
        end_prob: float = 0.2,
    ) -> None:
        self.rng, self.frames, self.k = rng, frames, frame_stack
        self.autoreset, self.break_prob, self.end_prob = autoreset, break_prob, end_prob
        self.obs: np.ndarray | None = None
        self.filler_from: np.ndarray | None = None
        self.starting = False  # the reset obs came with the autoreset filler

    def _reset_obs(self) -> np.ndarray:
        first = self.frames.make()
        if self.k == 1:
            return first
        pad = first if self.rng.random() < 0.5 else np.zeros_like(first)
        return np.stack([pad] * (self.k - 1) + [first])

    def _advance(self, obs: np.ndarray) -> np.ndarray:
        frame = self.frames.make()
        return frame if self.k == 1 else np.concatenate((obs[1:], frame[None]))

    def step(self) -> Step:
        action = int(self.rng.integers(0, 6))
        if self.filler_from is not None:  # gymnasium NEXT_STEP autoreset: reward 0, reset obs
            final, self.filler_from = self.filler_from, None
            self.obs, self.starting = self._reset_obs(), True
            return Step(final, action, 0.0, self.obs, False, False, "filler")
        if self.starting:
            kind, self.starting = "start", False
        elif self.obs is None:
            kind, self.obs = "start", self._reset_obs()
        elif self.rng.random() < self.break_prob:
            kind, self.obs = "break", self._reset_obs()
        else:
            kind = "normal"
        obs, next_obs = self.obs, self._advance(self.obs)
        reward = float(self.rng.integers(-4, 5)) * 0.5
        u = self.rng.random()
        terminated, truncated = u < self.end_prob * 0.6, self.end_prob * 0.6 <= u < self.end_prob
        self.obs = next_obs
        if terminated or truncated:
            self.obs = None
            if self.autoreset:
                self.filler_from = next_obs
        return Step(obs, action, reward, next_obs, terminated, truncated, kind)


class ReferenceReplay:
    """Per-env lists of full transitions; the slow obvious version of the buffer."""

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        n_step: int,
        gamma: float,
        frame_stack: int,
        frame_nbytes: int,
    ) -> None:
        base, rest = divmod(capacity, num_envs)
        self.caps = [base + (e < rest) for e in range(num_envs)]
        self.offsets = [sum(self.caps[:e]) for e in range(num_envs)]
        self.rings = [frame_ring_capacity(c, frame_stack, frame_nbytes) for c in self.caps]
        self.n, self.gamma, self.k = n_step, gamma, frame_stack
        self.transitions: list[list[dict]] = [[] for _ in range(num_envs)]
        self.frames_used = [0] * num_envs
        self.evicted_by_frames = 0

    def add(self, e: int, step: Step) -> None:
        if step.kind == "filler":
            return
        history = self.transitions[e]
        if step.kind == "break":
            history[-1]["end"] = True  # bootstraps: terminated stays False
        start = step.kind in ("start", "break")
        self.frames_used[e] += self.k + 1 if start else 1
        history.append(
            {
                "obs": step.obs.copy(),
                "action": step.action,
                "reward": float(np.float32(step.reward)),
                "next_obs": step.next_obs.copy(),
                "terminated": step.terminated,
                "end": step.terminated or step.truncated,
                "oldest_frame": self.frames_used[e] - 1 - self.k,
            }
        )

    def expected(self) -> dict[int, tuple]:
        """slot -> (obs, action, n-step return, next_obs, discount) for sampleable transitions."""
        out = {}
        for e, history in enumerate(self.transitions):
            first_kept_frame = self.frames_used[e] - self.rings[e]
            for j in range(max(0, len(history) - self.caps[e]), len(history)):
                if history[j]["oldest_frame"] < first_kept_frame:
                    self.evicted_by_frames += 1
                    continue
                summed = []
                for t in history[j : j + self.n]:
                    summed.append(t)
                    if t["end"]:
                        break
                if len(summed) < self.n and not summed[-1]["end"]:
                    continue  # n-step window not complete yet
                ret = sum(self.gamma**i * t["reward"] for i, t in enumerate(summed))
                last = summed[-1]
                discount = 0.0 if last["terminated"] else self.gamma ** len(summed)
                slot = self.offsets[e] + j % self.caps[e]
                out[slot] = (
                    history[j]["obs"],
                    history[j]["action"],
                    ret,
                    last["next_obs"],
                    discount,
                )
        return out


# ---------------------------------------------------------------------------- stream driver
def make_setup(
    cls: type,
    *,
    capacity: int,
    num_envs: int,
    n_step: int,
    frame_stack: int,
    frame_shape: tuple[int, ...],
    dtype: type,
    autoreset: bool,
    break_prob: float,
    seed: int = 0,
    end_prob: float = 0.2,
):
    rng = np.random.default_rng(seed)
    frames = FrameSource(frame_shape, dtype)
    obs_shape = (frame_stack, *frame_shape) if frame_stack > 1 else frame_shape
    buf = cls(
        capacity,
        obs_shape,
        obs_dtype=dtype,
        frame_stack=frame_stack,
        n_step=n_step,
        gamma=0.9,
        num_envs=num_envs,
        seed=seed,
    )
    frame_nbytes = int(np.prod(frame_shape)) * np.dtype(dtype).itemsize
    ref = ReferenceReplay(capacity, num_envs, n_step, 0.9, frame_stack, frame_nbytes)
    streams = [
        EnvStream(
            rng, frames, frame_stack, autoreset=autoreset, break_prob=break_prob, end_prob=end_prob
        )
        for _ in range(num_envs)
    ]
    return buf, ref, streams


def add_step(buf: ReplayBuffer, ref: ReferenceReplay, streams: list[EnvStream]) -> None:
    steps = [s.step() for s in streams]

    def field(name: str) -> np.ndarray:
        values = np.stack([np.asarray(getattr(s, name)) for s in steps])
        return values if len(steps) > 1 else values[0]  # num_envs=1: no leading axis

    buf.add(
        field("obs"),
        field("action"),
        field("reward"),
        field("next_obs"),
        field("terminated"),
        field("truncated"),
    )
    for e, step in enumerate(steps):
        ref.add(e, step)


def check_sample(buf: ReplayBuffer, ref: ReferenceReplay, batch_size: int = 64) -> Batch | None:
    """Every field of a sample equals the reference's transition for the returned slot."""
    expected = ref.expected()
    assert len(buf) == len(expected)
    if not expected:
        with pytest.raises(ValueError, match="cannot sample"):
            buf.sample(batch_size)
        return None
    batch = buf.sample(batch_size)
    assert isinstance(batch, Batch)
    assert batch.indices.dtype == np.int64 and batch.indices.shape == (batch_size,)
    unknown = set(batch.indices.tolist()) - set(expected)
    assert not unknown, f"sampled slots that are not sampleable: {sorted(unknown)}"
    rows = [expected[int(i)] for i in batch.indices]
    assert batch.obs.shape == (batch_size, *buf.obs_shape) and batch.obs.dtype == buf.obs_dtype
    np.testing.assert_array_equal(batch.obs, np.stack([r[0] for r in rows]))
    np.testing.assert_array_equal(batch.actions, [r[1] for r in rows])
    np.testing.assert_allclose(batch.rewards, [r[2] for r in rows], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(batch.next_obs, np.stack([r[3] for r in rows]))
    np.testing.assert_allclose(batch.discounts, [r[4] for r in rows], rtol=1e-6)
    for name in ("rewards", "discounts", "weights"):
        assert getattr(batch, name).dtype == np.float32
        assert getattr(batch, name).shape == (batch_size,)
    return batch


STREAM_CASES = {
    # name: (capacity, num_envs, n_step, frame_stack, frame_shape, dtype, autoreset, break_prob)
    "stack4-n1-1env": (40, 1, 1, 4, (5, 5), np.uint8, False, 0.0),
    "stack4-n3-3env-uneven": (61, 3, 3, 4, (5, 5), np.uint8, True, 0.03),
    "vector-n1-2env": (30, 2, 1, 1, (3,), np.float32, True, 0.0),
    "vector-n3-3env": (45, 3, 3, 1, (3,), np.float32, False, 0.03),
    "stack4-n3-tight-frame-ring": (50, 2, 3, 4, (32, 40), np.uint8, True, 0.03),
    "stack2-n2-1env": (25, 1, 2, 2, (4, 3), np.uint8, False, 0.05),
}


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer], ids=["uniform", "per"])
@pytest.mark.parametrize("case", list(STREAM_CASES), ids=list(STREAM_CASES))
def test_every_sampled_field_matches_the_reference(cls: type, case: str) -> None:
    capacity, num_envs, n_step, k, frame_shape, dtype, autoreset, break_prob = STREAM_CASES[case]
    buf, ref, streams = make_setup(
        cls,
        capacity=capacity,
        num_envs=num_envs,
        n_step=n_step,
        frame_stack=k,
        frame_shape=frame_shape,
        dtype=dtype,
        autoreset=autoreset,
        break_prob=break_prob,
    )
    prio_rng = np.random.default_rng(1)
    for t in range(200):  # several wrap-arounds of every env's ring
        add_step(buf, ref, streams)
        if t % 4 == 0:
            batch = check_sample(buf, ref)
            if batch is not None and cls is PrioritizedReplayBuffer and t % 8 == 0:
                buf.update_priorities(batch.indices, prio_rng.uniform(0.5, 2.0, len(batch.indices)))
            if batch is not None and cls is ReplayBuffer:
                np.testing.assert_array_equal(batch.weights, 1.0)
    # Coverage: every sampleable transition, and nothing else, carries sampling mass.
    assert set(buf.sample(4000).indices.tolist()) == set(ref.expected())
    assert len(buf) <= capacity
    if case == "stack4-n3-tight-frame-ring":
        assert ref.evicted_by_frames > 0, "this case must exercise early eviction by frames"
