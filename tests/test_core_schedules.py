"""Schedules hit known values; plateau schedule reacts to a stall; state round-trips."""

import math

import pytest
import torch

from rlkit.schedules import (
    Constant,
    Cosine,
    Exponential,
    InverseTime,
    Linear,
    Piecewise,
    ReduceOnPlateau,
    StepDecay,
    set_lr,
)


def test_known_values():
    assert Constant(0.3)(1000) == 0.3
    eps = Linear(1.0, 0.1, duration=1_000_000)  # DQN's epsilon annealing
    assert eps(0) == 1.0 and eps(500_000) == pytest.approx(0.55) and eps(2_000_000) == 0.1
    delayed = Linear(1.0, 0.0, duration=10, begin=5)
    assert [delayed(s) for s in (0, 5, 10, 15, 99)] == pytest.approx([1, 1, 0.5, 0, 0])
    assert StepDecay(0.1, 0.5, every=10)(25) == pytest.approx(0.025)
    assert Exponential(1.0, 0.5, every=2)(3) == pytest.approx(0.5**1.5)
    assert InverseTime(1.0, 0.1)(10) == pytest.approx(0.5)
    cos = Cosine(1.0, 0.0, duration=100)
    assert cos(0) == 1.0 and cos(50) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0)
    assert cos(500) == pytest.approx(0.0)
    pw = Piecewise([(0, 1.0), (10, 0.5), (20, 0.0)])
    assert [pw(s) for s in (0, 5, 10, 15, 20, 30)] == pytest.approx([1, 0.75, 0.5, 0.25, 0, 0])
    assert Piecewise([(10, 2.0)])(0) == 2.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="strictly increasing"):
        Piecewise([(0, 1.0), (0, 2.0)])
    with pytest.raises(ValueError, match="duration must be > 0"):
        Linear(1, 0, 0)
    with pytest.raises(ValueError, match="factor must be in"):
        ReduceOnPlateau(0.1, factor=1.5)


def test_plateau_divides_on_stall_and_signals_stop():
    sched = ReduceOnPlateau(0.1, factor=0.5, patience=2, min_value=0.02)
    assert not sched.observe(1.0)
    assert not sched.observe(0.9)  # improved
    assert not sched.observe(0.95)
    assert not sched.observe(0.9)  # not better than 0.9 by the threshold: 2 bad observations
    assert sched(123) == 0.1
    assert not sched.observe(0.91)  # third bad: reduce
    assert sched(0) == pytest.approx(0.05) and sched.reductions == 1
    for _ in range(3):
        sched.observe(1.0)
    assert sched.current == pytest.approx(0.025)
    stops = [sched.observe(1.0) for _ in range(3)]
    assert stops == [False, False, True] and sched.current == pytest.approx(0.0125)


def test_plateau_max_mode_and_state_round_trip():
    sched = ReduceOnPlateau(1.0, factor=0.2, patience=0, mode="max")
    sched.observe(0.5)
    sched.observe(0.4)
    assert sched.current == pytest.approx(0.2)
    clone = ReduceOnPlateau(1.0, factor=0.2, patience=0, mode="max")
    clone.load_state_dict(sched.state_dict())
    assert clone.current == sched.current and clone.best == 0.5
    with pytest.raises(ValueError, match="cannot load a ReduceOnPlateau schedule state into Lin"):
        Linear(1, 0, 10).load_state_dict(sched.state_dict())


def test_pure_schedules_are_functions_of_step():
    sched = Cosine(1.0, 0.1, 50)
    first = [sched(s) for s in range(60)]
    assert [sched(s) for s in reversed(range(60))] == list(reversed(first))
    assert math.isclose(sched.value(7), sched(7))


def test_set_lr_sets_every_group():
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)]},
                           {"params": [torch.zeros(1, requires_grad=True)], "lr": 5.0}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
