"""DQN / Double DQN: the TD loss against hand-computed values and the gradient checker, the
Q-network heads, epsilon-greedy, target syncs, and the learner's bookkeeping on CartPole."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.config import load_config
from agents.dqn import DQNConfig, DQNLearner, QNetwork, build_policy, epsilon_greedy, td_loss
from rlkit.gradcheck import gradcheck
from rlkit.logger import Logger

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

Q = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
ACTIONS = torch.tensor([1, 0])
REWARDS = torch.tensor([1.0, 0.0])
DISCOUNTS = torch.tensor([0.9, 0.0])  # second transition terminated: no bootstrap
NEXT_TARGET = torch.tensor([[3.0, 1.0], [2.0, 5.0]])
NEXT_ONLINE = torch.tensor([[0.0, 1.0], [1.0, 0.0]])


def test_dqn_target_huber_by_hand():
    # y = r + d * max_a Q_target(s', a) = [1 + 0.9*3, 0] = [3.7, 0]; Q(s,a) = [2, 0.5]
    # td = [1.7, -0.5]; huber = [1.7 - 0.5, 0.5 * 0.25] = [1.2, 0.125]
    out = td_loss(Q, ACTIONS, REWARDS, DISCOUNTS, NEXT_TARGET)
    assert out.loss.item() == pytest.approx((1.2 + 0.125) / 2)
    assert out.td_error.tolist() == pytest.approx([1.7, -0.5])
    assert out.q_taken.tolist() == pytest.approx([2.0, 0.5])


def test_mse_loss_by_hand():
    out = td_loss(Q, ACTIONS, REWARDS, DISCOUNTS, NEXT_TARGET, loss="mse")
    assert out.loss.item() == pytest.approx((1.7**2 + 0.5**2) / 2)


def test_double_dqn_target_by_hand():
    # online argmax at s' = [1, 0] -> Q_target values [1, 2]; y = [1 + 0.9*1, 0] = [1.9, 0]
    out = td_loss(Q, ACTIONS, REWARDS, DISCOUNTS, NEXT_TARGET, NEXT_ONLINE, double=True)
    assert out.td_error.tolist() == pytest.approx([-0.1, -0.5])
    assert out.loss.item() == pytest.approx((0.5 * 0.01 + 0.125) / 2)
    # the flag, not the presence of next_q_online, selects Double DQN
    plain = td_loss(Q, ACTIONS, REWARDS, DISCOUNTS, NEXT_TARGET, NEXT_ONLINE, double=False)
    assert plain.td_error.tolist() == pytest.approx([1.7, -0.5])
    with pytest.raises(ValueError, match="needs next_q_online"):
        td_loss(Q, ACTIONS, REWARDS, DISCOUNTS, NEXT_TARGET, double=True)


@pytest.mark.parametrize(("loss", "per_sample"), [("huber", [1.2, 0.125]), ("mse", [2.89, 0.25])])
def test_importance_weights_apply_to_either_loss(loss, per_sample):
    weights = torch.tensor([0.5, 1.0])
    out = td_loss(Q, ACTIONS, REWARDS, DISCOUNTS, NEXT_TARGET, weights=weights, loss=loss)
    assert out.loss.item() == pytest.approx((0.5 * per_sample[0] + per_sample[1]) / 2)


def test_huber_delta_and_unknown_loss():
    out = td_loss(Q, ACTIONS, REWARDS, DISCOUNTS, NEXT_TARGET, huber_delta=2.0)
    assert out.loss.item() == pytest.approx((0.5 * 1.7**2 + 0.5 * 0.25) / 2)
    with pytest.raises(ValueError, match="unknown TD loss 'l1'"):
        td_loss(Q, ACTIONS, REWARDS, DISCOUNTS, NEXT_TARGET, loss="l1")


def test_target_carries_no_gradient():
    q = Q.clone().requires_grad_()
    nxt = NEXT_TARGET.clone().requires_grad_()
    td_loss(q, ACTIONS, REWARDS, DISCOUNTS, nxt).loss.backward()
    assert nxt.grad is None
    # d/dQ mean(huber) = -clip(td, -1, 1) / B on the taken action only
    torch.testing.assert_close(q.grad, torch.tensor([[0.0, -0.5], [0.25, 0.0]]))


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_td_loss_passes_gradcheck(double, loss):
    """The loss's gradient w.r.t. a float64 linear Q-head, checked by centred differences."""
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3).double()
    target = torch.nn.Linear(4, 3).double()
    obs, next_obs = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    actions = torch.randint(3, (6,))
    rewards = torch.randn(6, dtype=torch.float64)
    discounts = torch.tensor([0.99, 0.0, 0.99, 0.9801, 0.99, 0.0], dtype=torch.float64)
    weights = torch.rand(6, dtype=torch.float64)

    def fn() -> torch.Tensor:
        return td_loss(net(obs), actions, rewards, discounts, target(next_obs),
                       net(next_obs).detach(), weights, double=double, loss=loss).loss

    report = gradcheck(fn, net, coords_per_tensor=8)
    assert report.passed, report


def test_dueling_head_is_value_plus_centred_advantage():
    torch.manual_seed(0)
    net = QNetwork((4,), 3, mlp_hidden=(8,), dueling=True)
    obs = torch.randn(5, 4)
    features = net.encoder(obs)
    adv = net.head(features)
    expected = net.value(features) + adv - adv.mean(dim=1, keepdim=True)
    torch.testing.assert_close(net(obs), expected)


def test_epsilon_greedy_extremes_and_reproducibility():
    net = QNetwork((4,), 3, mlp_hidden=(8,))
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    greedy = net(torch.as_tensor(obs)).argmax(1).numpy()
    device = torch.device("cpu")
    assert np.array_equal(epsilon_greedy(net, obs, 0.0, np.random.default_rng(1), 3, device),
                          greedy)
    random = epsilon_greedy(net, obs, 1.0, np.random.default_rng(1), 3, device)
    assert set(random.tolist()) == {0, 1, 2} and random.dtype == np.int64
    again = epsilon_greedy(net, obs, 0.3, np.random.default_rng(7), 3, device)
    assert np.array_equal(again, epsilon_greedy(net, obs, 0.3, np.random.default_rng(7), 3, device))
    frac = np.mean(again != greedy)
    assert 0.05 < frac < 0.4  # ~0.3 * 2/3 of rows differ


def test_plain_dqn_is_never_double():
    assert DQNConfig().double is False
    assert DQNConfig(algo="double_dqn").double is True


def small_cartpole(tmp_path: Path, *extra: str):
    overrides = ["agent.learning_starts=50", "agent.train_freq=4", "agent.gradient_steps=2",
                 "agent.target_update_steps=10", "agent.batch_size=16",
                 "agent.epsilon_decay_steps=100", "agent.epsilon_final=0.04",
                 "agent.mlp_hidden=[16]", "train.log_every=100",
                 "train.steps=1000", "env.num_envs=2", *extra]
    return load_config(CONFIGS / "cartpole_dqn.yaml", overrides)


def test_learner_schedule_counts_and_target_syncs(tmp_path):
    cfg = small_cartpole(tmp_path)
    learner = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        syncs = []
        original = learner._sync_target
        learner._sync_target = lambda: (syncs.append(learner.env_steps), original())[1]
        logged = []
        for _ in range(100):  # 200 agent steps over 2 envs
            scalars = learner.train_iteration()
            if scalars:
                logged.append((learner.env_steps, scalars))
        assert learner.env_steps == 200
        # rounds at agent steps 50, 54, ..., 198 -> 38 rounds x 2 gradient steps
        assert learner.update.updates == 38 * 2
        # the target period counts agent steps (DeepMind's code, Dopamine), not updates
        assert syncs == list(range(10, 201, 10))
        assert [step for step, _ in logged] == [100, 200]
        # epsilon anneals over epsilon_decay_steps counted from learning_starts (50)
        assert learner.epsilon(50) == 1.0 and learner.epsilon(100) == pytest.approx(0.52)
        assert logged[1][1]["train/epsilon"] == pytest.approx(0.04)
        assert {"train/loss", "train/q_mean", "train/grad_norm", "train/lr"} <= set(logged[1][1])
        # after a sync the target equals the online net; Polyak would differ
        learner._sync_target()
        for p, t in zip(learner.q.parameters(), learner.target.parameters(), strict=True):
            assert torch.equal(p, t)
    finally:
        learner.close()


def test_polyak_target_update():
    cfg = load_config(CONFIGS / "cartpole_dqn.yaml", ["agent.tau=0.25", "agent.mlp_hidden=[4]"])
    learner = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        with torch.no_grad():
            for p in learner.q.parameters():
                p.add_(1.0)
        before = [t.clone() for t in learner.target.parameters()]
        learner._sync_target()
        for p, t, b in zip(learner.q.parameters(), learner.target.parameters(), before,
                           strict=True):
            torch.testing.assert_close(t, 0.25 * p + 0.75 * b)
    finally:
        learner.close()


def test_prioritized_learner_sends_abs_td_errors_as_priorities(tmp_path):
    cfg = small_cartpole(tmp_path, "agent.prioritized=true", "agent.algo=double_dqn")
    learner = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        seen = []
        original = learner.replay.update_priorities
        learner.replay.update_priorities = lambda idx, pr: (seen.append(pr), original(idx, pr))[1]
        for _ in range(30):
            learner.train_iteration()
        assert seen and all((p >= 0).all() and p.shape == (16,) for p in seen)
        betas = learner.beta(0), learner.beta(cfg.train.steps)
        assert betas == pytest.approx((0.4, 1.0))
    finally:
        learner.close()


def test_redo_recycles_a_killed_unit_on_schedule_and_logs_the_count(tmp_path):
    cfg = small_cartpole(tmp_path, "agent.redo_every=10", "agent.redo_batch_size=32")
    learner = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        hidden = learner.q.encoder.body[1]                   # the MLP's Linear(4, 16)
        with torch.no_grad():
            hidden.weight[3] = 0.0
            hidden.bias[3] = -1.0                            # unit 3 silent for every state
        recycles = []
        original = learner._recycle_dormant_units
        learner._recycle_dormant_units = lambda: (recycles.append(learner.update.updates),
                                                  original())[1]
        while learner.update.updates < 10:
            learner.train_iteration()
        assert recycles == [10]
        assert hidden.bias[3] != -1.0 and hidden.weight[3].abs().sum() > 0   # redrawn
        assert learner._last_recycled >= 1
        scalars = {}
        while not scalars:                                   # on to the next log line
            scalars = learner.train_iteration()
        assert scalars["redo/recycled_units"] == learner._last_recycled
    finally:
        learner.close()


def test_state_dict_round_trip_continues_identically(tmp_path):
    cfg = small_cartpole(tmp_path)
    a = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    for _ in range(60):
        a.train_iteration()
    state = copy.deepcopy(a.state_dict())  # as if saved and loaded: no tensors shared with `a`
    b = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    b.load_state_dict(state)
    torch_state = torch.get_rng_state()
    for _ in range(60):
        a.train_iteration()
    torch.set_rng_state(torch_state)
    for _ in range(60):
        b.train_iteration()
    for p, q in zip(a.q.parameters(), b.q.parameters(), strict=True):
        assert torch.equal(p, q)
    assert a.env_steps == b.env_steps == 240
    a.close()
    b.close()


def test_build_policy_loads_only_the_q_network(tmp_path):
    cfg = small_cartpole(tmp_path)
    learner = DQNLearner(cfg, torch.device("cpu"), Logger(None))
    try:
        state = learner.state_dict(optional=False)
        policy = build_policy(cfg, state, learner.envs.single_observation_space,
                              learner.envs.single_action_space, torch.device("cpu"), seed=0)
        obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
        assert np.array_equal(policy.act(obs, greedy=True), learner.act(obs, greedy=True))
    finally:
        learner.close()


def test_pixel_q_network_scales_uint8_on_device():
    torch.manual_seed(0)
    net = QNetwork((4, 84, 84), 6)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    q = net(frames)
    assert q.shape == (2, 6)
    torch.testing.assert_close(q, net(frames.float() / 255.0))
