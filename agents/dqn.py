"""DQN (Mnih et al. 2015) and Double DQN (van Hasselt et al. 2015) with optional prioritised replay.

One module: the Q-network, the TD loss as a pure function (:func:`td_loss`), the evaluation
policy (:func:`build_policy`) and the learner the runner drives (:class:`DQNLearner`).
``agent.algo: dqn`` is plain DQN; only ``double_dqn`` turns on Double DQN's target.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.algo_configs import DQNConfig
from agents.environments import capture_env_stream, make_train_envs, resume_env_stream
from agents.episodes import Episode, EpisodeTracker
from agents.learner import acting_weights
from agents.networks import build_encoder
from envs import array_shape, is_atari
from rlkit.distributed import DistributedContext
from rlkit.grads import batch_mean
from rlkit.logger import Logger
from rlkit.optim import build_optimizer
from rlkit.replay import ReplayBuffer
from rlkit.schedules import Linear
from rlkit.update import UpdateStep

if TYPE_CHECKING:
    from agents.config import Config

__all__ = ["DQNConfig", "DQNLearner", "DQNPolicy", "QNetwork", "TDLoss", "build_policy",
           "td_loss"]


class QNetwork(nn.Module):
    """Encoder (Nature CNN for pixels, MinAtar's net for 10x10 MinAtar observations, MLP for
    vectors; ``agents.networks.auto_encoder``) + linear Q head, or a dueling head.

    Dueling (Wang et al. 2016, eq. 9): ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')``.
    Pixel networks run in channels-last memory format: oneDNN's CPU convolutions are about 1.2x
    faster forward+backward that way (Nature CNN, batch 32, measured here), and cuDNN prefers it.
    """

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, *, encoder: str = "auto",
                 mlp_hidden: list[int] | tuple[int, ...] = (64, 64), dueling: bool = False
                 ) -> None:
        super().__init__()
        self.encoder = build_encoder(obs_shape, encoder, tuple(mlp_hidden))
        self.dueling = dueling
        self.head = nn.Linear(self.encoder.out_features, n_actions)
        self.value = nn.Linear(self.encoder.out_features, 1) if dueling else None
        self.channels_last = len(obs_shape) == 3
        if self.channels_last:
            # Module.to(memory_format=...) is documented, but torch's overloads omit it.
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, obs: Tensor) -> Tensor:
        if self.channels_last:
            obs = obs.contiguous(memory_format=torch.channels_last)
        features = self.encoder(obs)
        q = self.head(features)
        if self.value is not None:
            q = self.value(features) + q - q.mean(dim=1, keepdim=True)
        return q


class TDLoss(NamedTuple):
    loss: Tensor
    """Scalar loss to minimise (mean over the batch of the weighted per-sample loss)."""
    td_error: Tensor
    """``target - Q(s, a)`` per sample, detached: |td_error| are the new PER priorities."""
    q_taken: Tensor
    """``Q(s, a)`` per sample, detached (for the mean-Q monitor)."""


def td_loss(
    q_values: Tensor,
    actions: Tensor,
    rewards: Tensor,
    discounts: Tensor,
    next_q_target: Tensor,
    next_q_online: Tensor | None = None,
    weights: Tensor | None = None,
    *,
    double: bool = False,
    loss: str = "huber",
    huber_delta: float = 1.0,
) -> TDLoss:
    """The (n-step, Double) DQN temporal-difference loss.

    ``q_values``/``next_q_*`` are ``(B, A)``; ``rewards`` is the discounted n-step reward sum and
    ``discounts`` is ``gamma**n`` or 0 after a termination, both from the replay buffer.
    Target (Mnih et al. 2015, eq. 2): ``y = r + discount * max_a' Q_target(s', a')``.
    Double DQN (van Hasselt et al. 2015, eq. 4): the online net picks a', the target net
    values it: ``y = r + discount * Q_target(s', argmax_a' Q_online(s', a'))``.
    Huber loss = the Nature paper's clipping of the TD error to [-1, 1]; ``mse`` is ``td**2``.
    Prioritised replay's importance weights (Schaul et al. 2016) scale either per-sample loss.
    """
    q_taken = q_values.gather(1, actions.long().unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        if double:
            if next_q_online is None:
                raise ValueError("td_loss(double=True) needs next_q_online, the online net's Q(s')")
            best = next_q_online.argmax(dim=1, keepdim=True)
            next_value = next_q_target.gather(1, best).squeeze(1)
        else:
            next_value = next_q_target.max(dim=1).values
        target = rewards + discounts * next_value
    if loss == "huber":
        per_sample = F.huber_loss(q_taken, target, reduction="none", delta=huber_delta)
    elif loss == "mse":
        per_sample = (target - q_taken) ** 2
    else:
        raise ValueError(f"unknown TD loss {loss!r}; use 'huber' or 'mse'")
    return TDLoss(batch_mean(per_sample, weights), (target - q_taken).detach(), q_taken.detach())


def epsilon_greedy(q_net: nn.Module, obs: np.ndarray, epsilon: float, rng: np.random.Generator,
                   n_actions: int, device: torch.device) -> np.ndarray:
    """Random action with probability ``epsilon`` per row, else argmax Q (one batched forward).

    The generator is drawn from identically whatever the outcome, so runs are reproducible; the
    network is skipped when every row explores (all of ``learning_starts`` at epsilon 1).
    """
    n: int = obs.shape[0]
    explore = rng.random(n) < epsilon
    actions = rng.integers(n_actions, size=n)
    if not explore.all():
        with torch.inference_mode():
            greedy = q_net(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()
        actions = np.where(explore, actions, greedy)
    return actions.astype(np.int64)


def _discrete_actions(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Discrete):
        raise ValueError(f"DQN needs a discrete action space, got {space}; pick another env")
    return int(space.n)


def _q_network(agent: DQNConfig, obs_space: gym.Space, action_space: gym.Space) -> QNetwork:
    return QNetwork(array_shape(obs_space, "observation"), _discrete_actions(action_space),
                    encoder=agent.encoder, mlp_hidden=agent.mlp_hidden, dueling=agent.dueling)


class DQNPolicy:
    """Epsilon-greedy acting from a trained Q-network (evaluation; no envs or replay)."""

    explores_with_epsilon = True  # named in rlkit evaluate's protocol

    def __init__(self, q_net: QNetwork, n_actions: int, device: torch.device,
                 seed: int | None = None) -> None:
        self.q_net = q_net.eval()
        self.n_actions = n_actions
        self.device = device
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        return epsilon_greedy(self.q_net, np.asarray(obs), 0.0 if greedy else epsilon, self.rng,
                              self.n_actions, self.device)


def build_policy(cfg: Config, learner_state: dict[str, Any], observation_space: gym.Space,
                 action_space: gym.Space, device: torch.device, *, seed: int | None = None
                 ) -> DQNPolicy:
    """The evaluation policy of a checkpoint: only the online Q-network is built and loaded
    (with the EMA of its weights when the run kept one, ``train.eval_ema``)."""
    q_net = _q_network(cfg.agent, observation_space, action_space).to(device)
    q_net.load_state_dict(acting_weights(learner_state, "q"))
    return DQNPolicy(q_net, _discrete_actions(action_space), device, seed)


class _DeviceBatch(TypedDict):
    """A replay batch on the learner's device (``weights``: importance weights, 1 if uniform)."""

    obs: Tensor
    next_obs: Tensor
    actions: Tensor
    rewards: Tensor
    discounts: Tensor
    weights: Tensor


class DQNLearner:
    """Collects experience from ``env.num_envs`` envs into one replay buffer and trains on it.

    Per ``train_iteration``: one vector-env step (``num_envs`` agent steps), then every
    ``train_freq`` agent steps past ``learning_starts``, ``gradient_steps`` updates. Scalars
    are accumulated on the device and returned (one host sync) once every ``train.log_every``
    agent steps; ``update/*`` monitors (grad norm, update/weight ratio, ...) come from
    ``UpdateStep``, logged at the agent step like every other curve.

    Data-parallel (``dist`` with N ranks, see docs/distributed.md): every rank steps its own
    ``num_envs`` envs into its own replay buffer and gradients are averaged over ranks, so one
    update sees N x ``batch_size`` samples; ``env_steps`` and every schedule count global steps.
    """

    def __init__(self, cfg: Config, device: torch.device, logger: Logger,
                 dist: DistributedContext | None = None) -> None:
        agent: DQNConfig = cfg.agent
        self.cfg = cfg
        self.agent = agent
        self.device = device
        self.num_envs = cfg.env.num_envs
        seed = cfg.train.seed
        self.dist = dist or DistributedContext(device=device)
        own_seed = self.dist.rank_seed(seed)  # exploration and replay sampling differ per rank
        self.envs = make_train_envs(cfg.env, self.dist.env_seed(seed, self.num_envs))
        obs_space = self.envs.single_observation_space
        self.n_actions = _discrete_actions(self.envs.single_action_space)
        self.q = _q_network(agent, obs_space, self.envs.single_action_space).to(device)
        self.dist.broadcast_module(self.q)
        self.target = copy.deepcopy(self.q).requires_grad_(False)

        # Convert the LR schedule's agent steps into optimizer updates (gradient_steps per round,
        # one round every train_freq agent steps after learning_starts).
        decay_steps = cfg.optim.lr_decay_steps or cfg.train.steps
        decay_updates = (decay_steps - agent.learning_starts) * agent.gradient_steps
        decay_updates //= agent.train_freq
        updates_per_log = cfg.train.log_every * agent.gradient_steps // agent.train_freq
        self.update = UpdateStep(
            self.q, build_optimizer(self.q, cfg.optim),
            max_grad_norm=cfg.optim.max_grad_norm,
            lr_schedule=cfg.optim.lr_schedule_over(decay_updates),
            monitor_every=max(1, updates_per_log),
            logger=logger.with_x_axis(lambda: self.env_steps),  # one x-axis: agent steps
            grad_sync=self.dist.average_gradients if self.dist.is_distributed else None,
            max_nan_skips=cfg.optim.nan_skips, ema_decay=cfg.train.eval_ema,
        )
        # Evaluation plays the EMA of the weights when train.eval_ema is set (never training).
        self.acting_net = self.q if self.update.ema is None else self.update.ema.module

        obs_shape = array_shape(obs_space, "observation")
        pixel_stack = is_atari(cfg.env.id) and len(obs_shape) == 3
        self.replay = ReplayBuffer(
            agent.buffer_size, obs_shape, obs_dtype=obs_space.dtype,
            frame_stack=cfg.env.frame_stack if pixel_stack else 1, n_step=agent.n_step,
            gamma=agent.gamma, num_envs=self.num_envs, sampler=agent.replay_sampler(own_seed))

        # Epsilon anneals after the replay start (DeepMind's DQN code, Dopamine); before it every
        # action is epsilon_start-random anyway.
        self.epsilon = Linear(agent.epsilon_start, agent.epsilon_final,
                              max(1, agent.epsilon_decay_steps), begin=agent.learning_starts)
        # Importance-sampling exponent, annealed (Schaul et al. 2016, Sec. 3.4); inert for
        # uniform replay, whose weights are 1 for every beta.
        self.beta = Linear(agent.per_beta_start, agent.per_beta_final,
                           agent.per_beta_steps or cfg.train.steps)
        self.rng = np.random.default_rng(own_seed)
        self.eval_rng = np.random.default_rng(seed + 1)
        self.tracker = EpisodeTracker(self.num_envs)
        self.obs, _ = self.envs.reset(seed=self.dist.env_seed(seed, self.num_envs))
        self.autoreset = np.zeros(self.num_envs, dtype=bool)
        self.steps_per_iteration = self.num_envs * self.dist.world_size  # global agent steps
        self._can_sample = False
        self.env_steps = 0
        self.next_round = agent.learning_starts
        self.next_target_sync = agent.target_update_steps
        self.next_log = cfg.train.log_every
        self._reset_accumulators()

    # ------------------------------------------------------------------ experience + updates

    def train_iteration(self) -> dict[str, float]:
        """One vector step, the updates that fall due, and (every log_every steps) scalars."""
        epsilon = self.epsilon(self.env_steps)
        actions = epsilon_greedy(self.q, self.obs, epsilon, self.rng, self.n_actions, self.device)
        next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        self.tracker.update(rewards, terminated, truncated, infos, autoreset=self.autoreset)
        self._store(actions, rewards, next_obs, terminated, truncated)
        self.autoreset = np.logical_or(terminated, truncated)
        self.obs = next_obs
        self.env_steps += self.steps_per_iteration
        while self.env_steps >= self.next_round:
            self.next_round += self.agent.train_freq
            if self._ready():
                for _ in range(self.agent.gradient_steps):
                    self._learn()
        while self.env_steps >= self.next_target_sync:
            self.next_target_sync += self.agent.target_update_steps
            self._sync_target()
        if self.env_steps < self.next_log:
            return {}
        self.next_log += self.cfg.train.log_every
        return self._scalars(epsilon)

    def _ready(self) -> bool:
        """Whether updates can start: every rank's buffer must hold a batch, since ranks update
        together (one all-reduce each); buffers only grow, so the answer is asked until yes."""
        if not self._can_sample:
            self._can_sample = not self.dist.any_true(len(self.replay) < self.agent.batch_size)
        return self._can_sample

    def _store(self, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
               terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Add every env's transition; the buffer itself drops NEXT_STEP autoreset steps
        (an ``obs`` equal to the episode's final ``next_obs`` right after its end)."""
        self.replay.add(self.obs, actions, rewards, next_obs, terminated, truncated)

    def _batch_to_device(self, batch: Any) -> _DeviceBatch:
        """Observations travel as uint8 and are scaled on the device by the encoder."""
        def to(x: np.ndarray, dtype: torch.dtype | None = None) -> Tensor:
            return torch.as_tensor(x).to(self.device, dtype=dtype, non_blocking=True)

        return {
            "obs": to(batch.obs), "next_obs": to(batch.next_obs),
            "actions": to(batch.actions, torch.int64), "rewards": to(batch.rewards, torch.float32),
            "discounts": to(batch.discounts, torch.float32),
            "weights": to(batch.weights, torch.float32),
        }

    def _learn(self) -> None:
        agent = self.agent
        batch = self.replay.sample(agent.batch_size, beta=self.beta(self.env_steps))
        b = self._batch_to_device(batch)
        with self.update.capture_activations():
            q_values = self.q(b["obs"])
        with torch.no_grad():
            next_q_target = self.target(b["next_obs"])
            next_q_online = self.q(b["next_obs"]) if agent.double else None
        out = td_loss(q_values, b["actions"], b["rewards"], b["discounts"], next_q_target,
                      next_q_online, b["weights"], double=agent.double, loss=agent.loss,
                      huber_delta=agent.huber_delta)
        stats = self.update.update(out.loss)
        self.replay.update_priorities(batch.indices, out.td_error.abs().cpu().numpy())
        self._acc["loss"] += out.loss.detach()
        self._acc["q_mean"] += out.q_taken.mean()
        self._acc["grad_norm"] += stats.grad_norm
        self._acc_updates += 1

    @torch.no_grad()
    def _sync_target(self) -> None:
        """Hard copy (tau = 1, Mnih et al. 2015) or Polyak averaging (Lillicrap et al. 2016)."""
        online = list(self.q.parameters()) + list(self.q.buffers())
        target = list(self.target.parameters()) + list(self.target.buffers())
        if self.agent.tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, self.agent.tau)

    def _reset_accumulators(self) -> None:
        zero = torch.zeros((), device=self.device)
        self._acc = {"loss": zero.clone(), "q_mean": zero.clone(), "grad_norm": zero.clone()}
        self._acc_updates = 0

    def _scalars(self, epsilon: float) -> dict[str, float]:
        scalars = {"train/epsilon": epsilon, "train/lr": self.update.lr,
                   "train/updates": float(self.update.updates),
                   "replay/size": float(len(self.replay)),
                   "train/per_beta": self.beta(self.env_steps)}
        if self._acc_updates:
            for key, total in self._acc.items():
                scalars[f"train/{key}"] = float(total) / self._acc_updates
        self._reset_accumulators()
        return scalars

    # ------------------------------------------------------------------ runner protocol

    def pop_episodes(self) -> list[Episode]:
        return self.tracker.pop()

    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        """Evaluation actions (own generator, so evaluation never shifts training randomness),
        from the EMA of the weights with ``train.eval_ema``."""
        return epsilon_greedy(self.acting_net, np.asarray(obs), 0.0 if greedy else epsilon,
                              self.eval_rng, self.n_actions, self.device)

    def state_dict(self, *, include_replay: bool = True) -> dict[str, Any]:
        return {
            "q": self.q.state_dict(),
            "target": self.target.state_dict(),
            "update": self.update.state_dict(),
            "env_steps": self.env_steps,
            "next_round": self.next_round,
            "next_target_sync": self.next_target_sync,
            "next_log": self.next_log,
            "rng": self.rng.bit_generator.state,
            "eval_rng": self.eval_rng.bit_generator.state,
            **capture_env_stream(self.envs, self.obs, self.autoreset, self.tracker),
            "replay": self.replay.state_dict() if include_replay else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``. Without its replay buffer, refill ``learning_starts`` first."""
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.update.load_state_dict(state["update"])
        self.env_steps = int(state["env_steps"])
        self.next_round = int(state["next_round"])
        self.next_target_sync = int(state["next_target_sync"])
        self.next_log = int(state["next_log"])
        self.rng.bit_generator.state = state["rng"]
        self.eval_rng.bit_generator.state = state["eval_rng"]
        self._can_sample = False
        if state.get("replay") is not None:
            self.replay.load_state_dict(state["replay"])
        else:
            self.next_round = max(self.next_round, self.env_steps + self.agent.learning_starts)
        self.obs, self.autoreset = resume_env_stream(
            self.envs, state, self.tracker,
            self.dist.env_seed(self.cfg.train.seed + self.env_steps, self.num_envs))
        self._reset_accumulators()

    def replay_nbytes(self) -> int:
        """Bytes of replay storage (the runner's ``save_replay: null`` rule: save when < 2 GB)."""
        return int(self.replay.nbytes)

    def close(self) -> None:
        self.envs.close()
