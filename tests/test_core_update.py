"""UpdateStep ordering and monitors: NaN guard, update ratios, activations, filter images."""

import warnings

import pytest
import torch
from torch import nn

from rlkit.logger import Logger
from rlkit.monitors import (
    ActivationMonitor,
    NaNGuard,
    NonFiniteError,
    UpdateRatioMonitor,
    UpdateRatioWarning,
    filter_image,
)
from rlkit.schedules import Linear
from rlkit.update import UpdateStep


def _setup(**kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt, UpdateStep(model, opt, **kw)


def test_update_matches_manual_sgd_with_clipping_and_schedule():
    model, opt, step = _setup(max_grad_norm=0.01, lr_schedule=Linear(0.1, 0.0, 4))
    ref = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(5, 3)
    loss = model(x).pow(2).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    stats = step.update(model(x).pow(2).mean())
    assert stats.grad_norm.item() == pytest.approx(norm.item(), rel=1e-6)
    assert stats.lr == 0.1 and stats.updates == 1 and step.lr == pytest.approx(0.075)
    scale = min(1.0, 0.01 / (norm.item() + 1e-6))
    for p, r, g in zip(model.parameters(), ref, grads, strict=True):
        torch.testing.assert_close(p.detach(), r - 0.1 * scale * g)


def test_nan_guard_names_the_step_on_cpu():
    model, opt, step = _setup()
    step.update(model(torch.ones(1, 3)).sum())
    with pytest.raises(NonFiniteError, match="loss is nan at update 2; lower the learning rate"):
        step.update(model(torch.ones(1, 3)).sum() * float("nan"))


def test_nan_guard_names_the_tensor():
    guard = NaNGuard()
    good, bad = torch.ones(3), torch.tensor([1.0, float("inf")])
    with pytest.raises(NonFiniteError, match=r"non-finite gradient in '2.bias' at update 7"):
        guard.check_tensors([("0.weight", good), ("2.bias", bad)], 7, "gradient")
    guard.check_tensors([("0.weight", good)], 7, "gradient")


def test_nan_guard_deferred_flag_records_first_bad_step():
    """The device path (what runs on GPU): record without syncing, raise at check()."""
    guard = NaNGuard(immediate_on_cpu=False)
    for step, value in enumerate([1.0, float("inf"), float("nan"), 2.0], start=1):
        guard.record_loss(torch.tensor(value), step)
    with pytest.raises(NonFiniteError, match="loss became non-finite at update 2"):
        guard.check()
    fresh = NaNGuard(immediate_on_cpu=False)
    fresh.record_loss(torch.tensor(1.0), 1)
    fresh.check()


def test_nan_grads_caught_at_monitor_step():
    model, opt, step = _setup(monitor_every=1)
    with pytest.raises(NonFiniteError, match="non-finite gradient in '0.weight' at update 1"):
        # sqrt at 0 has an infinite derivative while the loss itself stays finite.
        step.update(torch.sqrt(model[0].weight.abs() * 0).sum())


def test_update_ratio_monitor_warns_when_off():
    w = nn.Parameter(torch.ones(10, 10))
    mon = UpdateRatioMonitor([("w", w)])
    before = mon.snapshot()
    with torch.no_grad():
        w.add_(0.1)  # ratio 0.1, 100x the rule of thumb
    with pytest.warns(UpdateRatioWarning, match="w=1.0e-01"):
        ratios = mon.measure(before)
    assert ratios["w"] == pytest.approx(0.1)
    before = mon.snapshot()
    with torch.no_grad():
        w.add_(0.11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already warned about w being too high: stay quiet
        assert mon.measure(before)["w"] > 0.05
    before = mon.snapshot()
    with torch.no_grad():
        w.mul_(1.001)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mon.measure(before)["w"] == pytest.approx(1e-3, rel=1e-3)


def test_activation_monitor_dead_and_saturated():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2), nn.Tanh())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        model[0].bias.copy_(torch.tensor([0.0, 0.0, -1.0]))  # unit 2 always dead
        model[2].weight.fill_(100.0)
    mon = ActivationMonitor(model)
    x = torch.tensor([[1.0, -1.0], [2.0, 3.0]])
    model(x)
    assert mon.stats() == {}  # no hooks outside capture()
    with mon.capture():
        model(x)
    stats = mon.stats()
    assert stats["1/dead"] == pytest.approx(1 / 3)  # only unit 2 is zero for all examples
    assert stats["1/zero"] == pytest.approx(3 / 6)
    assert stats["3/saturated"] == pytest.approx(1.0)
    assert all(len(m._forward_hooks) == 0 for m in model)


def test_a_convolution_channel_is_dead_only_if_off_at_every_position():
    conv = nn.Conv2d(1, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1, 1))
        conv.bias.copy_(torch.tensor([0.0, -1.0, 1.0]))  # channel 1 always off, channel 2 on
    model = nn.Sequential(conv, nn.ReLU())
    x = torch.zeros(2, 1, 3, 3)
    x[:, 0, 0, 0] = 1.0  # channel 0 is on at one position only: alive, not 8/9 dead
    mon = ActivationMonitor(model)
    with mon.capture():
        model(x)
    assert mon.stats()["1/dead"] == pytest.approx(1 / 3)


def test_filter_image_layouts():
    img = filter_image(torch.randn(32, 4, 8, 8))  # Nature conv1: a row of 4 frames per filter
    assert img.shape == (1, 32 * 9 + 1, 4 * 9 + 1)
    assert img.min() >= 0 and img.max() <= 1
    rgb = filter_image(torch.randn(6, 3, 5, 5))
    assert rgb.shape == (3, 2 * 6 + 1, 3 * 6 + 1)


def test_monitors_log_to_tensorboard(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    logger = Logger(tmp_path)
    step = UpdateStep(model, opt, monitor_every=2, image_every=2, logger=logger)
    x = torch.randn(3, 4, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UpdateRatioWarning)
        for _ in range(2):
            with step.capture_activations():
                loss = model(x).pow(2).mean()
            stats = step.update(loss)
    assert stats.monitored
    logger.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path)).Reload()
    tags = acc.Tags()
    for tag in ("update/grad_norm", "update/lr", "update_ratio/0.weight", "grad_norm/3.bias",
                "activations/1/dead"):
        assert tag in tags["scalars"], tag
    assert "filters/first_layer" in tags["images"]


def test_state_dict_round_trip():
    model, opt, step = _setup(lr_schedule=Linear(0.1, 0.0, 10))
    for _ in range(3):
        step.update(model(torch.ones(2, 3)).pow(2).mean())
    model2, opt2, step2 = _setup(lr_schedule=Linear(0.1, 0.0, 10))
    step2.load_state_dict(step.state_dict())
    assert step2.updates == 3 and step2.lr == pytest.approx(0.07)


def test_rejects_non_scalar_loss():
    model, opt, step = _setup()
    with pytest.raises(ValueError, match="scalar loss.*batch_mean"):
        step.update(model(torch.ones(2, 3)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_no_host_sync_between_monitor_updates_on_gpu():
    """CUDA's sync debug mode raises on any device->host synchronisation."""
    from rlkit.optim import RMSpropTF

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)).cuda()
    opt = RMSpropTF(model.parameters(), lr=1e-3, eps=0.1, momentum=0.9, centered=True)
    step = UpdateStep(model, opt, max_grad_norm=1.0, clip_value=5.0,
                      lr_schedule=Linear(1e-3, 0.0, 100), monitor_every=50)
    x = torch.randn(16, 8, device="cuda")
    step.update(model(x).pow(2).mean())  # optimizer state is allocated on the first update
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(10):
            stats = step.update(model(x).pow(2).mean())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert stats.grad_norm.device.type == "cuda" and step.updates == 11
    with pytest.raises(NonFiniteError, match="loss became non-finite at update 12"):
        for _ in range(50):
            step.update(model(x).pow(2).mean() * float("nan"))
