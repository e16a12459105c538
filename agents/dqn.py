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
from agents.learner import LearnerBase, OptionalState, discrete_actions, load_acting_net
from agents.networks import build_encoder, channels_last
from envs import array_shape, is_atari
from rlkit.dormant import recyclable_layers, recycle_dormant_units, unit_activity
from rlkit.grads import batch_mean
from rlkit.replay import ReplayBuffer
from rlkit.schedules import Linear

if TYPE_CHECKING:
    from agents.config import Config
    from rlkit.distributed import DistributedContext
    from rlkit.logger import Logger

__all__ = ["DQNConfig", "DQNLearner", "DQNPolicy", "QNetwork", "TDLoss", "build_policy",
           "td_loss"]


class QNetwork(nn.Module):
    """Encoder (Nature CNN for pixels, MinAtar's net for 10x10 MinAtar observations, MLP for
    vectors; ``agents.networks.auto_encoder``) + linear Q head, or a dueling head.

    Dueling (Wang et al. 2016, eq. 9): ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')``.
    """

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, *, encoder: str = "auto",
                 mlp_hidden: list[int] | tuple[int, ...] = (64, 64), dueling: bool = False
                 ) -> None:
        super().__init__()
        self.encoder = build_encoder(obs_shape, encoder, tuple(mlp_hidden))
        self.dueling = dueling
        self.head = nn.Linear(self.encoder.out_features, n_actions)
        self.value = nn.Linear(self.encoder.out_features, 1) if dueling else None
        channels_last(self)

    def forward(self, obs: Tensor) -> Tensor:
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


def _q_network(agent: DQNConfig, obs_space: gym.Space, action_space: gym.Space) -> QNetwork:
    return QNetwork(array_shape(obs_space, "observation"), discrete_actions(action_space, "DQN"),
                    encoder=agent.encoder, mlp_hidden=agent.mlp_hidden, dueling=agent.dueling)


class DQNPolicy:
    """Epsilon-greedy acting from a Q-network (evaluation: from a checkpoint, or the learner's
    ``act``), drawing from its own ``rng``."""

    explores_with_epsilon = True  # named in rlkit evaluate's protocol

    def __init__(self, q_net: nn.Module, n_actions: int, device: torch.device,
                 rng: np.random.Generator) -> None:
        self.q_net = q_net
        self.n_actions = n_actions
        self.device = device
        self.rng = rng

    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        return epsilon_greedy(self.q_net, np.asarray(obs), 0.0 if greedy else epsilon, self.rng,
                              self.n_actions, self.device)


def build_policy(cfg: Config, learner_state: dict[str, Any], observation_space: gym.Space,
                 action_space: gym.Space, device: torch.device, *, seed: int | None = None
                 ) -> DQNPolicy:
    """A checkpoint's epsilon-greedy policy: its online Q-network alone (EMA weights with
    ``train.eval_ema``), epsilon drawn from a generator seeded with ``seed``."""
    n_actions = discrete_actions(action_space, "DQN")
    q_net = _q_network(cfg.agent, observation_space, action_space)
    return DQNPolicy(load_acting_net(q_net, learner_state, "q", device), n_actions, device,
                     np.random.default_rng(seed))


class _DeviceBatch(TypedDict):
    """A replay batch on the learner's device (``weights``: importance weights, 1 if uniform)."""

    obs: Tensor
    next_obs: Tensor
    actions: Tensor
    rewards: Tensor
    discounts: Tensor
    weights: Tensor


class DQNLearner(LearnerBase):
    """Collects experience from ``env.num_envs`` envs into one replay buffer and trains on it.

    Per ``train_iteration``: one vector-env step (``num_envs`` agent steps), then every
    ``train_freq`` agent steps past ``learning_starts``, ``gradient_steps`` updates. Scalars
    are accumulated on the device and returned once every ``train.log_every`` agent steps
    (``LearnerBase``); ``update/*`` monitors come from ``UpdateStep``.

    Data-parallel (``dist`` with N ranks, see docs/distributed.md): every rank steps its own
    ``num_envs`` envs into its own replay buffer and gradients are averaged over ranks, so one
    update sees N x ``batch_size`` samples; ``env_steps`` and every schedule count global steps.
    """

    agent: DQNConfig
    eval_policy: DQNPolicy

    def __init__(self, cfg: Config, device: torch.device, logger: Logger,
                 dist: DistributedContext | None = None) -> None:
        super().__init__(cfg, device, logger, dist, accumulate=("loss", "q_mean", "grad_norm"))
        agent: DQNConfig = cfg.agent
        seed = cfg.train.seed
        own_seed = self.dist.rank_seed(seed)  # exploration and replay sampling differ per rank
        obs_space, action_space = self.envs.single_observation_space, self.envs.single_action_space
        self.n_actions = discrete_actions(action_space, "DQN")
        self.q = _q_network(agent, obs_space, action_space).to(device)
        self.dist.broadcast_module(self.q)
        self.target = copy.deepcopy(self.q).requires_grad_(False)

        # Convert the LR schedule's agent steps into optimizer updates (gradient_steps per round,
        # one round every train_freq agent steps after learning_starts).
        decay_steps = cfg.optim.lr_decay_steps or cfg.train.steps
        decay_updates = (decay_steps - agent.learning_starts) * agent.gradient_steps
        self._build_update(
            self.q, decay_updates=decay_updates // agent.train_freq,
            updates_per_log=cfg.train.log_every * agent.gradient_steps // agent.train_freq)
        self.eval_policy = DQNPolicy(self.acting_net, self.n_actions, device,
                                     np.random.default_rng(seed + 1))

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
        self.steps_per_iteration = self.num_envs * self.dist.world_size  # global agent steps
        self._can_sample = False
        self._last_epsilon = self.epsilon(0)
        self.next_round = agent.learning_starts
        self.next_target_sync = agent.target_update_steps
        self.redo_layers = recyclable_layers(self.q) if agent.redo_every else []
        self._last_recycled = 0

    # ------------------------------------------------------------------ experience + updates

    def _step(self) -> None:
        """One vector step into the replay buffer, then the updates and target syncs due."""
        self._last_epsilon = epsilon = self.epsilon(self.env_steps)
        actions = epsilon_greedy(self.q, self.obs, epsilon, self.rng, self.n_actions, self.device)
        next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        self.tracker.update(rewards, terminated, truncated, infos, autoreset=self.autoreset)
        # The buffer itself drops NEXT_STEP autoreset steps (an obs equal to the episode's final
        # next_obs right after its end).
        self.replay.add(self.obs, actions, rewards, next_obs, terminated, truncated)
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

    def _ready(self) -> bool:
        """Whether updates can start: every rank's buffer must hold a batch, since ranks update
        together (one all-reduce each); buffers only grow, so the answer is asked until yes."""
        if not self._can_sample:
            self._can_sample = not self.dist.any_true(len(self.replay) < self.agent.batch_size)
        return self._can_sample

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
        self._accumulate({"loss": out.loss.detach(), "q_mean": out.q_taken.mean(),
                          "grad_norm": stats.grad_norm})
        if agent.redo_every and self.update.updates % agent.redo_every == 0:
            self._recycle_dormant_units()

    def _recycle_dormant_units(self) -> None:
        """ReDo: score the units on a replay batch, then recycle the dormant ones; every rank
        decides on the scores averaged over ranks and draws the same new weights."""
        batch = self.replay.sample(self.agent.redo_batch_size, beta=self.beta(self.env_steps))
        obs = torch.as_tensor(batch.obs).to(self.device, non_blocking=True)
        activity = unit_activity(self.q, self.redo_layers, obs)
        recycled = recycle_dormant_units(
            self.redo_layers, activity, self.agent.redo_threshold, self.update.optimizer,
            seed=self.cfg.train.seed + self.update.updates,
            reduce=self._average_over_ranks if self.dist.is_distributed else None)
        self._last_recycled = sum(recycled.values())

    def _average_over_ranks(self, scores: list[Tensor]) -> list[Tensor]:
        total = self.dist.all_sum(torch.cat(scores).tolist())
        mean = torch.tensor(total, device=scores[0].device) / self.dist.world_size
        return list(mean.split([len(s) for s in scores]))

    @torch.no_grad()
    def _sync_target(self) -> None:
        """Hard copy (tau = 1, Mnih et al. 2015) or Polyak averaging (Lillicrap et al. 2016)."""
        online = list(self.q.parameters()) + list(self.q.buffers())
        target = list(self.target.parameters()) + list(self.target.buffers())
        if self.agent.tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, self.agent.tau)

    def _extra_scalars(self) -> dict[str, float]:
        scalars = {"train/epsilon": self._last_epsilon, "replay/size": float(len(self.replay)),
                   "train/per_beta": self.beta(self.env_steps)}
        if self.agent.redo_every:
            scalars["redo/recycled_units"] = float(self._last_recycled)
        return scalars

    # ------------------------------------------------------------------ checkpoint state

    def optional_state(self) -> dict[str, OptionalState]:
        """The replay buffer (``checkpoint.save_replay``; by default saved when under 2 GB)."""
        return {"replay": OptionalState(
            int(self.replay.nbytes),
            "last.pt holds no replay buffer (checkpoint.save_replay); the buffer refills from "
            "scratch before updates resume, so this is not an exact continuation")}

    def _state(self) -> dict[str, Any]:
        return {
            "q": self.q.state_dict(),
            "target": self.target.state_dict(),
            "next_round": self.next_round,
            "next_target_sync": self.next_target_sync,
            "rng": self.rng.bit_generator.state,
            "eval_rng": self.eval_policy.rng.bit_generator.state,
            "replay": self.replay.state_dict(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        """Without its replay buffer, refill ``learning_starts`` steps before updating again."""
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.next_round = int(state["next_round"])
        self.next_target_sync = int(state["next_target_sync"])
        self.rng.bit_generator.state = state["rng"]
        self.eval_policy.rng.bit_generator.state = state["eval_rng"]
        self._can_sample = False
        if state.get("replay") is not None:
            self.replay.load_state_dict(state["replay"])
        else:
            self.next_round = max(self.next_round, self.env_steps + self.agent.learning_starts)
