"""Atomic checkpoints, RNG capture, and bit-identical resumption of training."""

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from rlkit.atomic import remove_stale_temps, write_text
from rlkit.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from rlkit.optim import RMSpropTF
from rlkit.schedules import Linear
from rlkit.update import UpdateStep


def _make():
    torch.manual_seed(123)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    opt = RMSpropTF(model.parameters(), lr=0.01, alpha=0.95, eps=0.01, momentum=0.5)
    step = UpdateStep(model, opt, max_grad_norm=1.0, lr_schedule=Linear(0.01, 0.001, 20),
                      monitor_every=3)
    return model, step


def _train(model, step, k):
    for _ in range(k):
        # Every RNG takes part: numpy and Python pick the data, torch draws dropout masks.
        x = torch.from_numpy(np.random.randn(8, 4).astype(np.float32))
        y = torch.tensor([random.randrange(3) for _ in range(8)])
        step.update(nn.functional.cross_entropy(model(x), y))


def test_resume_is_bitwise_identical(tmp_path):
    random.seed(0)
    np.random.seed(0)
    model, step = _make()
    _train(model, step, 5)
    save_checkpoint(tmp_path / "ck.pt", {"model": model.state_dict(), "update": step.state_dict(),
                                         "rng": rng_state()})
    _train(model, step, 5)
    expected = [p.detach().clone() for p in model.parameters()]

    model2, step2 = _make()
    ck = load_checkpoint(tmp_path / "ck.pt")
    model2.load_state_dict(ck["model"])
    step2.load_state_dict(ck["update"])
    set_rng_state(ck["rng"])
    assert step2.updates == 5 and step2.lr == pytest.approx(Linear(0.01, 0.001, 20)(5))
    _train(model2, step2, 5)
    for a, b in zip(expected, model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rng_state_round_trip():
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_nested_dicts_round_trip(tmp_path):
    obj = {"a": {"b": [1, 2, {"c": torch.arange(3)}]}, "arr": np.ones(2), "s": "x"}
    out = load_checkpoint(save_checkpoint(tmp_path / "sub" / "x.pt", obj))
    assert out["a"]["b"][2]["c"].tolist() == [0, 1, 2] and out["arr"].tolist() == [1, 1]


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"version": 1})

    def exploding_save(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"version": 2})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["last.pt"]
    assert load_checkpoint(path) == {"version": 1}


def test_save_removes_temporaries_left_by_a_killed_save(tmp_path):
    """kill -9 mid-save cannot delete its temporary file; the next save of that file does, and
    leaves other files' temporaries (another writer's, maybe in progress) alone."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"version": 1})
    stale = [tmp_path / ".last.pt.a1b2c3d4.tmp", tmp_path / ".last.pt.zz_9y8x7.tmp"]
    for leftover in stale:
        leftover.write_bytes(b"half a checkpoint")
    other = tmp_path / ".best.pt.q1w2e3r4.tmp"
    other.write_bytes(b"another file's temporary")
    save_checkpoint(path, {"version": 2})
    assert sorted(os.listdir(tmp_path)) == [other.name, "last.pt"]
    assert load_checkpoint(path) == {"version": 2}


def test_remove_stale_temps_of_a_whole_directory(tmp_path):
    for name in (".last.pt.a1b2c3d4.tmp", ".config.yaml.x9y8z7w6.tmp", "keep.tmp", "last.pt"):
        (tmp_path / name).write_bytes(b"")
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [".config.yaml.x9y8z7w6.tmp",
                                               ".last.pt.a1b2c3d4.tmp"]
    assert sorted(os.listdir(tmp_path)) == ["keep.tmp", "last.pt"]


def test_atomic_files_get_the_umask_permissions(tmp_path):
    """mkstemp's 0600 must not leak into checkpoints and configs (others cannot read them)."""
    old = os.umask(0o027)
    try:
        save_checkpoint(tmp_path / "a.pt", {"x": 1})
        write_text(tmp_path / "b.yaml", "x: 1\n")
    finally:
        os.umask(old)
    for name in ("a.pt", "b.yaml"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640


def test_missing_checkpoint_message(tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "nope.pt")
    assert str(info.value) == (
        f"no checkpoint at {tmp_path / 'nope.pt'}; pass the path of a .pt written by rlkit train"
    )


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_corrupt_checkpoint_message(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "truncated":
        save_checkpoint(path, {"w": torch.zeros(1000)})
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"{path} is not a valid checkpoint (truncated, corrupt, or not written by torch.save); "
        "pass a last.pt or best.pt written by rlkit train"
    )  # nothing of torch's zip reader ("PytorchStreamReader failed ... central directory")


def test_non_dict_checkpoint_rejected(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="is not an rlkit checkpoint: expected a dict, "
                                              "found list; pass a last.pt or best.pt"):
        load_checkpoint(tmp_path / "list.pt")
