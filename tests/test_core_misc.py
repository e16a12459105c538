"""EMA/Polyak averaging, early stopping, sanity checks, random search."""

import math

import pytest
import torch
from torch import nn

from rlkit.averaging import EMA, polyak_update
from rlkit.early_stopping import EarlyStopping
from rlkit.monitors import NonFiniteError
from rlkit.sanity import SanityError, chance_loss, check_initial_loss, overfit_tiny_batch
from rlkit.search import Choice, LogUniform, Uniform, random_search


def test_polyak_update_formula_and_hard_copy():
    src, tgt = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    with torch.no_grad():
        src.weight.fill_(2.0)
        tgt.weight.fill_(0.0)
        src.running_mean.fill_(5.0)
    polyak_update(tgt, src, 0.25)
    assert tgt.weight.tolist() == pytest.approx([0.5] * 3)
    assert tgt.running_mean.tolist() == [5.0] * 3  # buffers are copied
    polyak_update(tgt, src, 1.0)
    assert torch.equal(tgt.weight, src.weight)
    with pytest.raises(ValueError, match="tau must be in"):
        polyak_update(tgt, src, 0.0)
    with pytest.raises(ValueError, match="different parameter shapes"):
        polyak_update(nn.Linear(2, 2), nn.Linear(2, 3), 0.5)


def test_ema_matches_obvious_recursion():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9)
    expected = 0.0
    for v in (1.0, 2.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(v)
        ema.update()
        expected = 0.9 * expected + 0.1 * v
    assert ema.module.weight.item() == pytest.approx(expected)
    assert not ema.module.weight.requires_grad
    warm = EMA(model, decay=0.999, warmup=True)
    assert warm.current_decay() == pytest.approx(0.1)


def test_early_stopping_patience_and_best():
    stop = EarlyStopping(patience=2, mode="max")
    results = [(stop.step(m), stop.improved) for m in (0.5, 0.6, 0.55, 0.6, 0.59)]
    assert results == [(False, True), (False, True), (False, False), (True, False), (True, False)]
    assert stop.best == 0.6 and stop.best_step == 1
    clone = EarlyStopping(patience=2, mode="max")
    clone.load_state_dict(stop.state_dict())
    assert clone.should_stop and clone.best == 0.6


def test_initial_loss_check():
    assert chance_loss(10) == pytest.approx(2.302585)
    assert check_initial_loss(2.30, 10) == pytest.approx(2.30 / math.log(10))
    with pytest.raises(SanityError, match=r"initial loss 9.0000 is not chance level ln\(10\)"):
        check_initial_loss(9.0, 10)


def test_overfit_tiny_batch_passes_and_fails():
    torch.manual_seed(0)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    before = [p.clone() for p in model.parameters()]

    def ce(m, b):
        return nn.functional.cross_entropy(m(b[0]), b[1])

    result = overfit_tiny_batch(model, ce, (x, y))
    assert result.passed and result.final_loss < 1e-2 and result.initial_loss > 0.5
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    frozen = nn.Linear(4, 3)
    frozen.weight.register_hook(lambda g: g * 0)  # a "broken backward": nothing can learn
    frozen.bias.register_hook(lambda g: g * 0)
    with pytest.raises(SanityError, match="could not overfit a tiny batch"):
        overfit_tiny_batch(frozen, ce, (x, y), steps=20)


def test_log_uniform_is_uniform_in_log_space():
    import numpy as np

    dist = LogUniform(1e-6, 1e-1)
    rng = np.random.default_rng(0)
    logs = np.log10([dist.sample(rng) for _ in range(4000)])
    assert logs.min() >= -6 and logs.max() <= -1
    assert np.mean(logs < -3.5) == pytest.approx(0.5, abs=0.03)  # median at 10**-3.5


def test_random_search_finds_optimum_and_flags_border():
    def objective(p):
        if p["lr"] > 0.5:
            raise NonFiniteError("diverged")
        return -((math.log10(p["lr"]) + 3) ** 2) - (p["wd"] - 0.5) ** 2 + (p["act"] == "relu")

    space = {"lr": LogUniform(1e-6, 1.0), "wd": Uniform(0.0, 1.0), "act": Choice(["relu", "tanh"])}
    result = random_search(objective, space, trials=60, seed=1)
    best, score = result.best
    assert len(result.trials) == 60 and best["act"] == "relu"
    assert 1e-4 < best["lr"] < 1e-2 and score > 0.5
    assert any(s == -math.inf for _, s in result.trials)  # diverged trials recorded, not fatal
    assert result.on_border() == []
    edge = random_search(lambda p: -p["lr"], {"lr": LogUniform(1e-3, 1.0)}, trials=30)
    assert edge.on_border() == ["lr"]
