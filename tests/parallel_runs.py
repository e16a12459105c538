"""Run the learning tests' training and evaluation commands in worker processes, one per core.

A learning test trains one seed through the CLI and scores it with ``rlkit evaluate``. Their
configs compute on one torch thread, so a 2-core machine can train two seeds at once in separate
processes, each with the floats it would have computed alone on that machine: the results do not
change, and the suite's largest part takes half the time. A module's fixture runs the seeds of
the tests that were selected (``pytest -k`` narrows it) and each test asserts on its own seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ROOT

WORKER = """
import json, sys
from agents.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(code)
"""
"""Runs ``rlkit`` commands one after another in one process (one torch import), stopping at
the first that fails, with that command's exit code."""


@dataclass(frozen=True)
class Pipeline:
    """``rlkit`` commands (argument lists) that must run in order, e.g. train then evaluate."""

    key: tuple[str, int]
    """(learner, seed)."""
    commands: list[list[str]]
    log: Path


@dataclass(frozen=True)
class Finished:
    """How a pipeline ended: its exit code and the end of its output, for assertion messages."""

    returncode: int
    output_tail: str


Runs = dict[tuple[str, int], tuple[Path, Finished]]
"""(learner, seed) -> (the pipeline's working directory, how it ended)."""


def run_pipelines(pipelines: list[Pipeline]) -> dict[tuple[str, int], Finished]:
    """Run every pipeline, as many at once as this process may use cores; results by key.
    ``OMP_NUM_THREADS=1`` keeps each worker's torch (and evaluation) on one thread."""
    workers = max(1, min(len(pipelines), len(os.sched_getaffinity(0))))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def run(pipeline: Pipeline) -> Finished:
        with pipeline.log.open("w") as log:
            done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(pipeline.commands)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        return Finished(done.returncode, pipeline.log.read_text()[-3000:])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip((p.key for p in pipelines), pool.map(run, pipelines), strict=True))


def selected_params(request: pytest.FixtureRequest, test_name: str) -> list[dict[str, Any]]:
    """The parameters of each selected test called ``test_name`` in the requesting module."""
    module = request.node.path
    return [item.callspec.params for item in request.session.items
            if getattr(item, "originalname", None) == test_name and item.path == module
            and hasattr(item, "callspec")]


def run_selected_seeds(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                       test_name: str, commands: Callable[[str, int, Path], list[list[str]]],
                       ) -> Runs:
    """Each selected ``test_name(learner, seed)``'s ``commands(learner, seed, workdir)``, run in
    parallel: (workdir, how it ended) by (learner, seed)."""
    workdirs, pipelines = {}, []
    for params in selected_params(request, test_name):
        key = (params["learner"], params["seed"])
        workdirs[key] = tmp_path_factory.mktemp(f"{key[0]}-{key[1]}")
        pipelines.append(Pipeline(key, commands(*key, workdirs[key]), workdirs[key] / "log.txt"))
    finished = run_pipelines(pipelines)
    return {key: (workdir, finished[key]) for key, workdir in workdirs.items()}
