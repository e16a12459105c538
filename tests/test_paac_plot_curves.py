"""scripts/plot_curves.py: TensorBoard events of run directories -> a PNG of score vs frames."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from rlkit.logger import Logger

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("plot_curves", ROOT / "scripts" / "plot_curves.py")
plot_curves = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot_curves)


def _run_dir(path: Path, env_id: str, scores: list[float]) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"env": {"id": env_id, "frame_skip": 4}}))
    logger = Logger(path)
    for i, score in enumerate(scores):
        logger.scalar("game/score", score, (i + 1) * 1000)
    logger.close()
    return path


def test_reads_scores_and_scales_steps_to_frames(tmp_path: Path) -> None:
    run = _run_dir(tmp_path / "pong", "ALE/Pong-v5", [-21, -20, -15])
    steps, values = plot_curves.read_scalars(run, "game/score")
    np.testing.assert_array_equal(steps, [1000, 2000, 3000])
    np.testing.assert_array_equal(values, [-21, -20, -15])
    assert plot_curves.frames_per_step(run) == 4
    cartpole = _run_dir(tmp_path / "cartpole", "CartPole-v1", [10.0])
    assert plot_curves.frames_per_step(cartpole) == 1


def test_smooth_is_a_trailing_moving_average() -> None:
    np.testing.assert_allclose(plot_curves.smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2),
                               [1.0, 2.0, 4.0, 6.0])


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    ticks = plot_curves.nice_ticks(-21.0, 21.0)
    assert ticks[0] <= -21 and ticks[-1] >= 21
    assert np.allclose(np.diff(ticks), 10.0)


def test_cli_writes_a_png_with_one_colour_per_run(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", "ALE/Pong-v5", [-21, -19, -10, 0, 12])
    b = _run_dir(tmp_path / "b", "ALE/Pong-v5", [-21, -21, -20, -18, -15])
    out = tmp_path / "docs" / "curve.png"
    assert plot_curves.main([str(a), str(b), "--out", str(out), "--smooth", "1"]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (600, 960, 3)
    for colour in plot_curves.COLOURS[:2]:
        assert (np.abs(img.astype(int) - colour).sum(-1) < 30).sum() > 200, colour


def test_unknown_tag_names_the_available_ones(tmp_path: Path, capsys: pytest.CaptureFixture
                                              ) -> None:
    run = _run_dir(tmp_path / "a", "ALE/Pong-v5", [1.0])
    assert plot_curves.main([str(run), "--tag", "nope", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "tag 'nope' not found" in err and "game/score" in err
    assert plot_curves.main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "config.yaml not found; pass --frames-per-step" in capsys.readouterr().err
