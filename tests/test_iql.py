"""IQL baseline: the expectile loss, a command-line run of both phases, learning, pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from framework.compose import compose_config
from framework.evaluation import evaluate
from framework.metrics import RunLogger, read_log
from framework.runner import build_algorithm, run_experiment
from framework_baselines.iql import expectile_loss

SMOKE = ["+algo=iql", "+experiment=smoke", "progress=false", "tensorboard=false"]


def _config(data_cache: str, *overrides: str):
    return compose_config([*SMOKE, f"algo.data.cache={data_cache}", *overrides])


def test_expectile_loss_is_minimised_by_the_expectile():
    samples = torch.tensor([0.0, 0.0, 0.0, 1.0])
    grid = torch.linspace(0, 1, 1001)
    for expectile, expected in [(0.5, 0.25), (0.9, 0.75)]:  # 0.9 / 1.2 = 0.75
        # τ-expectile m of {0,0,0,1}: τ(1 − m) = 3(1 − τ)m, so m = τ / (3 − 2τ).
        losses = torch.stack([expectile_loss(samples - m, expectile) for m in grid])
        assert abs(grid[losses.argmin()].item() - expected) <= 1e-3
    torch.testing.assert_close(
        expectile_loss(samples - 0.5, 0.5), 0.5 * (samples - 0.5).pow(2).mean()
    )


def test_smoke_preset_runs_both_phases_from_the_command_line(framework_cli, tmp_path, data_cache):
    run_dir = tmp_path / "run"
    result = framework_cli(
        "run", *SMOKE, f"algo.data.cache={data_cache}", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluations = read_log(run_dir / "evaluation.csv")
    assert [row["episode"] for row in evaluations] == ["0", "1", "2"]
    assert [row["offline"] for row in evaluations] == ["1", "0", "0"]
    manifest = json.loads((run_dir / "online_episodes" / "manifest.json").read_text())
    assert [entry["length"] for entry in manifest["episodes"]] == [30, 30]
    assert json.loads((run_dir / "results.json").read_text())["online_episodes"] == 2


@pytest.mark.slow
def test_iql_learns_the_point_task_from_ten_demonstrations(tmp_path, data_cache):
    cfg = _config(
        data_cache,
        "env=point",
        "algo.data.episodes=10",
        "algo.head.hidden_dim=64",
        "algo.iql.hidden_dim=64",
        "encoder.feature_dim=64",
        "encoder.hidden_dim=64",
        "algo.offline.updates=1500",
        "algo.offline.batch_size=256",
        "algo.offline.log_every=100",
        "algo.online.episodes=0",
        "algo.online.eval_episodes=10",
    )
    untrained = build_algorithm(cfg, tmp_path / "untrained", RunLogger(tmp_path, tensorboard=False))
    policy = untrained.policy(explore=False)
    initial = evaluate(policy, untrained.observed.factory, 10, seed=100_000)["success_rate"]
    results = run_experiment(cfg, tmp_path / "run")
    q_losses = [float(row["q_loss"]) for row in read_log(tmp_path / "run" / "offline.csv")]
    assert np.mean(q_losses[-3:]) < 0.1 * q_losses[0], q_losses
    assert initial <= 0.3
    assert results["offline_success"] >= 0.8, results


def test_conv_encoder_learns_q_from_pixels(tmp_path, data_cache):
    cfg = _config(
        data_cache,
        "encoder=conv",
        "encoder.depth=8",
        "algo.offline.updates=30",
        "algo.offline.log_every=1",
        "algo.online.episodes=0",
        "algo.online.eval_episodes=1",
    )
    run_experiment(cfg, tmp_path)
    q_losses = [float(row["q_loss"]) for row in read_log(tmp_path / "offline.csv")]
    assert len(q_losses) == 30
    assert np.mean(q_losses[-5:]) < np.mean(q_losses[:5]), q_losses
