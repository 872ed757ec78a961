"""Behaviour cloning baseline: runs from the command line, learns, reads pixels by config."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framework.compose import compose_config
from framework.errors import UserInputError
from framework.evaluation import evaluate
from framework.metrics import RunLogger, read_log
from framework.runner import build_algorithm, run_experiment

SMOKE = ["+algo=bc", "+experiment=smoke", "progress=false", "tensorboard=false"]


def _config(data_cache: str, *overrides: str):
    return compose_config([*SMOKE, f"algo.data.cache={data_cache}", *overrides])


def test_smoke_preset_runs_from_the_command_line(framework_cli, tmp_path, data_cache):
    run_dir = tmp_path / "run"
    result = framework_cli(
        "run", *SMOKE, f"algo.data.cache={data_cache}", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["offline"] for row in read_log(run_dir / "evaluation.csv")] == ["1"]
    assert len(read_log(run_dir / "offline.csv")) == 5  # 20 updates, logged every 5 and the last
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) == {"offline_success", "final_success", "best_success"}
    assert (run_dir / "checkpoint.pt").is_file()


def test_bc_learns_the_point_task_from_ten_demonstrations(tmp_path, data_cache):
    cfg = _config(
        data_cache,
        "env=point",
        "algo.head.hidden_dim=64",
        "encoder.feature_dim=64",
        "encoder.hidden_dim=64",
        "algo.data.episodes=10",
        "algo.train.updates=1500",
        "algo.train.log_every=100",
        "algo.train.eval_episodes=10",
    )
    untrained = build_algorithm(cfg, tmp_path / "untrained", RunLogger(tmp_path, tensorboard=False))
    policy = untrained.policy(explore=False)
    initial = evaluate(policy, untrained.observed.factory, 10, seed=100_000)["success_rate"]
    results = run_experiment(cfg, tmp_path / "run")
    losses = [float(row["bc_nll"]) for row in read_log(tmp_path / "run" / "offline.csv")]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 1.0, losses
    assert initial <= 0.3
    assert results["offline_success"] >= 0.8, results


def test_conv_encoder_clones_from_pixels(tmp_path, data_cache):
    cfg = _config(
        data_cache,
        "encoder=conv",
        "encoder.depth=8",
        "algo.train.updates=30",
        "algo.train.log_every=1",
        "algo.train.eval_episodes=1",
    )
    run_experiment(cfg, tmp_path)
    losses = [float(row["bc_nll"]) for row in read_log(tmp_path / "offline.csv")]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses


def test_an_encoder_the_env_cannot_feed_fails_clearly(tmp_path, data_cache):
    cfg = _config(data_cache, "env=point", "encoder=conv")
    with pytest.raises(UserInputError, match="reads pixels observations, but env 'point' gives"):
        build_algorithm(cfg, tmp_path, RunLogger(tmp_path, tensorboard=False))


def test_data_seed_interpolated_from_the_run_seed_draws_the_data_per_seed(tmp_path, data_cache):
    """``'algo.data.seed=${seed}'`` (docs/moto.md) gives each run seed its own demonstrations;
    without it every run seed shares data seed 0's."""

    def first_observations(*overrides: str) -> np.ndarray:
        cfg = _config(data_cache, "env=point", *overrides)
        algorithm = build_algorithm(cfg, tmp_path / "run", RunLogger(tmp_path, tensorboard=False))
        episodes = algorithm.observed.offline_episodes(algorithm.data_settings)
        return np.stack([episode[algorithm.observed.obs_key][0] for episode in episodes])

    per_seed = [first_observations(f"seed={seed}", "algo.data.seed=${seed}") for seed in (3, 4)]
    shared = [first_observations(f"seed={seed}") for seed in (3, 4)]
    assert not np.allclose(per_seed[0], per_seed[1])
    np.testing.assert_array_equal(shared[0], shared[1])
    np.testing.assert_array_equal(per_seed[0], first_observations("seed=0", "algo.data.seed=3"))
