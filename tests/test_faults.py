"""Runs that survive faults: SIGKILL at random points then `resume=`, SIGTERM's clean stop, the
NaN guard, and bad input that must leave an existing run folder untouched."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import FRAMEWORK, run_framework
from omegaconf import OmegaConf

from framework.data import load_dataset
from framework.errors import NonFiniteError
from framework.metrics import RunLogger, read_log
from framework.phases import CHECKPOINT, ONLINE_EPISODES, OfflineSettings, PhaseRunner
from framework.replay import SequenceReplay

ONLINE_EPISODES_PLANNED = 30
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _iql_args(run_dir: Path, data_cache: str, episodes: int = ONLINE_EPISODES_PLANNED) -> list[str]:
    """IQL on the point task: 50 offline updates, then ``episodes`` online episodes of 30 steps
    with a checkpoint after each (about 4 s of training here for 30)."""
    return [
        "run",
        "+algo=iql",
        "+experiment=smoke",
        "env=point",
        f"algo.data.cache={data_cache}",
        "algo.offline.updates=50",
        f"algo.online.episodes={episodes}",
        "algo.online.updates_per_episode=20",
        "algo.online.eval_every=5",
        "progress=false",
        "tensorboard=false",
        f"hydra.run.dir={run_dir}",
    ]


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*FRAMEWORK, *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _resume(run_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    return run_framework("run", f"resume={run_dir}", cwd=cwd, env=ENV)


def _check_finished_run(run_dir: Path) -> None:
    """Every online episode on disk once, loadable, nothing partial; counters and logs
    continuous."""
    episodes_dir = run_dir / ONLINE_EPISODES
    dataset = load_dataset(episodes_dir)  # checks every file's presence and sha256
    assert len(dataset) == ONLINE_EPISODES_PLANNED
    files = sorted(path.name for path in (episodes_dir / "episodes").iterdir())
    assert files == [f"episode_{index:06d}.npz" for index in range(ONLINE_EPISODES_PLANNED)]
    assert not list(run_dir.rglob("*.tmp"))
    progress = torch.load(run_dir / CHECKPOINT, weights_only=False)["progress"]
    assert progress["phase"] == "done"
    assert progress["online_episodes"] == ONLINE_EPISODES_PLANNED
    assert progress["online_steps"] == sum(len(e["action"]) for e in dataset.episodes)
    train = read_log(run_dir / "train_episodes.csv")
    assert [float(row["episode"]) for row in train] == list(range(1, 31))
    assert np.all(np.diff([float(row["step"]) for row in train]) > 0)
    # Updates continue from the checkpoint's count: those made after it, before the kill, are
    # lost with the weights they changed (the episodes they followed are kept).
    assert np.all(np.diff([float(row["updates"]) for row in train]) >= 0)
    evaluation = read_log(run_dir / "evaluation.csv")
    assert [float(row["episode"]) for row in evaluation] == [0, 5, 10, 15, 20, 25, 30]
    offline = [float(row["step"]) for row in read_log(run_dir / "offline.csv")]
    assert offline == sorted(set(offline))
    # Fine-tuning's update log rolls back to the checkpoint too: no update counted twice.
    online = [float(row["step"]) for row in read_log(run_dir / "online.csv")]
    assert online == sorted(set(online)) and online[-1] == progress["updates"]


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_loses_and_duplicates_nothing(tmp_path, data_cache):
    """6 trials: SIGKILL at a random moment once the first checkpoint exists, resume, check."""
    rng = random.Random(0)
    killed_online = 0
    for trial in range(6):
        run_dir = tmp_path / f"trial{trial}"
        process = _start(_iql_args(run_dir, data_cache), tmp_path)
        _wait_for(run_dir / CHECKPOINT, process)
        time.sleep(rng.uniform(0.0, 3.0))
        process.send_signal(signal.SIGKILL)
        process.communicate()
        state = torch.load(run_dir / CHECKPOINT, weights_only=False)
        killed_online += state["phase"] == "online"
        before = state["progress"]["online_episodes"]
        result = _resume(run_dir, tmp_path)
        assert result.returncode == 0, f"trial {trial}: {result.stderr[-2000:]}"
        assert f"online_episodes {ONLINE_EPISODES_PLANNED}" in result.stdout
        _check_finished_run(run_dir)
        after = torch.load(run_dir / CHECKPOINT, weights_only=False)["progress"]
        assert after["online_episodes"] >= before  # the counters continued, not restarted
    assert killed_online >= 3  # most kills land in the online phase, the case that matters


def _tensors(state: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a checkpoint's nested dicts and lists, named by its path."""
    if isinstance(state, Mapping):
        for key, value in state.items():
            yield from _tensors(value, f"{prefix}/{key}")
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            yield from _tensors(value, f"{prefix}/{index}")
    elif isinstance(state, torch.Tensor):
        yield prefix, state


@pytest.mark.slow
def test_resume_with_a_raised_budget_ends_where_a_run_planned_for_it_ends(tmp_path, data_cache):
    """A finished 5-episode run resumed with algo.online.episodes=10 fine-tunes on to 10: the
    same evaluations, progress and weights as a run planned for 10 from the start."""
    extended, planned = tmp_path / "extended", tmp_path / "planned"
    for run_dir, episodes in ((extended, 5), (planned, 10)):
        result = run_framework(*_iql_args(run_dir, data_cache, episodes), cwd=tmp_path, env=ENV)
        assert result.returncode == 0, result.stderr[-2000:]
    lowered = run_framework(
        "run", f"resume={extended}", "algo.online.episodes=4", cwd=tmp_path, env=ENV
    )
    assert lowered.returncode == 2 and "can only raise its online budget" in lowered.stderr
    result = run_framework(
        "run", f"resume={extended}", "algo.online.episodes=10", cwd=tmp_path, env=ENV
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "online_episodes 10" in result.stdout
    saved = OmegaConf.load(extended / "config.yaml")
    assert saved.algo.online.episodes == 10  # a later resume keeps the raised budget
    assert len(load_dataset(extended / ONLINE_EPISODES)) == 10

    def without_wall_time(run_dir: Path) -> list[dict[str, str]]:
        rows = read_log(run_dir / "evaluation.csv")
        return [{key: value for key, value in row.items() if key != "wall_time"} for row in rows]

    assert [row["episode"] for row in without_wall_time(extended)] == ["0", "5", "10"]
    assert without_wall_time(extended) == without_wall_time(planned)
    states = [torch.load(run / CHECKPOINT, weights_only=False) for run in (extended, planned)]
    assert states[0]["progress"] == states[1]["progress"]
    weights = [dict(_tensors(state)) for state in states]
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 10
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_stops_cleanly(tmp_path, data_cache):
    run_dir = tmp_path / "run"
    process = _start(_iql_args(run_dir, data_cache), tmp_path)
    _wait_for(run_dir / "train_episodes.csv", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-2000:]
    assert f"framework run resume={run_dir}" in stderr
    progress = torch.load(run_dir / CHECKPOINT, weights_only=False)["progress"]
    assert 0 < progress["online_episodes"] < ONLINE_EPISODES_PLANNED
    assert len(load_dataset(run_dir / ONLINE_EPISODES)) == progress["online_episodes"]
    # What a SIGKILL inside a checkpoint's or log's atomic write leaves: resume removes it.
    (run_dir / f".{CHECKPOINT}.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (run_dir / ".evaluation.csv.k1ll3d.tmp").write_text("step,epi")
    result = _resume(run_dir, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    _check_finished_run(run_dir)


class _DivergingLearner:
    """Loss 1/(k − update): finite until update ``k``, infinite at it."""

    def __init__(self, diverges_at: int) -> None:
        self.diverges_at, self.updates = diverges_at, 0

    def train_step(self, batch: Mapping[str, np.ndarray], phase: str) -> dict[str, float]:
        self.updates += 1
        with np.errstate(divide="ignore"):
            return {"loss": float(np.float64(1.0) / (self.diverges_at - self.updates))}

    def policy(self, explore: bool) -> Any:
        raise AssertionError("not evaluated in this test")

    def checkpoint_state(self) -> dict[str, Any]:
        return {"learner_updates": self.updates}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.updates = state["learner_updates"]


def test_non_finite_loss_stops_the_run_naming_loss_and_update_and_keeps_the_checkpoint(tmp_path):
    episode = {
        "obs.state": np.zeros((11, 2), np.float32),
        "action": np.zeros((10, 1), np.float32),
        "reward": np.zeros(10, np.float32),
        "terminated": np.zeros(10, bool),
        "truncated": np.zeros(10, bool),
    }
    replay = SequenceReplay.from_episodes([episode], 2, seed=0)
    logger = RunLogger(tmp_path, tensorboard=False)
    runner = PhaseRunner(_DivergingLearner(diverges_at=7), None, logger, 0, tmp_path, False)
    with pytest.raises(NonFiniteError, match=r"offline update 7: loss = inf.*checkpoint.*kept"):
        runner.offline(replay, OfflineSettings(updates=20, batch_size=4, checkpoint_every=5))
    logger.close()
    checkpoint = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert checkpoint["progress"]["updates"] == 5 and checkpoint["learner_updates"] == 5


def test_a_real_divergence_stops_with_the_loss_named(framework_cli, tmp_path, data_cache):
    run_dir = tmp_path / "run"
    result = framework_cli(
        *_iql_args(run_dir, data_cache)[:-1],
        "algo.iql.lr=1e12",
        "algo.offline.updates=200",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1
    assert "offline update" in result.stderr and "q_loss = nan" in result.stderr
    assert "Lower the learning rates" in result.stderr and "Traceback" not in result.stderr


def test_resume_refuses_bad_folders_and_extra_overrides(framework_cli, tmp_path):
    result = framework_cli("run", f"resume={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert result.returncode == 2 and "not a run folder" in result.stderr
    result = framework_cli("run", f"resume={tmp_path}", "seed=3", cwd=tmp_path)
    assert result.returncode == 2 and "drop 'seed=3'" in result.stderr
    result = framework_cli("run", f"resume={tmp_path}", "algo.online.episodes=ten", cwd=tmp_path)
    assert result.returncode == 2 and "give a whole number of episodes" in result.stderr
    pretraining = tmp_path / "pretraining"  # a phase=offline run: no online budget to raise
    pretraining.mkdir()
    (pretraining / "config.yaml").write_text("phase: offline\nalgo: {online: {episodes: 5}}\n")
    (pretraining / CHECKPOINT).write_bytes(b"")
    result = framework_cli("run", f"resume={pretraining}", "algo.online.episodes=9", cwd=tmp_path)
    assert result.returncode == 2 and "no online phase whose episodes" in result.stderr
