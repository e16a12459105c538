"""The interface between one algorithm (DQN, PAAC, PPO) and the shared training runner, and the
skeleton every learner is built on.

The runner (run directory, progress bar, TensorBoard, checkpoints, Ctrl-C, resume, periodic
evaluation) is algorithm-agnostic and drives the ``Learner`` protocol. ``LearnerBase`` implements
what is the same for every algorithm: the training envs and their episode bookkeeping, the
optimizer step (``UpdateStep``), the logging cadence and its device-side accumulators,
evaluation actions, checkpoint state and closing. An algorithm module subclasses it with its
network, its loss and its way of collecting experience: ``_step``, ``_state``/``_load_state``,
``_extra_scalars`` and, if it has state a checkpoint may leave out, ``optional_state``.

The on-policy actor-critics (PAAC, PPO) share more: ``ActorCriticLearner`` holds their network,
action sampling, env stepping into a rollout (``EnvRecord``), evaluation policy
(``ActorCriticPolicy``) and checkpoint state; each adds its rollout and its update.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import gymnasium as gym
import numpy as np
import torch

from agents.environments import capture_env_stream, make_train_envs, resume_env_stream
from agents.episodes import Episode, EpisodeTracker
from agents.networks import ActorCritic, sample_actions
from envs import array_shape
from rlkit.distributed import DistributedContext
from rlkit.optim import build_optimizer
from rlkit.update import UpdateStep

if TYPE_CHECKING:
    from agents.config import Config
    from agents.policy import Policy, PolicyBuilder
    from rlkit.logger import Logger


NetT = TypeVar("NetT", bound=torch.nn.Module)


def acting_weights(learner_state: dict[str, Any], key: str) -> dict[str, Any]:
    """The weights a checkpoint's policy plays with: the EMA of the trained weights when the run
    kept one (``train.eval_ema``; stored in the update state), else the trained ``key`` ones."""
    ema = (learner_state.get("update") or {}).get("ema")
    return ema["module"] if ema is not None else learner_state[key]


def load_acting_net(net: NetT, learner_state: dict[str, Any], key: str,
                    device: torch.device) -> NetT:
    """``net`` on ``device`` in eval mode with a checkpoint's acting weights (``acting_weights``):
    what a ``build_policy`` plays with."""
    net = net.to(device)
    net.load_state_dict(acting_weights(learner_state, key))
    return net.eval()


def discrete_actions(space: gym.Space, algo: str) -> int:
    """The number of actions of a discrete action space; ``ValueError`` for any other space."""
    if not isinstance(space, gym.spaces.Discrete):
        raise ValueError(f"{algo} needs a discrete action space, got {space}; pick another env")
    return int(space.n)


@dataclass(frozen=True)
class OptionalState:
    """An entry of a learner's ``state_dict`` that checkpoints may leave out (a replay buffer):
    ``checkpoint.save_replay`` decides, by default on its size."""

    nbytes: int
    """Its size now, in bytes."""
    note: str
    """What resuming without it means, said once when such a checkpoint is resumed."""


class Learner(Protocol):
    env_steps: int
    """Environment steps taken so far, summed over all envs (the unit of ``--steps``)."""
    update: UpdateStep
    """The learner's optimizer step: its ``diagnostics`` feed the run summary, its
    ``observe_score`` a reduce-on-plateau LR schedule."""
    acting_net: torch.nn.Module
    """The network evaluations play: the EMA copy with ``train.eval_ema``, else the trained one."""

    def train_iteration(self) -> dict[str, float]:
        """Collect experience and update (if due). Returns scalars to log: empty except when
        ``env_steps`` crosses a multiple of ``train.log_every`` (one host sync per log)."""
        ...

    def pop_episodes(self) -> list[Episode]:
        """Full games (unclipped score) finished since the last call."""
        ...

    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        """Actions for a batch of observations, for evaluation."""
        ...

    def optional_state(self) -> dict[str, OptionalState]:
        """The ``state_dict`` entries a checkpoint may leave out, by key (none for most)."""
        ...

    def state_dict(self, *, optional: bool = True) -> dict[str, Any]:
        """Everything needed to continue exactly; with ``optional=False`` the entries of
        ``optional_state()`` are stored as None."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (rebuilding an optional entry stored as None)."""
        ...

    def close(self) -> None:
        ...


class LearnerFactory(Protocol):
    """How the runner builds an algorithm's learner (its class): one rank of ``dist`` if given."""

    def __call__(
        self,
        cfg: Config,
        device: torch.device,
        logger: Logger,
        dist: DistributedContext | None = None,
    ) -> Learner: ...


class LearnerBase(ABC):
    """The ``Learner`` skeleton: ``cfg.env.num_envs`` training envs (reset, and their games
    tracked), step counters, the logging cadence, and per-update scalars accumulated on the
    device and read back once per log (one host sync).

    A subclass builds its network, then calls ``_build_update`` and sets ``eval_policy`` (the
    ``agents.policy.Policy`` that evaluations act with, on ``acting_net`` and a generator of its
    own, so evaluation never shifts training randomness).

    Data-parallel (``dist`` with N ranks, docs/distributed.md): each rank steps its own envs
    (seeded as envs ``r*n_e ..`` of an ``N*n_e``-env run); ``env_steps`` counts all ranks' steps.
    """

    eval_policy: Policy

    def __init__(self, cfg: Config, device: torch.device, logger: Logger,
                 dist: DistributedContext | None, accumulate: Sequence[str]) -> None:
        self.cfg = cfg
        self.agent = cfg.agent
        self.device = device
        self.num_envs = cfg.env.num_envs
        self.dist = dist or DistributedContext(device=device)
        self.envs = make_train_envs(cfg.env, self.dist.env_seed(cfg.train.seed, self.num_envs))
        self.tracker = EpisodeTracker(self.num_envs)
        obs, _ = self.envs.reset(seed=self.dist.env_seed(cfg.train.seed, self.num_envs))
        self.obs = self._keep_obs(obs)
        self.autoreset = np.zeros(self.num_envs, dtype=bool)
        self.env_steps = 0
        self.next_log = cfg.train.log_every
        self._logger = logger
        self._acc_keys = tuple(accumulate)
        self._reset_accumulators()

    def _build_update(self, net: torch.nn.Module, *, decay_updates: int,
                      updates_per_log: int) -> None:
        """The optimizer step for ``net`` (``optim`` section; gradients averaged over ranks),
        with the LR schedule spread over ``decay_updates`` updates and the update monitors run
        once per log. Sets ``update`` and ``acting_net``: the EMA of the weights with
        ``train.eval_ema`` (evaluations play it; training never does), else ``net``."""
        cfg = self.cfg
        self.update = UpdateStep(
            net, build_optimizer(net, cfg.optim),
            max_grad_norm=cfg.optim.max_grad_norm,
            lr_schedule=cfg.optim.lr_schedule_over(decay_updates),
            monitor_every=max(1, updates_per_log),
            logger=self._logger.with_x_axis(lambda: self.env_steps),  # one x-axis: agent steps
            grad_sync=self.dist.average_gradients if self.dist.is_distributed else None,
            max_nan_skips=cfg.optim.nan_skips, ema_decay=cfg.train.eval_ema,
        )
        self.acting_net = net if self.update.ema is None else self.update.ema.module

    # ------------------------------------------------------------------ the algorithm's part

    @abstractmethod
    def _step(self) -> None:
        """Collect experience (advancing ``env_steps``) and run the updates that fall due."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The algorithm's own checkpoint entries (networks, generators, counters, replay)."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore ``_state``'s entries; ``env_steps`` and ``next_log`` are already restored."""

    def _keep_obs(self, obs: np.ndarray) -> Any:
        """The envs' observations as the learner keeps them in ``obs`` (as they are; PAAC's
        on its device, where each is used)."""
        return obs

    def _extra_scalars(self) -> dict[str, float]:
        """Scalars of the algorithm to log beside the learning rate and the accumulated ones."""
        return {}

    def optional_state(self) -> dict[str, OptionalState]:
        return {}

    # ------------------------------------------------------------------ shared

    def train_iteration(self) -> dict[str, float]:
        """One ``_step``; mean scalars once every ``train.log_every`` agent steps."""
        self._step()
        if self.env_steps < self.next_log:
            return {}
        self.next_log += self.cfg.train.log_every
        return self._scalars()

    def _accumulate(self, values: dict[str, torch.Tensor]) -> None:
        """Add one update's scalars (device tensors: no host sync) to the running sums."""
        for key, value in values.items():
            self._acc[key] += value
        self._acc_updates += 1

    def _reset_accumulators(self) -> None:
        zero = torch.zeros((), device=self.device)
        self._acc = {key: zero.clone() for key in self._acc_keys}
        self._acc_updates = 0

    def _scalars(self) -> dict[str, float]:
        scalars = {"train/lr": self.update.lr, "train/updates": float(self.update.updates),
                   **self._extra_scalars()}
        if self._acc_updates:
            means = torch.stack(list(self._acc.values())).float() / self._acc_updates
            for key, value in zip(self._acc, means.tolist(), strict=True):  # one host sync
                scalars[f"train/{key}"] = value
        self._reset_accumulators()
        return scalars

    def pop_episodes(self) -> list[Episode]:
        return self.tracker.pop()

    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        """Evaluation actions from ``eval_policy`` (the EMA of the weights with
        ``train.eval_ema``; its own generator, so evaluation never shifts training)."""
        return self.eval_policy.act(obs, greedy=greedy, epsilon=epsilon)

    def state_dict(self, *, optional: bool = True) -> dict[str, Any]:
        state = {
            **self._state(),
            "update": self.update.state_dict(),  # update counter, optimizer, LR schedule, EMA
            "env_steps": self.env_steps,
            "next_log": self.next_log,
            **capture_env_stream(self.envs, _host(self.obs), self.autoreset, self.tracker),
        }
        if not optional:
            state.update(dict.fromkeys(self.optional_state()))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.update.load_state_dict(state["update"])
        self.env_steps = int(state["env_steps"])
        self.next_log = int(state["next_log"])
        self._load_state(state)
        self.tracker = EpisodeTracker(self.num_envs)
        obs, self.autoreset = resume_env_stream(
            self.envs, state, self.tracker,
            self.dist.env_seed(self.cfg.train.seed + self.env_steps, self.num_envs))
        self.obs = self._keep_obs(obs)
        self._reset_accumulators()

    def close(self) -> None:
        self.envs.close()


def seeded_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A generator of its own on ``device``, seeded (or from the OS with None)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class ActorCriticPolicy:
    """Acting from an ``agents.networks.ActorCritic`` (evaluation: from a checkpoint, or the
    learner's ``act``), sampling with its own ``generator``.

    Evaluation samples from the policy (the stochastic policy is what was trained);
    ``greedy=True`` takes its argmax instead. ``epsilon`` is accepted for the shared evaluation
    protocol and ignored: a stochastic policy explores by itself.
    """

    explores_with_epsilon = False  # named in rlkit evaluate's protocol

    def __init__(self, net: torch.nn.Module, device: torch.device,
                 generator: torch.Generator) -> None:
        self.net = net
        self.device = device
        self.generator = generator

    @torch.no_grad()
    def act(self, obs: np.ndarray, *, greedy: bool = False, epsilon: float = 0.0) -> np.ndarray:
        del epsilon
        logits, _ = self.net(torch.as_tensor(np.asarray(obs)).to(self.device, non_blocking=True))
        actions = logits.argmax(-1) if greedy else sample_actions(logits, self.generator)
        return actions.cpu().numpy()


NetworkFactory = Callable[[Any, gym.Space, gym.Space], torch.nn.Module]
"""``network(agent_config, observation_space, action_space)``: an actor-critic's network."""


def actor_critic_network(algo: str, *, image_default: str, init: Literal[
        "torch_uniform", "orthogonal"]) -> NetworkFactory:
    """The ``NetworkFactory`` of an actor-critic whose config has ``encoder`` and
    ``mlp_hidden``: an ``agents.networks.ActorCritic`` with ``image_default`` for Atari images
    and the ``init`` scheme; ``algo`` names the algorithm in the error for other action spaces."""

    def network(agent: Any, observation_space: gym.Space, action_space: gym.Space
                ) -> ActorCritic:
        return ActorCritic(array_shape(observation_space, "observation"),
                           discrete_actions(action_space, algo), encoder=agent.encoder,
                           mlp_hidden=agent.mlp_hidden, image_default=image_default, init=init)

    return network


def actor_critic_policy_builder(network: NetworkFactory) -> PolicyBuilder:
    """An actor-critic algorithm's ``build_policy`` (``agents.policy.PolicyBuilder``), given its
    ``network(agent, observation_space, action_space)``."""

    def build_policy(cfg: Config, learner_state: dict[str, Any], observation_space: gym.Space,
                     action_space: gym.Space, device: torch.device, *, seed: int | None = None
                     ) -> ActorCriticPolicy:
        """A checkpoint's sampling policy: the actor-critic alone (EMA weights with
        ``train.eval_ema``), sampling with a generator seeded with ``seed`` (from the OS if
        None)."""
        net = network(cfg.agent, observation_space, action_space)
        return ActorCriticPolicy(load_acting_net(net, learner_state, "net", device), device,
                                 seeded_generator(device, seed))

    return build_policy


@dataclass
class EnvRecord:
    """What the envs returned over ``T`` vector steps of ``n_e`` envs: ``(T, n_e)`` arrays."""

    rewards: np.ndarray
    """float32 rewards as the envs gave them."""
    terminated: np.ndarray
    """bool: the episode ended in a terminal state (no bootstrap)."""
    truncated: np.ndarray
    """bool: the episode was cut by a time limit (bootstrap from V(final obs))."""
    mask: np.ndarray
    """bool: False for NEXT_STEP autoreset steps, which are not transitions."""

    @classmethod
    def empty(cls, steps: int, num_envs: int) -> EnvRecord:
        shape = (steps, num_envs)
        return cls(np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=bool),
                   np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool))

    def to(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """``(rewards, terminated, truncated, mask)`` as tensors on ``device``."""
        return tuple(torch.from_numpy(a).to(device, non_blocking=True)
                     for a in (self.rewards, self.terminated, self.truncated, self.mask))


class ActorCriticLearner(LearnerBase):
    """``LearnerBase`` for on-policy actor-critics (PAAC, PPO): one network ``net`` built by the
    algorithm's ``network(agent, observation_space, action_space)``, updated
    ``updates_per_rollout`` times per rollout of ``rollout_steps`` steps of every env.

    Autoreset: gymnasium's NEXT_STEP autoreset makes the step after an episode end a reset step
    (reward 0, action ignored). ``autoreset`` remembers which envs ended on the previous step,
    across rollouts too; ``_play`` masks those steps out (``EnvRecord.mask``) and out of the
    episode tracker. At a truncation the step's observation is the real final one, so the value
    of the next step's input is the right bootstrap value.

    Resume: the state holds the network, the update step, counters, both sampling generators
    and, for in-process picklable envs (CartPole), the envs themselves, so that a resumed run
    continues exactly; emulators cannot be pickled and start new games seeded by the step count.

    Data-parallel (``dist`` with N ranks, docs/distributed.md): each rank owns envs
    ``r*n_e .. (r+1)*n_e - 1`` of an ``N*n_e``-env run and samples their actions from the same
    stream that run would (``_sample``), and gradients are averaged; ``env_steps`` counts all
    ranks' steps.
    """

    eval_policy: ActorCriticPolicy

    def __init__(self, cfg: Config, device: torch.device, logger: Logger,
                 dist: DistributedContext | None, accumulate: Sequence[str], *,
                 network: NetworkFactory, rollout_steps: int, updates_per_rollout: int = 1) -> None:
        super().__init__(cfg, device, logger, dist, accumulate)
        seed = cfg.train.seed
        self.total_envs = self.num_envs * self.dist.world_size
        with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG
            torch.manual_seed(seed)
            self.net = network(cfg.agent, self.envs.single_observation_space,
                               self.envs.single_action_space).to(device)
        self.dist.broadcast_module(self.net)

        steps_per_rollout = rollout_steps * self.total_envs
        rollouts = math.ceil((cfg.optim.lr_decay_steps or cfg.train.steps) / steps_per_rollout)
        self._build_update(
            self.net, decay_updates=rollouts * updates_per_rollout,
            updates_per_log=cfg.train.log_every // steps_per_rollout * updates_per_rollout)
        # Own generators: resume restores them exactly, and evaluation never shifts training.
        self.generator = seeded_generator(device, seed)
        self.eval_policy = ActorCriticPolicy(self.acting_net, device,
                                             seeded_generator(device, seed + 1))

    def _keep_obs(self, obs: np.ndarray) -> torch.Tensor:
        # uint8 pixels travel as bytes (4x less than float32); the encoder scales them on device.
        return torch.as_tensor(np.asarray(obs)).to(self.device, non_blocking=True)

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Actions for this rank's envs from the policy ``softmax(logits)``."""
        return sample_actions(logits, self.generator, total_rows=self.total_envs,
                              first_row=self.dist.rank * self.num_envs)

    def _play(self, record: EnvRecord, t: int, actions: torch.Tensor) -> None:
        """Step every env with ``actions`` and write what they returned into row ``t``."""
        # Reading the actions back is the one host sync per step.
        obs, reward, term, trunc, infos = self.envs.step(actions.cpu().numpy())
        self.tracker.update(reward, term, trunc, infos, autoreset=self.autoreset)
        record.rewards[t], record.terminated[t], record.truncated[t] = reward, term, trunc
        record.mask[t] = ~self.autoreset
        self.autoreset = np.logical_or(term, trunc)
        self.obs = self._keep_obs(obs)

    def _state(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "generator": self.generator.get_state(),
            "eval_generator": self.eval_policy.generator.get_state(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        evaluation = self.eval_policy.generator
        try:
            self.generator.set_state(state["generator"].cpu())
            evaluation.set_state(state["eval_generator"].cpu())
        except RuntimeError:  # saved on another device type (CPU and CUDA generators differ)
            self.generator.manual_seed(self.cfg.train.seed + self.env_steps)
            evaluation.manual_seed(self.cfg.train.seed + self.env_steps + 1)


def _host(obs: np.ndarray | torch.Tensor) -> np.ndarray:
    return obs.cpu().numpy() if isinstance(obs, torch.Tensor) else obs
