"""Learning curves: reading a run's TensorBoard events (stitching resumed segments), the
mean-of-last-N helper, and scripts/plot_curves.py (PNG out, one-line errors)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

from agents.curves import CurveError, first_reach, read_curve, rolling_mean
from rlkit.logger import Logger

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("plot_curves", ROOT / "scripts" / "plot_curves.py")
plot_curves = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot_curves)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _config(run: Path, env_id: str) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"env": {"id": env_id, "frame_skip": 4}}))
    return run


def _segment(path: Path, start: float, events: list[tuple[str, int, float, float]]) -> None:
    """An event file opened at wall time ``start`` holding ``(tag, step, wall, value)`` scalars,
    as TensorBoard writes them (file_version first), with clocks the test controls."""
    with path.open("wb") as f:
        writer = RecordWriter(f)
        writer.write(Event(wall_time=start, file_version="brain.Event:2").SerializeToString())
        for tag, step, wall, value in events:
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
            writer.write(Event(wall_time=wall, step=step, summary=summary).SerializeToString())


def _scores(run: Path, scores: list[float], every: int = 1000) -> Path:
    logger = Logger(run)
    for i, score in enumerate(scores):
        logger.scalar("game/score", score, (i + 1) * every)
    logger.close()
    return run


def test_resumed_segments_are_stitched_into_one_forward_curve(tmp_path: Path) -> None:
    run = _config(tmp_path / "pong", "ALE/Pong-v5")
    # First segment, started at t=1000: games at steps 100-400, then killed. The checkpoint it
    # resumed from was at step 250, so its games at 300 and 400 were played again afterwards.
    first = [("game/score", s, 1000 + s / 10, -21.0) for s in (100, 200, 300, 400)]
    # Resumed an hour later (t=5000): its first event is at step 260, games at 300, 400, 500.
    second = [("perf/sps", 260, 5002.0, 900.0)]
    second += [("game/score", s, 5000 + s / 100, -19.0) for s in (300, 400, 500)]
    # File names sort the other way round: the order must come from the clocks.
    _segment(run / "events.out.tfevents.2.host", 1000.0, first)
    _segment(run / "events.out.tfevents.1.host", 5000.0, second)

    curve = read_curve(run)
    np.testing.assert_array_equal(curve.steps, [100, 200, 300, 400, 500])
    np.testing.assert_array_equal(curve.frames, [400, 800, 1200, 1600, 2000])
    np.testing.assert_array_equal(curve.values, [-21, -21, -19, -19, -19])
    # Running time only: the second segment's clock continues from the first's last kept event
    # (20 s), not from the hour in between.
    np.testing.assert_allclose(curve.wall, [10, 20, 23, 24, 25])
    assert curve.segments == 2 and curve.frames_per_step == 4 and curve.label == "pong"


def test_a_fresh_start_in_the_same_directory_replaces_the_old_curve(tmp_path: Path) -> None:
    run = _config(tmp_path / "run", "CartPole-v1")
    _segment(
        run / "events.out.tfevents.1.host",
        100.0,
        [("game/score", s, 100.0 + s, 10.0) for s in (50, 100)],
    )
    _segment(
        run / "events.out.tfevents.2.host",
        900.0,
        [("game/score", s, 900.0 + s, 30.0) for s in (40, 80)],
    )
    curve = read_curve(run)
    np.testing.assert_array_equal(curve.steps, [40, 80])
    np.testing.assert_array_equal(curve.frames, [40, 80])  # not Atari: one frame per step
    np.testing.assert_array_equal(curve.values, [30, 30])


def test_curve_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CurveError, match="no TensorBoard event files under .*; pass a run"):
        read_curve(tmp_path)
    run = _scores(_config(tmp_path / "a", "ALE/Pong-v5"), [1.0])
    with pytest.raises(
        CurveError,
        match=r"tag 'nope' not found .*; pass --tag with one of: "
        r"game/score",
    ):
        read_curve(run, "nope")
    bare = _scores(tmp_path / "b", [1.0])
    with pytest.raises(CurveError, match="config.yaml not found; pass a run directory"):
        read_curve(bare)
    assert read_curve(bare, frames_per_step=4).frames[0] == 4000


def test_rolling_mean_is_the_mean_of_the_last_n_games() -> None:
    np.testing.assert_allclose(
        rolling_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0]
    )
    np.testing.assert_allclose(rolling_mean(np.array([1.0, 3.0, 5.0]), 1), [1.0, 3.0, 5.0])
    with pytest.raises(ValueError, match="window must be >= 1"):
        rolling_mean(np.array([1.0]), 0)


def test_first_reach_needs_a_full_window(tmp_path: Path) -> None:
    curve = read_curve(
        _scores(_config(tmp_path / "p", "ALE/Pong-v5"), [-6.0, -21.0, -21.0, -15.0, -13.0, -11.0])
    )
    # A single lucky first game is not "reached": the mean needs `window` games.
    assert first_reach(curve, -15.0, 3) == 5  # mean(-15, -13, -11) = -13
    assert curve.frames[5] == 24_000
    assert first_reach(curve, 0.0, 3) is None
    assert first_reach(curve, -100.0, 10) is None  # fewer games than the window


def test_cli_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _scores(_config(tmp_path / "a", "ALE/Pong-v5"), [-21, -19, -10, 0, 12])
    b = _scores(_config(tmp_path / "b", "ALE/Pong-v5"), [-21, -21, -20, -18, -15])
    out = tmp_path / "docs" / "curve.png"
    assert (
        plot_curves.main(
            [
                str(a),
                str(b),
                "--out",
                str(out),
                "--window",
                "2",
                "--published",
                "--reference",
                "target=15",
            ]
        )
        == 0
    )
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert f"wrote {out}" in capsys.readouterr().out


def test_published_lines_come_from_the_runs_game(tmp_path: Path) -> None:
    pong = _config(tmp_path / "pong", "PongNoFrameskip-v4")
    cartpole = _config(tmp_path / "cartpole", "CartPole-v1")
    refs = plot_curves.published([pong, pong, cartpole])
    assert {(r.label, r.score) for r in refs} == {
        ("human (Nature DQN table)", 9.3),
        ("DQN, Nature 2015", 18.9),
        ("DQN, CleanRL", 20.25),
        ("A2C, rl-zoo3", 17.3),
    }
    assert all(r.source for r in refs)
    assert plot_curves.published([cartpole]) == []


def test_per_game_groups_runs_by_game_with_each_games_lines(tmp_path: Path) -> None:
    breakout = [
        _scores(_config(tmp_path / f"breakout{i}", "MinAtar/Breakout-v0"), [0, 1, 3, 5])
        for i in range(2)
    ]
    invaders = _scores(_config(tmp_path / "invaders", "MinAtar/SpaceInvaders-v0"), [5, 20, 40])
    runs = [breakout[0], invaders, breakout[1]]
    curves = [read_curve(run) for run in runs]
    games = plot_curves.per_game(runs, curves, True, [])
    assert [(name, len(game_curves)) for name, game_curves, _ in games] == [
        ("MinAtar/Breakout-v0", 2),
        ("MinAtar/SpaceInvaders-v0", 1),
    ]
    assert [r.score for r in games[1][2]] == [43.0, 185.0]  # the MinAtar paper's, not Breakout's
    out = tmp_path / "games.png"
    args = [str(run) for run in runs]
    assert plot_curves.main([*args, "--out", str(out), "--per-game", "--published"]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC


def _one_error_line(err: str, expected: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rlkit: error: ") and expected in lines[0], lines[0]


def test_missing_matplotlib_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    run = _scores(_config(tmp_path / "a", "ALE/Pong-v5"), [1.0, 2.0])
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "x.png"
    assert plot_curves.main([str(run), "--out", str(out)]) == 1
    _one_error_line(
        capsys.readouterr().err,
        "matplotlib is not installed; install the plot extra: pip install -e '.[plot]'",
    )
    assert not out.exists()


def test_user_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _scores(_config(tmp_path / "a", "ALE/Pong-v5"), [1.0])
    out = str(tmp_path / "x.png")
    assert plot_curves.main([str(run), "--tag", "nope", "--out", out]) == 1
    _one_error_line(capsys.readouterr().err, "tag 'nope' not found")
    assert plot_curves.main([str(run), "--out", out, "--window", "0"]) == 1
    _one_error_line(capsys.readouterr().err, "--window must be >= 1, got 0")
    with pytest.raises(SystemExit) as exit_info:
        plot_curves.main([str(run), "--out", out, "--reference", "15"])
    assert exit_info.value.code == 2
    _one_error_line(capsys.readouterr().err, "expected LABEL=SCORE such as 'target=15'")
    assert plot_curves.main([str(run), "--out", str(tmp_path / "x.unknown")]) == 1
    _one_error_line(capsys.readouterr().err, "pass a .png path in a writable folder")
