"""ReplayBuffer and PrioritizedReplayBuffer against a slow, obvious reference.

The reference (``ReferenceReplay``) keeps every transition as full ``obs`` / ``next_obs`` copies
in a per-env list and computes n-step targets by walking that list, so it shares no logic with the
buffer. It models the buffer's documented storage policy: ``capacity`` split over envs, a frame
ring of ``frame_ring_capacity`` frames per env (an episode start uses ``frame_stack + 1`` frames,
every other transition one), NEXT_STEP autoreset fillers dropped, and stream breaks ending the
episode (bootstrapping).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

from rlkit.replay import (
    Batch,
    PrioritizedReplayBuffer,
    ProportionalSampler,
    ReplayBuffer,
    UniformSampler,
)
from rlkit.replay import memory as replay_memory
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


# How a caller passes one step: "arrays": numpy arrays, with the leading env axis only when
# num_envs > 1; with num_envs=1 also "python": Python int/float/bool scalars as a single-env loop
# passes them, and "leading-axis": arrays with the optional leading axis of size 1.
INPUT_FORMS = ("arrays", "python", "leading-axis")


def add_step(
    buf: ReplayBuffer, ref: ReferenceReplay, streams: list[EnvStream], form: str = "arrays"
) -> None:
    steps = [s.step() for s in streams]

    def field(name: str) -> object:
        if form == "python":
            (step,) = steps
            return getattr(step, name)
        values = np.stack([np.asarray(getattr(s, name)) for s in steps])
        return values if len(steps) > 1 or form == "leading-axis" else values[0]

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
    "vector-n2-1env": (20, 1, 2, 1, (3,), np.float32, True, 0.05),
}
# Every case with numpy arrays; single-env cases also with the other input forms.
STREAM_RUNS = [
    (case, form)
    for case, spec in STREAM_CASES.items()
    for form in (INPUT_FORMS if spec[1] == 1 else INPUT_FORMS[:1])
]


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer], ids=["uniform", "per"])
@pytest.mark.parametrize(("case", "form"), STREAM_RUNS, ids=[f"{c}-{f}" for c, f in STREAM_RUNS])
def test_every_sampled_field_matches_the_reference(cls: type, case: str, form: str) -> None:
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
        add_step(buf, ref, streams, form)
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


# ---------------------------------------------------------------------------- hand-computed
def frame(i: int) -> np.ndarray:
    return np.full((2, 2), i, np.uint8)


def test_n_step_targets_hand_computed_with_termination() -> None:
    """Episode of 5 steps, rewards 1..5, terminated at the end; n=3, gamma=0.5."""
    buf = ReplayBuffer(16, (4, 2, 2), frame_stack=4, n_step=3, gamma=0.5, seed=0)
    obs = np.stack([frame(0)] * 4)
    for t in range(5):
        nxt = np.concatenate((obs[1:], frame(t + 1)[None]))
        buf.add(obs, t, float(t + 1), nxt, t == 4, False)
        obs = nxt
    batch = buf.sample(200)
    got = {int(i): k for k, i in enumerate(batch.indices)}
    assert sorted(got) == [0, 1, 2, 3, 4]
    want = {  # slot: (return, discount, newest frame of next_obs)
        0: (1 + 0.5 * 2 + 0.25 * 3, 0.125, 3),
        1: (2 + 0.5 * 3 + 0.25 * 4, 0.125, 4),
        2: (3 + 0.5 * 4 + 0.25 * 5, 0.0, 5),  # terminated inside the window
        3: (4 + 0.5 * 5, 0.0, 5),
        4: (5.0, 0.0, 5),  # the last n-1 transitions are kept, with shorter windows
    }
    for slot, (ret, disc, newest) in want.items():
        k = got[slot]
        assert batch.rewards[k] == pytest.approx(ret)
        assert batch.discounts[k] == pytest.approx(disc)
        np.testing.assert_array_equal(
            batch.next_obs[k, :, 0, 0], np.arange(newest - 3, newest + 1).clip(0)
        )
        np.testing.assert_array_equal(batch.obs[k, :, 0, 0], np.arange(slot - 3, slot + 1).clip(0))
        assert batch.actions[k] == slot


def test_truncation_bootstraps_from_the_true_final_observation() -> None:
    buf = ReplayBuffer(16, (4, 2, 2), frame_stack=4, n_step=2, gamma=0.5, seed=0)
    obs = np.stack([frame(10)] * 4)
    nxt = np.concatenate((obs[1:], frame(11)[None]))
    buf.add(obs, 0, 1.0, nxt, False, False)
    final = np.concatenate((nxt[1:], frame(12)[None]))
    buf.add(nxt, 1, 2.0, final, False, True)  # time limit
    # The next episode starts with zero padding and entirely new frames.
    reset = np.stack([np.zeros((2, 2), np.uint8)] * 3 + [frame(20)])
    buf.add(reset, 2, 0.0, np.concatenate((reset[1:], frame(21)[None])), False, False)
    batch = buf.sample(100)
    by_slot = {int(i): k for k, i in enumerate(batch.indices)}
    assert sorted(by_slot) == [0, 1]  # slot 2's window is not complete yet
    k0, k1 = by_slot[0], by_slot[1]
    np.testing.assert_array_equal(batch.next_obs[k1], final)  # not the next episode's frames
    np.testing.assert_array_equal(batch.next_obs[k0], final)
    assert batch.discounts[k1] == pytest.approx(0.5) and batch.rewards[k1] == 2.0
    assert batch.discounts[k0] == pytest.approx(0.25) and batch.rewards[k0] == 2.0
    second = np.concatenate((reset[1:], frame(21)[None]))
    buf.add(second, 3, 0.0, np.concatenate((second[1:], frame(22)[None])), False, False)
    batch = buf.sample(300)
    k2 = int(np.flatnonzero(batch.indices == 2)[0])
    np.testing.assert_array_equal(batch.obs[k2], reset)  # zero padding kept as emitted


def o(value: float) -> np.ndarray:
    """A one-number float32 observation."""
    return np.array([value], np.float32)


def test_autoreset_filler_is_dropped_and_stream_break_bootstraps() -> None:
    buf = ReplayBuffer(16, (1,), obs_dtype=np.float32, n_step=3, gamma=0.5, seed=0)
    buf.add(o(1), 0, 1.0, o(2), False, False)
    buf.add(o(2), 0, 1.0, o(3), True, False)
    buf.add(o(3), 5, 0.0, o(100), False, False)  # NEXT_STEP autoreset: obs is the final obs
    assert len(buf) == 2
    buf.add(o(100), 1, 1.0, o(101), False, False)
    buf.add(o(500), 2, 4.0, o(501), False, False)  # break: 101 -> 500 without a done
    batch = buf.sample(100)
    rows = {int(i): k for k, i in enumerate(batch.indices)}
    assert sorted(rows) == [0, 1, 2]  # slot 2 = (100 -> 101); the break ended its episode
    k = rows[2]
    assert batch.obs[k, 0] == 100 and batch.next_obs[k, 0] == 101
    assert batch.discounts[k] == pytest.approx(0.5)  # bootstraps, like a truncation
    assert 5 not in batch.actions.tolist()


def test_frame_stack_errors_are_one_clear_line() -> None:
    with pytest.raises(ValueError, match=r"frame_stack=4 needs obs_shape\[0\] == 4"):
        ReplayBuffer(10, (3, 84, 84), frame_stack=4)
    buf = ReplayBuffer(10, (2, 2, 2), frame_stack=2)
    obs = np.stack([frame(1), frame(2)])
    with pytest.raises(ValueError, match=r"next_obs\[:-1\] must equal obs\[1:\]"):
        buf.add(obs, 0, 0.0, np.stack([frame(7), frame(3)]), False, False)
    with pytest.raises(ValueError, match=r"obs has shape \(3, 2, 2\), expected \(1, 2, 2, 2\)"):
        buf.add(np.zeros((3, 2, 2)), 0, 0.0, obs, False, False)
    multi = ReplayBuffer(10, (3,), num_envs=2)
    with pytest.raises(ValueError, match=r"action has shape \(\), expected \(2,\)"):
        multi.add(np.zeros((2, 3)), 0, np.zeros(2), np.zeros((2, 3)), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="capacity=3 is too small"):
        ReplayBuffer(3, (3,), num_envs=2, n_step=2)
    with pytest.raises(ValueError, match="gamma must be in"):
        ReplayBuffer(10, (3,), gamma=1.5)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        ReplayBuffer(10, (3,)).sample(0)


def test_randomness_comes_only_from_the_buffer_seed() -> None:
    def sampled(seed: int, global_seed: int) -> np.ndarray:
        np.random.seed(global_seed)
        buf, ref, streams = make_setup(
            ReplayBuffer,
            capacity=30,
            num_envs=2,
            n_step=1,
            frame_stack=1,
            frame_shape=(3,),
            dtype=np.float32,
            autoreset=False,
            break_prob=0.0,
            seed=seed,
        )
        for _ in range(40):
            add_step(buf, ref, streams)
        return buf.sample(50).indices

    np.testing.assert_array_equal(sampled(3, 0), sampled(3, 99))
    assert not np.array_equal(sampled(3, 0), sampled(4, 0))


# ---------------------------------------------------------------------------- prioritised
def vector_per(capacity: int, n: int, **kwargs) -> PrioritizedReplayBuffer:
    """A PER buffer holding ``n`` one-step transitions with obs == action == slot number."""
    buf = PrioritizedReplayBuffer(capacity, (1,), obs_dtype=np.float32, seed=0, **kwargs)
    for i in range(n):
        buf.add(np.array([i], np.float32), i, 0.0, np.array([i + 1], np.float32), False, False)
    return buf


def test_per_frequencies_follow_p_alpha_over_sum() -> None:
    buf = vector_per(64, 50, alpha=0.6)
    priorities = np.random.default_rng(7).uniform(0.05, 5.0, 50)
    buf.update_priorities(np.arange(50), -priorities)  # |priority| is used
    want = (priorities + 1e-6) ** 0.6
    want /= want.sum()
    draws = np.concatenate([buf.sample(128).indices for _ in range(400)])
    counts = np.bincount(draws, minlength=64)
    assert counts[50:].sum() == 0  # empty slots have no mass
    expected = want * len(draws)
    chi_square = ((counts[:50] - expected) ** 2 / expected).sum()
    assert chi_square < 85.35  # chi2.ppf(0.999, df=49)
    freq = counts[:50] / len(draws)
    assert np.all(np.abs(freq - want) <= 4 * np.sqrt(want * (1 - want) / len(draws)))


def test_stratified_sampling_puts_one_draw_in_each_equal_mass_segment() -> None:
    buf = vector_per(8, 4, alpha=1.0)
    buf.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]) - 1e-6)
    counts = np.bincount(buf.sample(1000).indices, minlength=4)
    np.testing.assert_allclose(counts, [100, 200, 300, 400], atol=1)  # exact up to boundaries


def test_per_weights_are_normalised_importance_weights() -> None:
    buf = vector_per(64, 40, alpha=0.7, beta=0.4)
    priorities = np.linspace(0.1, 4.0, 40)
    buf.update_priorities(np.arange(40), priorities)
    mass = (priorities + 1e-6) ** 0.7
    probs = mass / mass.sum()
    for beta in (None, 1.0):
        batch = buf.sample(64, beta=beta)
        w = (40 * probs[batch.indices]) ** -(0.4 if beta is None else beta)
        np.testing.assert_allclose(batch.weights, w / w.max(), rtol=1e-5)
        assert batch.weights.max() == 1.0
        np.testing.assert_array_equal(batch.actions, batch.indices)  # data follows the index


def test_new_transitions_get_the_largest_priority_seen_and_duplicates_last_win() -> None:
    buf = vector_per(8, 2, alpha=1.0, eps=1e-9)
    buf.update_priorities(np.array([0, 1, 1]), np.array([1.0, 9.0, 3.0]))  # slot 1 -> 3
    buf.add(np.array([2], np.float32), 2, 0.0, np.array([3], np.float32), False, False)
    counts = np.bincount(buf.sample(1300).indices, minlength=3)
    np.testing.assert_allclose(counts, [100, 300, 900], atol=1)  # new one at max seen = 9


def test_overwritten_or_incomplete_transitions_keep_zero_priority_mass() -> None:
    buf = PrioritizedReplayBuffer(3, (1,), obs_dtype=np.float32, n_step=3, seed=0)
    for t in range(3):
        buf.add(o(t), t, 1.0, o(t + 1), False, False)
    assert buf.sample(10).indices.tolist() == [0] * 10
    buf.add(o(3), 3, 1.0, o(4), False, False)  # slot 0 now holds t=3, window incomplete
    buf.update_priorities(np.array([0]), np.array([100.0]))  # stale index: ignored
    assert len(buf) == 1
    assert set(buf.sample(50).indices.tolist()) == {1}
    with pytest.raises(ValueError, match="one priority per sampled index"):
        buf.update_priorities(np.array([1, 2]), np.array([1.0]))
    with pytest.raises(ValueError, match="non-finite priority"):
        buf.update_priorities(np.array([1]), np.array([np.nan]))
    empty = PrioritizedReplayBuffer(4, (1,), obs_dtype=np.float32, n_step=3)
    empty.add(o(0), 0, 0.0, o(1), False, False)
    with pytest.raises(ValueError, match="cannot sample"):
        empty.sample(2)


def test_update_right_after_sample_equals_the_checked_update_and_sees_adds_in_between() -> None:
    # update_priorities(batch.indices) straight after sample() skips its checks; it must leave
    # exactly the tree that the fully checked path (a copy of the indices) leaves.
    fast, checked = vector_per(64, 40, alpha=0.6), vector_per(64, 40, alpha=0.6)
    rng = np.random.default_rng(3)
    for _ in range(30):
        batch, twin = fast.sample(16), checked.sample(16)
        np.testing.assert_array_equal(batch.indices, twin.indices)
        priorities = rng.uniform(0.1, 3.0, 16)
        fast.update_priorities(batch.indices, priorities)
        checked.update_priorities(twin.indices.copy(), priorities)
    np.testing.assert_array_equal(
        fast.state_dict()["priorities"], checked.state_dict()["priorities"]
    )
    with pytest.raises(ValueError, match="read-only"):
        batch.indices[0] = 1  # the indices cannot change behind the buffer's back
    # An add between sample and update may overwrite a drawn slot: it must keep zero mass.
    buf = PrioritizedReplayBuffer(3, (1,), obs_dtype=np.float32, n_step=3, seed=0)
    for t in range(3):
        buf.add(o(t), t, 1.0, o(t + 1), False, False)
    batch = buf.sample(4)
    assert batch.indices.tolist() == [0] * 4
    buf.add(o(3), 3, 1.0, o(4), False, False)  # slot 0 now holds t=3, window incomplete
    buf.update_priorities(batch.indices, np.full(4, 100.0))
    assert set(buf.sample(50).indices.tolist()) == {1}


# ---------------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer], ids=["uniform", "per"])
def test_state_dict_round_trip_mid_stream_gives_identical_samples(cls: type) -> None:
    kwargs = dict(
        capacity=61,
        num_envs=3,
        n_step=3,
        frame_stack=4,
        frame_shape=(5, 5),
        dtype=np.uint8,
        autoreset=True,
        break_prob=0.02,
    )
    first, ref, streams = make_setup(cls, **kwargs)
    for _ in range(70):
        add_step(first, ref, streams)
    first.sample(8)
    state = pickle.loads(pickle.dumps(first.state_dict()))  # as a checkpoint would store it
    second, _, _ = make_setup(cls, **kwargs, seed=123)
    second.load_state_dict(state)
    for t in range(60):  # the same stream into both, across wrap-around
        steps = [s.step() for s in streams]
        for buf in (first, second):
            buf.add(
                *(
                    np.stack([getattr(s, f) for s in steps])
                    for f in Step.__dataclass_fields__
                    if f != "kind"
                )
            )
        if t % 10 == 0:
            a, b = first.sample(32), second.sample(32)
            for field in Batch.__dataclass_fields__:
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            if cls is PrioritizedReplayBuffer:
                new_priorities = np.arange(32) * 0.1
                first.update_priorities(a.indices, new_priorities)
                second.update_priorities(b.indices, new_priorities)
    assert len(first) == len(second)


def test_state_dict_of_a_partly_filled_buffer_holds_only_what_was_written() -> None:
    buf = ReplayBuffer(10_000, (4, 8, 8), frame_stack=4)
    obs = np.zeros((4, 8, 8), np.uint8)
    buf.add(obs, 0, 0.0, obs, False, False)
    state = buf.state_dict()
    assert sum(a.nbytes for a in state["frames"]) == 5 * 64  # one start stack + one frame
    assert len(state["actions"][0]) == 1


def test_loading_into_another_layout_fails_with_a_clear_message() -> None:
    state = ReplayBuffer(20, (3,), obs_dtype=np.float32).state_dict()
    with pytest.raises(ValueError, match=r"saved with capacity=20 \(this buffer: 30\)"):
        ReplayBuffer(30, (3,), obs_dtype=np.float32).load_state_dict(state)
    with pytest.raises(ValueError, match=r"obs_shape=\(3,\) \(this buffer: \(4,\)\)"):
        ReplayBuffer(20, (4,), obs_dtype=np.float32).load_state_dict(state)
    with pytest.raises(ValueError, match="kind='ReplayBuffer'"):
        PrioritizedReplayBuffer(20, (3,), obs_dtype=np.float32).load_state_dict(state)
    with pytest.raises(ValueError, match="no 'config' entry"):
        ReplayBuffer(20, (3,)).load_state_dict({})


# ---------------------------------------------------------------------------- memory
@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer], ids=["uniform", "per"])
def test_atari_million_transitions_fit_in_7_2_kb_each(cls: type) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a small CI box may warn; pages are lazy
        buf = cls(1_000_000, (4, 84, 84), frame_stack=4)
    assert buf.nbytes / buf.capacity <= 7200
    # Headroom for episode starts: 4 extra frames each for one start per 288 transitions.
    assert buf.frame_capacity == 1_000_000 + 1_000_000 // 72
    assert buf.nbytes >= buf.frame_capacity * 84 * 84
    del buf


def test_small_observations_get_a_ring_that_never_evicts_early() -> None:
    assert frame_ring_capacity(1000, 1, 16) == 2000  # CartPole: every obs once, plus starts
    assert frame_ring_capacity(1000, 4, 7056) == 1000 + 13


def test_warns_when_the_buffer_will_not_fit_in_available_memory(monkeypatch) -> None:
    monkeypatch.setattr(replay_memory, "available_memory_bytes", lambda: 1_000_000)
    with pytest.warns(UserWarning, match=r"needs 0\.07 GB but only 0\.00 GB .* lower `capacity`"):
        ReplayBuffer(10_000, (4, 84, 84), frame_stack=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ReplayBuffer(10, (4,))  # 1 MB is enough: no warning


def test_available_memory_falls_back_when_proc_meminfo_is_missing(monkeypatch) -> None:
    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr("builtins.open", no_proc)
    value = replay_memory.available_memory_bytes()
    assert value is None or value > 0


def test_replay_package_is_numpy_only() -> None:
    code = (
        "import sys, rlkit.replay; sys.exit('torch' in sys.modules or 'gymnasium' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_rejected_add_leaves_every_env_unchanged() -> None:
    buf = ReplayBuffer(10, (2, 2, 2), frame_stack=2, num_envs=2)
    good = np.stack([frame(1), frame(2)])
    obs = np.stack([good, good])
    next_obs = np.stack([np.stack([frame(2), frame(3)]), np.stack([frame(9), frame(3)])])
    with pytest.raises(ValueError, match=r"must equal obs\[1:\].*\(env 1\)"):
        buf.add(obs, [0, 0], [0.0, 0.0], next_obs, [True, True], [False, False])
    np.testing.assert_array_equal(buf.state_dict()["count"], [0, 0])
    np.testing.assert_array_equal(buf.state_dict()["written"], [0, 0])


def test_a_rejected_single_env_add_leaves_the_buffer_unchanged() -> None:
    buf = ReplayBuffer(10, (2, 2, 2), frame_stack=2)
    obs, next_obs = np.stack([frame(1), frame(2)]), np.stack([frame(2), frame(3)])
    buf.add(obs, 0, 1.0, next_obs, False, False)
    before = pickle.dumps(buf.state_dict())
    with pytest.raises(ValueError, match=r"must equal obs\[1:\].*\(env 0\)"):
        buf.add(next_obs, 1, 0.5, np.stack([frame(9), frame(4)]), True, False)
    with pytest.raises(ValueError, match="^action must be int64 integers, got <U4 value 'left'"):
        buf.add(next_obs, "left", 0.5, np.stack([frame(3), frame(4)]), True, False)
    with pytest.raises(ValueError, match=r"reward has shape \(2,\), expected \(1,\)"):
        buf.add(next_obs, 1, [0.5, 1.0], np.stack([frame(3), frame(4)]), True, False)
    assert pickle.dumps(buf.state_dict()) == before


def test_per_state_dict_with_another_tree_layout_is_refused_before_anything_changes() -> None:
    buf = vector_per(64, 40)
    state = buf.state_dict()
    state["priorities"] = state["priorities"][:-1]  # as saved by a different tree layout
    fresh = vector_per(64, 3)
    before = pickle.dumps(fresh.state_dict())
    with pytest.raises(ValueError, match="sum-tree nodes .* another tree layout"):
        fresh.load_state_dict(state)
    assert pickle.dumps(fresh.state_dict()) == before


def atari_step() -> tuple[np.ndarray, np.ndarray]:
    """A consistent uint8 ``(obs, next_obs)`` pair at frame_stack 4."""
    frames = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    return frames[:4], frames[1:]


ATARI_STEP = atari_step()


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        (
            "obs",
            ATARI_STEP[0].astype(np.float32) / 255.0,  # scaled frames used to be stored as zeros
            r"^obs must be uint8 integers in \[0, 255\], got float32 value 0\.0039.*"
            r"lossless.*uint8 frames, not scaled to \[0, 1\]",
        ),
        ("obs", np.where(ATARI_STEP[0] == 0, 300.0, ATARI_STEP[0]), "got float64 value 300 "),
        ("next_obs", ATARI_STEP[1].astype(np.int64) - 10, "^next_obs must .* int64 value -1 "),
        ("action", 2.7, "^action must be int64 integers, got float64 value 2.7 .*integer actions"),
        ("terminated", "no", r"^terminated must be bool \(True/False or 0/1\), got <U2 value 'no'"),
        ("truncated", 2, "^truncated must be bool .* got int64 value 2"),
        ("reward", float("nan"), "^reward must be finite float32, got float64 value nan;"),
        ("reward", np.float32("inf"), "^reward must be finite float32, got float32 value inf;"),
        ("reward", 1e300, "^reward must be finite float32, got float64 value 1e.300"),
    ],
)
@pytest.mark.parametrize("num_envs", [1, 2])
def test_values_that_would_be_stored_wrong_are_refused_in_one_line(
    argument: str, value: object, message: str, num_envs: int
) -> None:
    buf = ReplayBuffer(16, (4, 3, 3), frame_stack=4, num_envs=num_envs)
    obs, next_obs = ATARI_STEP
    args = {"obs": obs, "action": 1, "reward": 1.0, "next_obs": next_obs}
    args.update(terminated=False, truncated=False)
    args[argument] = value
    if num_envs > 1:  # the same step in both envs, with the leading env axis
        args = {name: np.stack([np.asarray(v)] * num_envs) for name, v in args.items()}
    before = pickle.dumps(buf.state_dict())
    with pytest.raises(ValueError, match=message) as error:
        buf.add(**args)
    assert "\n" not in str(error.value)
    assert pickle.dumps(buf.state_dict()) == before


def test_lossless_conversions_are_still_accepted() -> None:
    buf = ReplayBuffer(16, (4, 3, 3), frame_stack=4, num_envs=2)
    obs, next_obs = ATARI_STEP
    as_float = np.stack([obs, obs]).astype(np.float64)  # integral values in [0, 255]
    buf.add(
        as_float,
        [1.0, 2.0],
        np.array([1, -1]),
        np.stack([next_obs, next_obs]).astype(np.int64),
        np.array([1, 0]),
        np.array([0.0, 1.0]),
    )
    state = buf.state_dict()
    assert list(state["count"]) == [1, 1] and [a.tolist() for a in state["actions"]] == [[1], [2]]
    np.testing.assert_array_equal(buf.sample(4).obs[0], obs)


# ---------------------------------------------------------------------------- samplers
def test_every_sampler_takes_the_same_calls_and_uniform_ignores_priorities() -> None:
    buf = ReplayBuffer(16, (1,), obs_dtype=np.float32, seed=0)
    twin = ReplayBuffer(16, (1,), obs_dtype=np.float32, sampler=UniformSampler(seed=0))
    for b in (buf, twin):
        for i in range(10):
            b.add(np.array([i], np.float32), i, 0.0, np.array([i + 1], np.float32), False, False)
    batch = buf.sample(8, beta=0.7)
    np.testing.assert_array_equal(batch.weights, 1.0)
    np.testing.assert_array_equal(batch.indices, twin.sample(8).indices)  # beta changes nothing
    buf.update_priorities(batch.indices, np.full(8, 1e9))  # a no-op for uniform sampling
    np.testing.assert_array_equal(buf.sample(64).indices, twin.sample(64, beta=0.7).indices)
    with pytest.raises(ValueError, match="pass seed to the sampler"):
        ReplayBuffer(16, (1,), seed=0, sampler=UniformSampler(seed=0))


def test_a_buffer_with_a_proportional_sampler_is_the_prioritized_buffer() -> None:
    per = vector_per(64, 40, alpha=0.7, beta=0.5)
    buf = ReplayBuffer(
        64, (1,), obs_dtype=np.float32, sampler=ProportionalSampler(alpha=0.7, beta=0.5, seed=0)
    )
    for i in range(40):
        buf.add(np.array([i], np.float32), i, 0.0, np.array([i + 1], np.float32), False, False)
    assert buf.nbytes == per.nbytes
    for step in range(5):
        a, b = per.sample(16), buf.sample(16)
        for field in Batch.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        priorities = np.linspace(0.1, 3.0, 16) * (step + 1)
        per.update_priorities(a.indices, priorities)
        buf.update_priorities(b.indices, priorities)
    per.load_state_dict(buf.state_dict())  # the same checkpoint kind
