"""Play full games with a trained policy and summarise the scores (``rlkit evaluate``).

The protocol is the DQN paper's (Mnih et al. 2015): whole games (no life-loss episodes),
unclipped game score, up to 30 random no-op starts, epsilon 0.05 for value-based agents, games
capped at 108k frames (``env.max_episode_frames``). Evaluation builds only the policy network
(``agents.policy.build_policy``) and the evaluation envs: no training envs, no replay buffer.
Up to ``agents.environments.PARALLEL_GAMES`` games are played side by side, each env its fixed
share of the games, so one batched forward pass acts for all of them (``play_games``).

Sticky actions (Machado et al. 2018, "Revisiting the Arcade Learning Environment"): with
probability 0.25 (``STICKY_ACTIONS``) the emulator repeats the previous action instead of the
agent's, on every frame, so a policy cannot replay a memorised action sequence.
``repeat_action_probability`` sets any probability; the default is the training config's.

A checkpoint's evaluation reports, besides the raw scores, the human-normalised mean score
(``envs.atari_scores``: random and human scores of the Nature DQN paper) and the protocol it was
played under, since a score means little without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.config import Config, ConfigError, config_from_dict
from agents.environments import EVAL_NOOP_MAX, open_eval_envs
from agents.policy import build_policy
from envs import is_atari, is_minatar
from envs.atari_scores import human_normalized
from envs.minatar import STICKY_ACTION_PROB
from rlkit.checkpoint import CheckpointError, load_checkpoint
from rlkit.device import set_cpu_threads

CHECKPOINT_FORMAT = "rlkit/1"
"""Value of ``checkpoint["format"]`` for files written by ``rlkit train``."""

STICKY_ACTIONS = 0.25
"""Repeat-action probability of the sticky-action protocol (Machado et al. 2018)."""

ActFn = Callable[[np.ndarray], np.ndarray]
"""Maps a batch of observations ``(n, *obs_shape)`` to actions ``(n,)``."""


@dataclass(frozen=True)
class EvalProtocol:
    """How the games were played: the ``protocol`` object of ``rlkit evaluate --json``."""

    policy: str
    """``epsilon-greedy`` (value-based agents), ``sampled`` (PAAC's and PPO's policy) or
    ``greedy``."""
    epsilon: float | None
    """Exploration of ``epsilon-greedy``; null for the other policies."""
    noop_max: int | None
    """Up to this many random no-ops start each game (Atari); null: no no-op starts."""
    repeat_action_probability: float
    """Sticky actions: the emulator repeats the previous action with this probability."""
    max_episode_frames: int | None
    """Frames after which a game is cut off (Atari); null: the env's own time limit."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        """One line for the terminal, e.g. ``protocol: epsilon-greedy (0.05), ...``."""
        policy = f"epsilon-greedy ({self.epsilon})" if self.epsilon is not None else self.policy
        parts = [policy]
        if self.noop_max is not None:
            parts.append(f"up to {self.noop_max} no-op starts")
        parts.append(f"sticky actions p={self.repeat_action_probability}"
                     if self.repeat_action_probability > 0 else "no sticky actions")
        if self.max_episode_frames is not None:
            parts.append(f"games capped at {self.max_episode_frames} frames")
        return "protocol: " + ", ".join(parts)


@dataclass(frozen=True)
class EvalResult:
    """Per-game scores of one evaluation (with the env and protocol when a checkpoint's)."""

    returns: list[float]
    lengths: list[int]
    env_id: str | None = None
    protocol: EvalProtocol | None = None

    @property
    def human_normalized(self) -> float | None:
        """The mean score, human-normalised (Nature DQN table); None without reference scores."""
        if self.env_id is None:
            return None
        return human_normalized(self.env_id, float(np.mean(self.returns)))

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object: mean, median, std, min, max, episodes, returns, and for a
        checkpoint's evaluation env_id, human_normalized (null for games without reference
        scores) and protocol."""
        scores = np.asarray(self.returns, dtype=np.float64)
        out: dict[str, Any] = {
            "mean": float(scores.mean()), "median": float(np.median(scores)),
            "std": float(scores.std()), "min": float(scores.min()), "max": float(scores.max()),
            "episodes": len(self.returns), "returns": [float(r) for r in self.returns],
        }
        if self.env_id is not None:
            out.update(env_id=self.env_id, human_normalized=self.human_normalized)
        if self.protocol is not None:
            out["protocol"] = self.protocol.as_dict()
        return out

    def line(self) -> str:
        """One human-readable line for the terminal."""
        s = self.summary()
        normalized = self.human_normalized
        human = "" if normalized is None else f"  (human-normalised {normalized:.1f}%)"
        return (f"mean {s['mean']:.2f}  median {s['median']:.2f}  std {s['std']:.2f}  "
                f"min {s['min']:.2f}  max {s['max']:.2f}  over {s['episodes']} games{human}")


class VideoRecorder:
    """Writes ``env.render()`` RGB frames to an mp4 with OpenCV."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self._writer: Any = None

    def add(self, frame: np.ndarray | None) -> None:
        import cv2

        if frame is None:
            raise ConfigError("--video needs an env that renders rgb_array frames; this one "
                              "returned none (drop --video)")
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter.fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise ConfigError(f"cannot write video {self.path}; check the --video directory")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def _render(env: gym.Env) -> np.ndarray | None:
    try:
        frame = env.render()
    except gym.error.DependencyNotInstalled as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"--video cannot render this env ({first}); drop --video") from None
    # render_mode="rgb_array" renders one array; anything else is no frame for the video
    return frame if isinstance(frame, np.ndarray) else None


def game_seeds(seed: int | None, count: int) -> list[int | None]:
    """First-reset seeds of ``count`` envs playing side by side, hashed from ``seed`` by numpy's
    ``SeedSequence``: evaluations from different seeds share no env seed (bar a one-in-2**32
    collision), which consecutive seeds ``seed + k`` would not give."""
    if seed is None:
        return [None] * count
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(count)]


def game_quotas(episodes: int, count: int) -> list[int]:
    """Games each of ``count`` envs plays: ``episodes`` split evenly, the first envs taking the
    remainder. A fixed share per env, not the first ``episodes`` games to finish, which would
    favour short games (in most games, the bad ones)."""
    return [episodes // count + (k < episodes % count) for k in range(count)]


def play_games(act: ActFn, envs: Sequence[gym.Env], episodes: int, *, seed: int | None = None,
               video: VideoRecorder | None = None) -> EvalResult:
    """Play ``episodes`` whole games on ``envs`` side by side; a game's score is the sum of its
    unclipped rewards.

    Each step calls ``act`` once, on the stacked observations of the envs still playing, so the
    network runs once per step for all of them. Env ``k`` plays ``game_quotas(...)[k]`` games,
    its first reset seeded with ``game_seeds(seed, ...)[k]`` (then its own RNG continues), so an
    evaluation is reproducible for a given number of envs. ``video`` records the first game of
    the first env. Scores are listed env by env, each env's in the order played.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    envs = list(envs)[:episodes]  # an env without a game to play would only cost steps
    if not envs:
        raise ValueError("play_games needs at least one env")
    quotas = game_quotas(episodes, len(envs))
    returns: list[list[float]] = [[] for _ in envs]
    lengths: list[list[int]] = [[] for _ in envs]
    obs = [env.reset(seed=s)[0] for env, s in
           zip(envs, game_seeds(seed, len(envs)), strict=True)]
    scores = [0.0] * len(envs)
    steps = [0] * len(envs)
    recorder = video
    playing = list(range(len(envs)))
    while playing:
        if recorder is not None:
            recorder.add(_render(envs[0]))
        actions = act(np.stack([np.asarray(obs[k]) for k in playing]))
        still_playing = []
        for k, action in zip(playing, actions, strict=True):
            obs[k], reward, terminated, truncated, info = envs[k].step(action)
            scores[k] += float(info.get("raw_reward", reward))
            steps[k] += 1
            if not (terminated or truncated):
                still_playing.append(k)
                continue
            if k == 0 and recorder is not None:  # the first game only
                recorder.add(_render(envs[0]))
                recorder.close()
                recorder = None
            returns[k].append(scores[k])
            lengths[k].append(steps[k])
            scores[k], steps[k] = 0.0, 0
            if len(returns[k]) < quotas[k]:
                obs[k] = envs[k].reset()[0]
                still_playing.append(k)
        playing = still_playing
    return EvalResult([r for env_returns in returns for r in env_returns],
                      [n for env_lengths in lengths for n in env_lengths])


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[dict[str, Any], Config]:
    """Load an ``rlkit train`` checkpoint and its config (``CheckpointError`` if it is not one)."""
    ckpt = load_checkpoint(path, map_location=map_location)
    if ckpt.get("format") != CHECKPOINT_FORMAT or "config" not in ckpt or "learner" not in ckpt:
        raise CheckpointError(f"{path} is not an rlkit training checkpoint; pass "
                              "RUN_DIR/checkpoints/last.pt or best.pt written by rlkit train")
    try:
        cfg = config_from_dict(ckpt["config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid config ({exc})") from None
    return ckpt, cfg


def eval_env_config(cfg: Config, repeat_action_probability: float | None) -> Config:
    """``cfg`` with the evaluation's sticky-action probability (None: the config's own)."""
    p = repeat_action_probability
    if p is None:
        return cfg
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"--repeat-action-probability must be in [0, 1], got {p}")
    if p > 0 and not is_atari(cfg.env.id):
        raise ConfigError(f"sticky actions apply to Atari games only, not {cfg.env.id!r}; drop "
                          "--sticky-actions / --repeat-action-probability")
    return dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, repeat_action_probability=p))


def eval_protocol(cfg: Config, *, greedy: bool, epsilon: float, uses_epsilon: bool
                  ) -> EvalProtocol:
    """The protocol ``make_eval_env`` and the policy follow for ``cfg`` (see the module doc)."""
    atari = is_atari(cfg.env.id)
    policy = "greedy" if greedy else "epsilon-greedy" if uses_epsilon else "sampled"
    # MinAtar's games repeat the previous action with their own fixed probability (0.1).
    sticky = STICKY_ACTION_PROB if is_minatar(cfg.env.id) else 0.0
    return EvalProtocol(
        policy=policy, epsilon=epsilon if policy == "epsilon-greedy" else None,
        noop_max=EVAL_NOOP_MAX if atari else None,
        repeat_action_probability=cfg.env.repeat_action_probability if atari else sticky,
        max_episode_frames=cfg.env.max_episode_frames if atari else None,
    )


def evaluate_checkpoint(
    path: str | Path,
    *,
    episodes: int = 30,
    epsilon: float = 0.05,
    greedy: bool = False,
    seed: int = 0,
    video_dir: str | Path | None = None,
    device: torch.device | None = None,
    repeat_action_probability: float | None = None,
) -> EvalResult:
    """Evaluate a checkpoint under the protocol above; ``video_dir`` gets ``game0.mp4``.

    ``repeat_action_probability``: sticky actions (``STICKY_ACTIONS`` for Machado et al.'s
    protocol); None plays with the training config's.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"--epsilon must be in [0, 1], got {epsilon}")
    device = device or torch.device("cpu")
    ckpt, cfg = read_checkpoint(path)
    set_cpu_threads(cfg.train.threads)  # as training ran: small nets want one thread
    cfg = eval_env_config(cfg, repeat_action_probability)
    render_mode = "rgb_array" if video_dir else None
    with open_eval_envs(cfg.env, episodes, render_mode=render_mode) as envs:
        env = envs[0]
        policy = build_policy(cfg, ckpt["learner"], env.observation_space, env.action_space,
                              device, seed=seed)

        def act(obs: np.ndarray) -> np.ndarray:
            return policy.act(obs, greedy=greedy, epsilon=epsilon)

        video = None
        if video_dir is not None:
            # Atari runs at 60 frames/s and we render once per agent step (frame_skip frames).
            if is_atari(cfg.env.id):
                fps = 60.0 / cfg.env.frame_skip
            else:
                fps = float(env.metadata.get("render_fps") or 30)
            video = VideoRecorder(Path(video_dir) / "game0.mp4", fps)
        result = play_games(act, envs, episodes, seed=seed, video=video)
    protocol = eval_protocol(cfg, greedy=greedy, epsilon=epsilon,
                             uses_epsilon=getattr(policy, "explores_with_epsilon", True))
    return dataclasses.replace(result, env_id=cfg.env.id, protocol=protocol)
