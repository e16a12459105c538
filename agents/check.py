"""``rlkit check CONFIG``: the sanity checks of the CS231n notes, run on a config's real learner.

Before a long run, in well under a minute on a CPU, the learner that ``rlkit train`` would build
(network, loss, optimizer, clipping, LR schedule and env) is probed on real experience: a replay
buffer filled by random play (DQN) or rollouts of the initial policy (PAAC, PPO). Each check
gives one line, PASS, WARN or FAIL, with the measured number, the expectation and what to
change:

1. initial values: the policy entropy (PAAC, PPO) against ``ln(number of actions)``; V or Q near
   0; the initial loss against its prediction for an ideal initialisation (outputs 0, uniform
   policy);
2. gradients: a float64 finite-difference check of the loss on a real batch
   (``rlkit.gradcheck``), and the gradient with respect to the network's outputs against the
   algorithm's formula (the semi-gradient: a critic that also learns through the advantage, or
   a TD target that is not held fixed, fails here, though its finite differences agree);
3. overfitting: the loss's regression part, targets held fixed, falls below 10% on a handful
   of real observations (rewards redrawn, so there is something to fit);
4. the update/weight ratio of K real updates per weight tensor against the ~1e-3 rule, once the
   optimizer's running statistics have forgotten their initial values (see ``warmup_steps``);
5. dead or saturated units after those updates (``rlkit.monitors.ActivationMonitor``);
6. throughput of env stepping and of the update, and the projected wall time of ``train.steps``.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import statistics
import sys
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import agents.dqn as dqn
import agents.paac as paac
import agents.ppo as ppo
from agents.algorithms import algorithm
from agents.config import Config
from agents.dqn import DQNLearner
from agents.paac import PAACLearner, Rollout
from agents.ppo import Batch, PPOLearner
from agents.runner import check_env_id, make_learner, seed_everything
from rlkit.device import resolve_device
from rlkit.gradcheck import gradcheck
from rlkit.logger import Logger
from rlkit.malloc import keep_freed_memory
from rlkit.monitors import (
    ActivationMonitor,
    UpdateRatioMonitor,
    UpdateRatioWarning,
)
from rlkit.sanity import chance_loss, overfit_tiny_batch
from rlkit.schedules import set_lr

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"

UPDATES = 20
"""K: real updates measured by the update-ratio check (each on its own real batch)."""
OVERFIT_STEPS = 500
"""Adam steps of the overfitting check at most (it stops once the batch is fitted)."""
OVERFIT_LR = 1e-3
"""Its Adam step size: 1e-2 (``overfit_tiny_batch``'s default) kills the ReLUs of the Atari
CNNs within a few steps, and their output collapses to the mean target."""
MAX_WARMUP = 2000
"""Cap on the optimizer-statistics warm-up (``warmup_steps``), to bound the check's time."""

RATIO_WARN = (1e-5, 3e-2)
"""Per-update ||dW|| / ||W|| outside this band warns: 100x below to 30x above the ~1e-3 rule.

The rule comes from supervised nets with clean gradients. RL's TD and policy gradients are
noisy, and normalised optimizers (RMSProp, Adam) shrink their steps by the noise
(``E[g] / sqrt(E[g^2])``), while small layers with Adam move by about
``lr * sqrt(3 * fan_in)`` of their ``U(+-1/sqrt(fan_in))`` weights. The published configs,
which learn, measure (per weight tensor, K = 20 updates): the Atari DQNs, which take exactly
their references' steps (tests/test_step_size.py), 1.4e-5 (Double DQN + PER, lr / 4) to
4e-4; the Atari PAACs 1.4e-5 (the original's on Pong, whose first rollouts carry no
advantage) to 4e-4; CartPole's 64-unit MLPs with Adam 1e-3..2e-3 up to 2.3e-2. Outside the
band: CartPole at 10x its tuned lr (4.7e-2 and 8.1e-2) and Pong's DQN with the old step-size
bug, 25x below its reference (about 2e-6 in its conv layers)."""
RATIO_FAIL = (1e-6, 0.3)
"""Beyond these the run is wasted: weights that move 1e-6 per update barely move in a run;
at 0.3 every update rewrites a third of them. An lr of 1e-7 lands below."""

MAX_HOURS = 48.0
"""A projected run longer than two days warns: a GPU or a smaller budget first."""

DEAD_WARN = 0.6
"""Warn when the K updates killed more than 60% of a layer's units alive at initialisation.

Measured on the published configs: up to 41% (Pong PAAC, the fully connected layer; the
frames of the first rollouts are alike, so a small shift of the biases turns units off for
all of them), 39% for CartPole's PAAC; 10x its lr kills 59%."""
DEAD_FAIL = 0.95
"""Fail when a layer is (nearly) all dead: its output is constant and nothing learns through it.

Absolute fractions at initialisation say little on Atari: the frames of one game are so alike
that ~40-50% of a fresh Nature or NIPS network's units are off for a whole batch of them."""


# ---------------------------------------------------------------------------------- the report


@dataclass
class CheckResult:
    """One line of the report."""

    name: str
    status: str
    measured: str
    expected: str
    advice: str = ""
    """What to change; empty when there is nothing to do."""
    data: dict[str, Any] = field(default_factory=dict)
    """The numbers behind the line, for ``--json``."""


@dataclass
class CheckReport:
    config: str
    algo: str
    results: list[CheckResult]

    @property
    def failed(self) -> bool:
        return any(r.status == FAIL for r in self.results)

    def table(self) -> str:
        """One line per check: name, status, measured value, expectation, what to change."""
        rows = [("check", "status", "measured", "expected", "what to change")]
        rows += [(r.name, r.status, r.measured, r.expected, r.advice or "-") for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
            for row in rows
        ]
        counts = {s: sum(r.status == s for r in self.results) for s in (PASS, WARN, FAIL)}
        verdict = ", ".join(f"{n} {s}" for s, n in counts.items())
        return "\n".join([*lines, f"rlkit check {self.config}: {verdict}"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "algo": self.algo,
            "failed": self.failed,
            "results": [asdict(r) for r in self.results],
        }


def _band(value: float, warn: tuple[float, float], fail: tuple[float, float]) -> str:
    if not (math.isfinite(value) and fail[0] <= value <= fail[1]):
        return FAIL
    return PASS if warn[0] <= value <= warn[1] else WARN


# ---------------------------------------------------------------------------------- probes


@dataclass
class LossParts:
    total: Tensor
    """The loss the learner minimises."""
    fit: Tensor
    """Its regression part (DQN: the TD loss; PAAC: the value term)."""


class Probe(ABC):
    """What the checks need from one learner: real batches, its loss and its real update.

    Subclasses compose the loss from the same public functions the learner calls
    (``dqn.td_loss``; ``paac.nstep_returns`` and ``paac.paac_loss``), looked up on their module
    at call time, so the check sees exactly what training would.
    """

    model: nn.Module
    env_seconds_per_step: float
    """Wall time of one agent step of env stepping (random actions, replay writes included)."""

    def __init__(self, learner: Any, cfg: Config) -> None:
        self.learner = learner
        self.cfg = cfg
        self.update = learner.update

    @abstractmethod
    def collect(self, count: int) -> list[Any]:
        """``count`` real batches: a replay sample (DQN) or a rollout (PAAC) each."""
        raise NotImplementedError

    @abstractmethod
    def train_step(self, batch: Any) -> float:
        """One real update (the learner's clipping, optimizer and schedule) on ``batch``;
        returns the seconds the update itself took."""
        raise NotImplementedError

    @abstractmethod
    def initial_checks(self, batch: Any) -> list[CheckResult]:
        """The initial-value lines: policy entropy (PAAC), V or Q near 0, the initial loss."""
        raise NotImplementedError

    @abstractmethod
    def output_gradient(self, batch: Any) -> CheckResult:
        """The loss's gradient with respect to the network's outputs against the algorithm's
        formula, both in float64."""
        raise NotImplementedError

    @abstractmethod
    def small(self, batch: Any) -> Any:
        """A handful of samples of ``batch`` (the gradient and overfitting checks)."""
        raise NotImplementedError

    @abstractmethod
    def frozen_loss(self, net: nn.Module, batch: Any) -> Callable[[nn.Module], LossParts]:
        """The loss on ``batch`` of a network with ``net``'s architecture, every quantity the
        loss detaches (TD targets, returns, advantages) held at its value for ``net``'s current
        weights, as autograd holds it (finite differences of the loss itself would move them)."""
        raise NotImplementedError

    @abstractmethod
    def projection(self, update_seconds: float) -> tuple[float, str]:
        """(projected seconds of ``train.steps``, how it was computed)."""
        raise NotImplementedError

    @abstractmethod
    def observations(self, batches: list[Any]) -> Tensor:
        """The observations of ``batches``, stacked (the dead-unit check's inputs)."""
        raise NotImplementedError

    def random_targets(self, batch: Any, seed: int) -> Any:
        """``batch`` with what its regression fits redrawn at random (the overfitting check):
        the rewards, from which DQN's TD targets and PAAC's returns are computed."""
        return _random_values(batch, "rewards", seed)


def _to64(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {
        k: (v.double() if v is not None and v.is_floating_point() else v) for k, v in batch.items()
    }


class DQNProbe(Probe):
    """Batches sampled from a replay buffer filled by random play, as before ``learning_starts``."""

    def __init__(self, learner: DQNLearner, cfg: Config) -> None:
        super().__init__(learner, cfg)
        self.model = learner.q
        self.agent = learner.agent
        fill = min(max(1000, 8 * self.agent.batch_size), self.agent.buffer_size)
        saved_round = learner.next_round
        learner.next_round = sys.maxsize  # no updates while the buffer fills
        start = time.perf_counter()
        while len(learner.replay) < fill:
            learner.train_iteration()
        self.env_seconds_per_step = (time.perf_counter() - start) / max(1, learner.env_steps)
        learner.next_round = saved_round
        obs = torch.as_tensor(learner.obs).to(learner.device)
        self.act_seconds = _timed(lambda: learner.q(obs), repeat=5)

    def collect(self, count: int) -> list[dict[str, Tensor]]:
        learner = self.learner
        out, start = [], time.perf_counter()
        for _ in range(count):
            sample = learner.replay.sample(
                self.agent.batch_size, beta=learner.beta(learner.env_steps)
            )
            out.append(learner._batch_to_device(sample))
        self.sample_seconds = (time.perf_counter() - start) / count
        return out

    def _td(
        self,
        q_values: Tensor,
        next_q_target: Tensor,
        next_q_online: Tensor | None,
        b: dict[str, Tensor],
    ) -> dqn.TDLoss:
        agent = self.agent
        return dqn.td_loss(
            q_values,
            b["actions"],
            b["rewards"],
            b["discounts"],
            next_q_target,
            next_q_online,
            b["weights"],
            double=agent.double,
            loss=agent.loss,
            huber_delta=agent.huber_delta,
        )

    def loss(self, b: dict[str, Tensor]) -> Tensor:
        """The learner's loss on ``b`` (``DQNLearner._learn``: online Q, target net's Q')."""
        q_values = self.model(b["obs"])
        with torch.no_grad():
            next_q_target = self.learner.target(b["next_obs"])
            next_q_online = self.model(b["next_obs"]) if self.agent.double else None
        return self._td(q_values, next_q_target, next_q_online, b).loss

    def train_step(self, batch: dict[str, Tensor]) -> float:
        start = time.perf_counter()
        self.update.update(self.loss(batch))
        return time.perf_counter() - start + self.sample_seconds

    def small(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        keep = _first_occurrences(batch["obs"])[:8]
        return {k: (v[keep] if v is not None else None) for k, v in batch.items()}

    def frozen_loss(self, net: nn.Module, b: dict[str, Tensor]) -> Callable[[nn.Module], LossParts]:
        target = copy.deepcopy(self.learner.target).to(next(net.parameters()).dtype)
        with torch.no_grad():
            next_q_target = target(b["next_obs"])
            next_q_online = net(b["next_obs"]) if self.agent.double else None

        def loss(model: nn.Module) -> LossParts:
            td = self._td(model(b["obs"]), next_q_target, next_q_online, b).loss
            return LossParts(td, td)

        return loss

    def observations(self, batches: list[dict[str, Tensor]]) -> Tensor:
        return torch.cat([b["obs"] for b in batches])

    def initial_checks(self, batch: dict[str, Tensor]) -> list[CheckResult]:
        with torch.no_grad():
            q = self.model(batch["obs"])
            actual = float(self.loss(batch))
        return [
            _outputs_near_zero("initial Q", q, _reward_unit(batch["rewards"])),
            self._initial_loss(batch, actual),
        ]

    def _initial_loss(self, b: dict[str, Tensor], actual: float) -> CheckResult:
        """With Q = 0 everywhere the target is the n-step reward sum ``r``, so the loss is
        ``mean(w * l(r))``, l = Huber (or square) of the error ``0 - r``."""
        agent = self.agent
        r = b["rewards"].double()
        if agent.loss == "huber":
            d = agent.huber_delta
            per = torch.where(r.abs() <= d, 0.5 * r * r, d * (r.abs() - 0.5 * d))
            unit = 0.5 if d >= 1 else d * (1 - 0.5 * d)  # the loss of an error of 1
        else:
            per, unit = r * r, 1.0
        w = b["weights"].double()
        predicted = float((w * per).mean())
        return _compare_loss(actual, predicted, unit, f"mean(w * {agent.loss}(r)) with Q = 0")

    def output_gradient(self, b: dict[str, Tensor]) -> CheckResult:
        """dL/dQ(s, .) must be ``w * l'(Q(s, a) - y) / B`` at the taken action and 0 elsewhere:
        the target y is a constant (a semi-gradient)."""
        agent = self.agent
        b = _to64(b)
        with torch.no_grad():
            q_values = self.model(b["obs"]).double()
            next_q_target = self.learner.target(b["next_obs"]).double()
            next_q_online = self.model(b["next_obs"]).double() if agent.double else None
        q = q_values.clone().requires_grad_(True)
        out = self._td(q, next_q_target, next_q_online, b)
        (grad,) = torch.autograd.grad(out.loss, q)
        err = -out.td_error  # Q(s, a) - y
        if agent.loss == "huber":
            slope = err.clamp(-agent.huber_delta, agent.huber_delta)
        else:
            slope = 2 * err
        w = b["weights"]
        expected = torch.zeros_like(q_values)
        expected.scatter_(1, b["actions"].long().unsqueeze(1), (w * slope / len(err)).unsqueeze(1))
        rel = _rel(grad, expected)
        return _formula_result(
            "TD-loss gradient",
            rel,
            "dL/dQ = w*l'(Q(s,a)-y)/B at a, 0 elsewhere (y held fixed)",
            "the loss differs from the TD loss: check the target is computed "
            "without gradient and the loss is a batch mean",
        )

    def projection(self, update_seconds: float) -> tuple[float, str]:
        agent, steps = self.agent, self.cfg.train.steps
        learning = max(0, steps - agent.learning_starts)
        updates = learning * agent.gradient_steps / agent.train_freq
        vector_steps = learning / self.cfg.env.num_envs
        seconds = (
            steps * self.env_seconds_per_step
            + vector_steps * self.act_seconds
            + updates * update_seconds
        )
        how = (
            f"{steps:,} steps at {1 / self.env_seconds_per_step:,.0f} env steps/s, "
            f"{updates:,.0f} updates at {update_seconds * 1e3:.1f} ms"
        )
        return seconds, how


class PAACProbe(Probe):
    """Batches are real rollouts of the initial policy (``learner.collect``), their observations
    recorded so the loss can be evaluated again after the weights change."""

    def __init__(self, learner: PAACLearner, cfg: Config) -> None:
        super().__init__(learner, cfg)
        self.model = learner.net
        self.agent = learner.agent
        self.env_seconds_per_step = 0.0

    def collect(self, count: int) -> list[dict[str, Tensor]]:
        learner = self.learner
        seen: list[Tensor] = []
        hook = learner.net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
        out, start, steps = [], time.perf_counter(), learner.env_steps
        try:
            for _ in range(count):
                seen.clear()
                rollout = learner.collect()  # t_max acting forwards, then the bootstrap one
                out.append(
                    {
                        "obs": torch.stack(seen),
                        "actions": rollout.actions,
                        "rewards": rollout.rewards,
                        "terminated": rollout.terminated,
                        "truncated": rollout.truncated,
                        "mask": rollout.mask,
                    }
                )
        finally:
            hook.remove()
        self.env_seconds_per_step = (time.perf_counter() - start) / (learner.env_steps - steps)
        return out

    def rollout(self, net: nn.Module, b: dict[str, Tensor]) -> Rollout:
        t_max, n_e = b["actions"].shape
        logits, values = net(b["obs"][:t_max].flatten(0, 1))
        with torch.no_grad():
            bootstrap = net(b["obs"][t_max])[1]
        return Rollout(
            logits.view(t_max, n_e, -1),
            values.view(t_max, n_e),
            b["actions"],
            b["rewards"],
            b["terminated"],
            b["truncated"],
            b["mask"],
            bootstrap,
        )

    def _returns(self, values: Tensor, bootstrap: Tensor, b: dict[str, Tensor]) -> Tensor:
        next_values = torch.cat([values[1:].detach(), bootstrap.unsqueeze(0)])
        return paac.nstep_returns(
            b["rewards"].to(values.dtype),
            b["terminated"],
            b["truncated"],
            next_values,
            self.agent.gamma,
        )

    def _paac(
        self, logits: Tensor, values: Tensor, bootstrap: Tensor, b: dict[str, Tensor]
    ) -> paac.PAACLoss:
        returns = self._returns(values, bootstrap, b)
        return paac.paac_loss(
            logits,
            values,
            b["actions"],
            returns,
            entropy_coef=self.agent.entropy_coef,
            value_coef=self.agent.value_coef,
            mask=b["mask"],
        )

    def train_step(self, b: dict[str, Tensor]) -> float:
        with self.update.capture_activations():
            rollout = self.rollout(self.model, b)
        start = time.perf_counter()
        self.learner.learn(rollout)
        return time.perf_counter() - start

    def small(self, b: dict[str, Tensor]) -> dict[str, Tensor]:
        small = {k: v[:, :2] for k, v in b.items()}
        t_max = small["actions"].shape[0]
        distinct = torch.zeros(small["mask"].numel(), dtype=torch.bool, device=b["mask"].device)
        distinct[_first_occurrences(small["obs"][:t_max].flatten(0, 1))] = True
        return {**small, "mask": small["mask"] & distinct.view_as(small["mask"])}

    def frozen_loss(self, net: nn.Module, b: dict[str, Tensor]) -> Callable[[nn.Module], LossParts]:
        with torch.no_grad():
            r = self.rollout(net, b)
            returns = self._returns(r.values, r.bootstrap, b)
            advantages = returns - r.values
        t_max, n_e = b["actions"].shape
        agent = self.agent

        def loss(model: nn.Module) -> LossParts:
            logits, values = model(b["obs"][:t_max].flatten(0, 1))
            logits, values = logits.view(t_max, n_e, -1), values.view(t_max, n_e)
            total = paac.paac_loss(
                logits,
                values,
                b["actions"],
                returns,
                entropy_coef=agent.entropy_coef,
                value_coef=agent.value_coef,
                mask=b["mask"],
                advantages=advantages,
            ).total
            # With zero advantages and no entropy bonus only the value term is left.
            fit = paac.paac_loss(
                logits,
                values,
                b["actions"],
                returns,
                entropy_coef=0.0,
                value_coef=agent.value_coef,
                mask=b["mask"],
                advantages=torch.zeros_like(advantages),
            ).total
            return LossParts(total, fit)

        return loss

    def observations(self, batches: list[dict[str, Tensor]]) -> Tensor:
        return torch.cat([b["obs"].flatten(0, 1) for b in batches])

    def initial_checks(self, b: dict[str, Tensor]) -> list[CheckResult]:
        with torch.no_grad():
            r = self.rollout(self.model, b)
            actual = float(self._paac(r.logits, r.values, r.bootstrap, b).total)
        n_actions = r.logits.shape[-1]
        log_p = F.log_softmax(r.logits.double(), -1)
        entropy = float(-(log_p.exp() * log_p).sum(-1).mean())
        return [
            _entropy_result(entropy, n_actions),
            _outputs_near_zero("initial V", r.values, _reward_unit(b["rewards"])),
            self._initial_loss(b, actual, n_actions),
        ]

    def _initial_loss(self, b: dict[str, Tensor], actual: float, n_actions: int) -> CheckResult:
        """An ideal initial network (uniform policy, V = 0) gives, per real transition,
        ``-log pi(a) = H = ln A`` and advantage = return ``R`` (bootstrapped from 0), so the loss
        is ``sum_t mean_e w * (ln A * R - entropy_coef * ln A + value_coef * R^2)``. The policy
        term is 0 in expectation only for its gradient, not for its value: ``ln A * E[R]``."""
        agent = self.agent
        zero = torch.zeros_like(b["rewards"], dtype=torch.float64)
        returns = paac.nstep_returns(
            b["rewards"].double(), b["terminated"], b["truncated"], zero, agent.gamma
        )
        w = b["mask"].double()
        ln_a = math.log(n_actions)
        per = ln_a * returns - agent.entropy_coef * ln_a + agent.value_coef * returns**2
        predicted = float((w * per).sum() / w.shape[1])
        unit = float(w.sum() / w.shape[1]) * (ln_a + agent.value_coef)
        return _compare_loss(
            actual, predicted, unit, "sum_t mean_e (lnA*R - b*lnA + c*R^2) with pi uniform, V = 0"
        )

    def output_gradient(self, b: dict[str, Tensor]) -> CheckResult:
        """The critic may learn only from its own term: dL/dV = 2 c (V - R) w / n_e; the actor's
        gradient is dL/dlogits = w / n_e * ((pi - onehot(a)) * A + b * pi * (log pi + H))."""
        agent = self.agent
        b = _to64(b)
        with torch.no_grad():
            r = self.rollout(self.model, b)
        logits = r.logits.double().requires_grad_(True)
        values = r.values.double().requires_grad_(True)
        bootstrap = r.bootstrap.double()
        out = self._paac(logits, values, bootstrap, b)
        g_logits, g_values = torch.autograd.grad(out.total, (logits, values))
        with torch.no_grad():
            returns = self._returns(values, bootstrap, b)
            w, n_e = b["mask"].double(), values.shape[1]
            advantage = returns - values
            log_pi = F.log_softmax(logits, -1)
            pi = log_pi.exp()
            entropy = -(pi * log_pi).sum(-1, keepdim=True)
            onehot = F.one_hot(b["actions"].long(), logits.shape[-1]).double()
            want_v = 2 * agent.value_coef * (values - returns) * w / n_e
            want_logits = (w / n_e).unsqueeze(-1) * (
                (pi - onehot) * advantage.unsqueeze(-1)
                + agent.entropy_coef * pi * (log_pi + entropy)
            )
        return _actor_critic_result(
            _rel(g_values, want_v),
            _rel(g_logits, want_logits),
            "dL/dV = 2c(V-R)w/n_e (advantage detached); dL/dlogits = w/n_e((pi-onehot)A"
            "+b*pi(log pi+H))",
            "the critic's gradient differs from value_coef * d(R-V)^2: detach the advantage "
            "in the policy term",
            "the policy gradient differs from (pi - onehot(a)) * A - entropy_coef * dH",
        )

    def projection(self, update_seconds: float) -> tuple[float, str]:
        updates = self.cfg.train.steps / (self.agent.t_max * self.learner.total_envs)
        return _on_policy_projection(self, updates, update_seconds)


class PPOProbe(Probe):
    """Batches are the minibatches of real rollouts of the initial policy, cut as the learner
    cuts them (``learner.collect``, then the first epoch of ``learner.minibatches``): each holds
    its observations and the rollout's constants (old log-probabilities and values, advantages,
    returns), so the loss can be evaluated again after the weights change. One batch is one
    optimizer update, the unit of the update/weight ratio."""

    def __init__(self, learner: PPOLearner, cfg: Config) -> None:
        super().__init__(learner, cfg)
        self.model = learner.net
        self.agent = learner.agent
        self.env_seconds_per_step = 0.0
        self.reward_unit = 1.0

    def collect(self, count: int) -> list[dict[str, Tensor]]:
        learner = self.learner
        out: list[dict[str, Tensor]] = []
        start, steps = time.perf_counter(), learner.env_steps
        while len(out) < count:
            rollout = learner.collect()
            self.reward_unit = max(self.reward_unit, _reward_unit(rollout.rewards[rollout.mask]))
            first_epoch = itertools.islice(learner.minibatches(rollout), self.agent.num_minibatches)
            out += [batch._asdict() for batch in first_epoch]
        self.env_seconds_per_step = (time.perf_counter() - start) / (learner.env_steps - steps)
        return out[:count]

    def _ppo(
        self,
        logits: Tensor,
        values: Tensor,
        b: dict[str, Tensor],
        *,
        entropy_coef: float | None = None,
        value_clip: bool = True,
    ) -> ppo.PPOLoss:
        agent = self.agent
        return ppo.ppo_loss(
            logits,
            values,
            b["actions"],
            b["log_probs"],
            b["values"],
            b["advantages"],
            b["returns"],
            clip_range=self.learner.clip_range,
            entropy_coef=agent.entropy_coef if entropy_coef is None else entropy_coef,
            value_coef=agent.value_coef,
            value_clip_range=agent.value_clip_range if value_clip else None,
            normalize_advantages=agent.normalize_advantages,
        )

    def train_step(self, b: dict[str, Tensor]) -> float:
        start = time.perf_counter()
        self.learner.learn_minibatch(Batch(**b))
        return time.perf_counter() - start

    def small(self, b: dict[str, Tensor]) -> dict[str, Tensor]:
        keep = _first_occurrences(b["obs"])[:8]
        return {k: v[keep] for k, v in b.items()}

    def frozen_loss(self, net: nn.Module, b: dict[str, Tensor]) -> Callable[[nn.Module], LossParts]:
        # Everything the loss takes from the rollout is a constant of the batch already.
        def loss(model: nn.Module) -> LossParts:
            logits, values = model(b["obs"])
            total = self._ppo(logits, values, b).total
            # With zero advantages and no entropy bonus only the value term is left; without
            # value clipping, which bounds how far one rollout moves V, not what V can fit.
            still = {**b, "advantages": torch.zeros_like(b["advantages"])}
            fit = self._ppo(logits, values, still, entropy_coef=0.0, value_clip=False).total
            return LossParts(total, fit)

        return loss

    def random_targets(self, batch: dict[str, Tensor], seed: int) -> dict[str, Tensor]:
        """The value targets (returns) redrawn: they are constants of a PPO batch."""
        return _random_values(batch, "returns", seed)

    def observations(self, batches: list[dict[str, Tensor]]) -> Tensor:
        return torch.cat([b["obs"] for b in batches])

    def initial_checks(self, b: dict[str, Tensor]) -> list[CheckResult]:
        with torch.no_grad():
            logits, values = self.model(b["obs"])
            actual = float(self._ppo(logits, values, b).total)
        n_actions = logits.shape[-1]
        log_p = F.log_softmax(logits.double(), -1)
        entropy = float(-(log_p.exp() * log_p).sum(-1).mean())
        return [
            _entropy_result(entropy, n_actions),
            _outputs_near_zero("initial V", values, self.reward_unit),
            self._initial_loss(b, actual, n_actions),
        ]

    def _initial_loss(self, b: dict[str, Tensor], actual: float, n_actions: int) -> CheckResult:
        """With the acting policy (ratio 1), a uniform policy and V = 0: the surrogate is
        ``-mean(A)`` (0 with normalised advantages), the value term ``0.5 * mean(R^2)`` and the
        entropy ``ln A``, so the loss is ``-mean(A) + c1 * 0.5 * mean(R^2) - c2 * ln A``."""
        agent = self.agent
        advantages, returns = b["advantages"].double(), b["returns"].double()
        policy = 0.0 if agent.normalize_advantages else -float(advantages.mean())
        ln_a = math.log(n_actions)
        value = 0.5 * float(returns.pow(2).mean())
        predicted = policy + agent.value_coef * value - agent.entropy_coef * ln_a
        unit = 1.0 + agent.value_coef * (self.reward_unit + 0.5)
        return _compare_loss(
            actual, predicted, unit, "-mean(A) + c1*0.5*mean(R^2) - c2*lnA with pi uniform, V = 0"
        )

    def output_gradient(self, b: dict[str, Tensor]) -> CheckResult:
        """The critic may learn only from its own term: dL/dV = c1 (V - R) / B; the actor's
        gradient is dL/dlogits = ((pi - onehot(a)) * ratio * A' + c2 * pi * (log pi + H)) / B
        where the surrogate is not clipped, A' the (normalised) advantage."""
        agent = self.agent
        b = _to64(b)
        with torch.no_grad():
            logits, values = (x.double() for x in self.model(b["obs"].to(b["obs"].device)))
        logits.requires_grad_(True)
        values.requires_grad_(True)
        out = self._ppo(logits, values, b)
        g_logits, g_values = torch.autograd.grad(out.total, (logits, values))
        with torch.no_grad():
            n = values.shape[0]
            log_pi = F.log_softmax(logits, -1)
            pi = log_pi.exp()
            entropy = -(pi * log_pi).sum(-1, keepdim=True)
            onehot = F.one_hot(b["actions"].long(), logits.shape[-1]).double()
            ratio = (
                log_pi.gather(-1, b["actions"].long().unsqueeze(-1)).squeeze(-1) - b["log_probs"]
            ).exp()
            adv = b["advantages"]
            if agent.normalize_advantages:
                adv = (adv - adv.mean()) / (adv.std(correction=0) + 1e-8)
            eps = self.learner.clip_range
            clipped = ((adv > 0) & (ratio > 1 + eps)) | ((adv < 0) & (ratio < 1 - eps))
            live = torch.where(clipped, 0.0, ratio * adv)
            want_v = agent.value_coef * (values - b["returns"]) / n
            want_logits = (
                (pi - onehot) * live.unsqueeze(-1) + agent.entropy_coef * pi * (log_pi + entropy)
            ) / n
        return _actor_critic_result(
            _rel(g_values, want_v),
            _rel(g_logits, want_logits),
            "dL/dV = c1(V-R)/B (returns fixed); dL/dlogits = ((pi-onehot)*ratio*A"
            "+c2*pi(log pi+H))/B unclipped",
            "the critic's gradient differs from value_coef * d 0.5(V-R)^2: hold the returns "
            "and the advantages fixed",
            "the policy gradient differs from the clipped surrogate's minus the entropy's",
        )

    def projection(self, update_seconds: float) -> tuple[float, str]:
        agent = self.agent
        rollouts = self.cfg.train.steps / (agent.n_steps * self.learner.total_envs)
        updates = rollouts * agent.n_epochs * agent.num_minibatches
        return _on_policy_projection(self, updates, update_seconds)


# ---------------------------------------------------------------------------------- helpers


def _actor_critic_result(
    critic: float, actor: float, expected: str, critic_advice: str, actor_advice: str
) -> CheckResult:
    """The actor-critic gradient line: the worse of the critic's and the actor's relative
    errors, with the advice for the worse one."""
    result = _formula_result(
        "actor-critic gradient",
        max(critic, actor),
        expected,
        critic_advice if critic > actor else actor_advice,
    )
    result.data.update(critic=critic, actor=actor)
    return result


def _on_policy_projection(probe: Probe, updates: float, update_seconds: float) -> tuple[float, str]:
    """Acting (env steps and forward passes, measured together) plus ``updates`` updates."""
    steps = probe.cfg.train.steps
    seconds = steps * probe.env_seconds_per_step + updates * update_seconds
    how = (
        f"{steps:,} steps at {1 / probe.env_seconds_per_step:,.0f} steps/s acting, "
        f"{updates:,.0f} updates at {update_seconds * 1e3:.1f} ms"
    )
    return seconds, how


def _timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``fn()`` (no gradient)."""
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _count(batch: dict[str, Tensor]) -> int:
    """Samples in a batch: DQN's rows, or PAAC's unmasked transitions."""
    return int(batch["mask"].sum()) if "mask" in batch else len(batch["actions"])


def _first_occurrences(obs: Tensor) -> Tensor:
    """Indices of the first copy of each distinct observation, in order. Fitting needs them:
    Pong's opening frames repeat, and one frame cannot fit two different targets."""
    _, inverse = torch.unique(obs.flatten(1), dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(inverse), device=obs.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(inverse), device=obs.device), "amin")
    return first.sort().values


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _reward_unit(rewards: Tensor) -> float:
    """The scale outputs are judged against: the largest reward seen, at least 1."""
    return max(1.0, float(rewards.abs().max()))


def _outputs_near_zero(name: str, outputs: Tensor, unit: float) -> CheckResult:
    """Outputs near 0 at init: a large initial V or Q is a bias the first updates must unlearn,
    and it dominates the first TD errors or advantages."""
    rms = float(outputs.double().pow(2).mean().sqrt())
    rel = rms / unit
    status = _band(rel, (0.0, 0.5), (0.0, 5.0))
    return CheckResult(
        name,
        status,
        f"rms {rms:.3g}",
        f"< 0.5 x reward scale {unit:.3g}",
        ""
        if status == PASS
        else "shrink the output layer's initial weights (e.g. scale them by 0.01)",
        {"rms": rms, "unit": unit},
    )


def _entropy_result(entropy: float, n_actions: int) -> CheckResult:
    """A freshly initialised softmax policy is near uniform: entropy ~ ln A (the chance loss of
    the CS231n notes); half of that is a policy that barely explores from the start."""
    expected = chance_loss(n_actions)
    ratio = entropy / expected
    status = _band(ratio, (0.9, 1.0 + 1e-9), (0.5, 1.0 + 1e-9))
    return CheckResult(
        "initial entropy",
        status,
        f"{entropy:.3f}",
        f"ln({n_actions}) = {expected:.3f} (>= 90%)",
        ""
        if status == PASS
        else "initial logits too large: shrink the policy layer's initial weights",
        {"entropy": entropy, "ln_actions": expected},
    )


def _compare_loss(actual: float, predicted: float, unit: float, formula: str) -> CheckResult:
    """|actual - predicted| is judged in units of ``unit``: the loss change one reward unit of
    error in every output would make; outputs near 0 (the check above) keep it well below."""
    off = abs(actual - predicted) / max(abs(predicted), unit)
    status = _band(off, (0.0, 0.25), (0.0, 1.0))
    return CheckResult(
        "initial loss",
        status,
        f"{actual:.4g}",
        f"{predicted:.4g} = {formula}",
        ""
        if status == PASS
        else "the loss does not match an ideal init: check the output scale (above) "
        "and the loss's reduction (batch mean) and coefficients",
        {"loss": actual, "predicted": predicted, "off": off},
    )


def _formula_result(name: str, rel: float, expected: str, advice: str) -> CheckResult:
    """Both sides are computed in float64 from the same outputs: they agree to rounding."""
    status = PASS if rel < 1e-6 else FAIL
    return CheckResult(
        name,
        status,
        f"rel. error {rel:.1e}",
        expected,
        "" if status == PASS else advice,
        {"rel_error": rel},
    )


# ---------------------------------------------------------------------------------- checks


def check_gradients(probe: Probe, batch: Any) -> CheckResult:
    """Centred differences in float64 on a few samples and parameters (CS231n notes)."""
    net = copy.deepcopy(probe.model).double()
    loss = probe.frozen_loss(net, _to64(probe.small(batch)))
    report = gradcheck(lambda: loss(net).total, net, coords_per_tensor=4, h=1e-6)
    rechecked = report.unchecked
    if report.passed and rechecked:
        # Every coordinate tried sat on a kink: units exactly at a ReLU's 0, as zero biases
        # (PPO's orthogonal init) give on all-zero input patches (MinAtar's sparse frames).
        # Check those tensors again a small random step away from the initial weights (the
        # notes advise checking after a short burn-in anyway).
        _nudge(net, probe.cfg.train.seed)
        named = dict(net.named_parameters())
        again = gradcheck(
            lambda: loss(net).total, {n: named[n] for n in rechecked}, coords_per_tensor=4, h=1e-6
        )
        report.tensors.update(again.tensors)
    worst_name, worst = max(report.worst.items(), key=lambda kv: kv[1])
    status = PASS if report.passed and not report.unchecked else FAIL
    checked = sum(t.checked for t in report.tensors.values())
    off_kink = f", {', '.join(rechecked)} off a kink" if rechecked else ""
    return CheckResult(
        "gradient check",
        status,
        f"worst rel. error {worst:.1e} ({worst_name}; {checked} coordinates{off_kink})",
        f"<= {report.tolerance:g} (float64 centred differences)",
        ""
        if status == PASS
        else "autograd disagrees with the loss's finite differences: a "
        "non-differentiable or in-place operation in the network or loss",
        {
            "worst": report.worst,
            "kinks_skipped": report.kinks_skipped,
            "unchecked": report.unchecked,
            "rechecked_off_kink": rechecked,
        },
    )


@torch.no_grad()
def _nudge(net: nn.Module, seed: int) -> None:
    """Move every parameter by Gaussian noise of 1e-3 times its RMS (1e-3 for all-zero ones)."""
    generator = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        rms = float(p.pow(2).mean().sqrt())
        noise = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        p.add_(noise * 1e-3 * (rms if rms > 0 else 1.0))


def warmup_steps(optimizer: torch.optim.Optimizer) -> int:
    """Optimizer steps after which its running averages have forgotten their start values.

    RMSProp's mean square starts at ``initial_accumulator`` (TF1: 1) and decays as
    ``alpha**n``; until it is far below ``eps`` plus the squared gradients, the steps are tiny
    (measured: Dopamine's Pong DQN moves 3e-7..2e-6 of its weights per update over its first 20
    updates, 6e-5..4e-4 once warm; Baselines' A2C settings likewise). The weight of the start
    value must fall below 10% of ``eps`` (from 0: below 1%). Adam's bias correction needs
    no warm-up; momentum forgets as ``momentum**n``.
    """
    steps = 0
    for group in optimizer.param_groups:
        alpha = group.get("alpha")
        if alpha:
            start = group.get("initial_accumulator", 0.0)
            floor = 0.1 * group["eps"] / start if start > 0 else 0.01
            steps = max(steps, math.ceil(math.log(min(floor, 0.5)) / math.log(alpha)))
        momentum = group.get("momentum", 0.0)
        if momentum:
            steps = max(steps, math.ceil(math.log(0.01) / math.log(momentum)))
    return min(steps, MAX_WARMUP)


def warm_up(probe: Probe, batches: list[Any], steps: int) -> None:
    """Feed the optimizer ``steps`` steps of real gradients (cycling over ``batches``, taken at
    the initial weights, clipped by the learner's own update) with the learning rate at 0: its
    statistics reach their working values and the weights do not move."""
    optimizer, params = probe.update.optimizer, probe.update.params
    lrs = [group["lr"] for group in optimizer.param_groups]
    grads = []
    for batch in batches:
        set_lr(optimizer, 0.0)
        probe.train_step(batch)
        grads.append([None if p.grad is None else p.grad.clone() for p in params])
    set_lr(optimizer, 0.0)
    for i in range(max(0, steps - len(batches))):
        for p, g in zip(params, grads[i % len(grads)], strict=True):
            p.grad = g
        optimizer.step()
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr


def check_update_ratio(probe: Probe, batches: list[Any], warmup: int) -> tuple[CheckResult, float]:
    """Median ||dW|| / ||W|| over K real updates, per weight tensor (biases start at 0 or near
    it: their ratio means nothing); returns the line and the median update time."""
    monitor = UpdateRatioMonitor(probe.update.named_params)
    ratios: dict[str, list[float]] = {}
    times = []
    for batch in batches:
        before = monitor.snapshot()
        times.append(probe.train_step(batch))
        for name, value in monitor.measure(before).items():
            ratios.setdefault(name, []).append(value)
    weights = {n for n, p in probe.update.named_params if p.ndim >= 2}
    median = {n: statistics.median(v) for n, v in ratios.items() if n in weights}
    verdicts = {n: _band(r, RATIO_WARN, RATIO_FAIL) for n, r in median.items()}
    status = FAIL if FAIL in verdicts.values() else WARN if WARN in verdicts.values() else PASS
    lo, hi = min(median.values()), max(median.values())
    low = [n for n, v in verdicts.items() if v != PASS and median[n] < RATIO_WARN[0]]
    high = [n for n, v in verdicts.items() if v != PASS and median[n] > RATIO_WARN[1]]
    advice = ""
    if low or high:
        todo = (
            "raise optim.lr"
            if not high
            else "lower optim.lr"
            if not low
            else "layers on both sides: a normalising optimizer (adam, rmsprop_tf)"
        )
        listed = ", ".join(f"{n} {median[n]:.1e}" for n in low + high)
        advice = f"{todo}; outside {RATIO_WARN[0]:g}..{RATIO_WARN[1]:g}: {listed}"
    note = f", after {warmup} optimizer warm-up steps" if warmup else ""
    result = CheckResult(
        "update/weight ratio",
        status,
        f"{lo:.1e}..{hi:.1e} over {len(median)} weights",
        f"~1e-3 per update (warn outside {RATIO_WARN[0]:g}..{RATIO_WARN[1]:g}, fail "
        f"{RATIO_FAIL[0]:g}..{RATIO_FAIL[1]:g}){note}",
        advice,
        {"median_per_tensor": median, "warmup_steps": warmup, "updates": len(batches)},
    )
    return result, statistics.median(times)


def unit_stats(model: nn.Module, obs: Tensor) -> dict[str, float]:
    """Per activation layer, the fraction of units that are 0 on every one of ``obs`` (ReLU),
    or of outputs within 1% of their asymptotes (tanh, sigmoid)."""
    monitor = ActivationMonitor(model)
    with torch.no_grad(), monitor.capture():
        model(obs)
    return {
        key.rsplit("/", 1)[0]: value
        for key, value in monitor.stats().items()
        if key.endswith(("/dead", "/saturated"))
    }


def check_units(after: dict[str, float], initial: dict[str, float], count: int) -> CheckResult:
    """Judged after the K updates against the same observations at initialisation: units the
    updates killed point at too large a step; a layer dead from the start, at the init."""
    if not after:
        return CheckResult("dead/saturated units", PASS, "no ReLU/tanh/sigmoid layers", "-")
    killed = {
        n: (v - initial.get(n, 0.0)) / max(1e-9, 1.0 - initial.get(n, 0.0))
        for n, v in after.items()
    }
    layer, worst = max(after.items(), key=lambda kv: kv[1])
    worst_killed = max(killed.values())
    status = FAIL if worst >= DEAD_FAIL else WARN if worst_killed > DEAD_WARN else PASS
    if status == PASS:
        advice = ""
    elif worst_killed > DEAD_WARN:
        advice = "lower optim.lr: the first updates killed the units"
    else:
        advice = "the layer is dead from the start: check the input scaling and the init"
    return CheckResult(
        "dead/saturated units",
        status,
        f"worst {worst:.0%} ({layer}; {initial.get(layer, 0.0):.0%} at init), "
        f"killed <= {max(0.0, worst_killed):.0%} of the live ones",
        f"updates kill < {DEAD_WARN:.0%} of live units; no layer >= {DEAD_FAIL:.0%} dead",
        advice,
        {"per_layer": after, "initial": initial, "killed": killed, "observations": count},
    )


def check_overfit(probe: Probe, batch: Any) -> CheckResult:
    """CS231n's sanity check: the network must fit a handful of samples. The regression part
    of the loss (DQN's TD loss, PAAC's value term), its targets held fixed, is minimised with
    ``rlkit.sanity.overfit_tiny_batch`` (Adam on a copy of the network): the network and the
    loss are on trial here, the configured step size in the update-ratio check. The rewards of
    the real observations are redrawn uniformly in +-1 reward scale, so there is something to
    fit: the initial outputs already match the real targets of a batch without rewards (most of
    Pong's). Fitted: below 10% of the starting loss."""
    small = probe.random_targets(probe.small(batch), probe.cfg.train.seed)
    fit = probe.frozen_loss(probe.model, small)
    with torch.no_grad():
        start = float(fit(probe.model).fit)
    target = 0.1 * start
    result = overfit_tiny_batch(
        probe.model,
        lambda model, _b: fit(model).fit,
        small,
        steps=OVERFIT_STEPS,
        lr=OVERFIT_LR,
        target=target,
        raise_on_failure=False,
    )
    end = result.final_loss
    status = PASS if end <= target else WARN if end < 0.5 * start else FAIL
    return CheckResult(
        "overfit one batch",
        status,
        f"{start:.3g} -> {end:.3g} in {result.steps} Adam steps",
        f"< 10% of the start on {_count(small)} samples, random rewards",
        ""
        if status == PASS
        else "the network cannot fit a few samples: check the loss's "
        "targets and the network (inputs scaled? output layer wired?)",
        {"start": start, "end": end, "steps": result.steps},
    )


def _random_values(batch: dict[str, Tensor], key: str, seed: int) -> dict[str, Tensor]:
    """``batch`` with ``batch[key]`` drawn from ``U(-u, u)``, u its scale (at least 1)."""
    values = batch[key]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(values.shape, generator=generator, dtype=torch.float64) * 2 - 1
    scale = _reward_unit(values)
    return {**batch, key: (noise * scale).to(values.dtype).to(values.device)}


def check_throughput(probe: Probe, update_seconds: float) -> CheckResult:
    """The budget's wall time from the measured rates (evaluations not included); a machine
    busy with other work (load above its cores) is named, since it slows every rate."""
    seconds, how = probe.projection(update_seconds)
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > cores:
        how += f"; machine busy (load {load:.1f} on {cores} cores)"
    hours = seconds / 3600
    status = PASS if hours <= MAX_HOURS else WARN
    return CheckResult(
        "throughput",
        status,
        f"{hours:,.1f} h for train.steps",
        how,
        "" if status == PASS else "a GPU (train.device), more envs, or a smaller train.steps",
        {
            "projected_seconds": seconds,
            "update_seconds": update_seconds,
            "env_seconds_per_step": probe.env_seconds_per_step,
            "load": load,
            "cores": cores,
        },
    )


# ---------------------------------------------------------------------------------- driver


def make_probe(cfg: Config) -> Probe:
    """Build the learner ``rlkit train`` would (same seed, device, threads) and its probe."""
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    keep_freed_memory()
    check_env_id(cfg.env.id)
    seed_everything(cfg.train.seed)
    learner = make_learner(cfg, resolve_device(cfg.train.device), Logger(None))
    return algorithm(cfg.algo).probe_class()(learner, cfg)


def run_checks(cfg: Config, name: str, *, updates: int = UPDATES) -> CheckReport:
    """Every check on the learner ``cfg`` builds; ``name`` labels the report."""
    threads = torch.get_num_threads()  # train.threads applies to the check only
    with warnings.catch_warnings():
        # The report states the ratios itself; the in-run monitor's warning would repeat them.
        warnings.simplefilter("ignore", UpdateRatioWarning)
        try:
            return _run(cfg, name, updates)
        finally:
            torch.set_num_threads(threads)


def _run(cfg: Config, name: str, updates: int) -> CheckReport:
    probe = make_probe(cfg)
    try:
        batches = probe.collect(updates)
        results = probe.initial_checks(batches[0])
        results.append(check_gradients(probe, batches[0]))
        results.append(probe.output_gradient(batches[0]))
        # The last batch: PAAC's first rollout holds Pong's opening frames, which barely differ.
        results.append(check_overfit(probe, batches[-1]))  # on a copy of the network
        obs = probe.observations(batches[:8])
        initial_units = unit_stats(probe.model, obs)
        steps = warmup_steps(probe.update.optimizer)
        warm_up(probe, batches, steps)
        ratio, update_seconds = check_update_ratio(probe, batches, steps)
        results.append(ratio)
        results.append(check_units(unit_stats(probe.model, obs), initial_units, len(obs)))
        results.append(check_throughput(probe, update_seconds))
    finally:
        probe.learner.close()
    return CheckReport(name, cfg.algo, results)
