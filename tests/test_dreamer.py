"""Dreamer-style baseline: the core's latent-model agent without penalty or prior, trained
naively offline then online, or online from scratch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framework.compose import compose_config
from framework.metrics import RunLogger, read_log
from framework.runner import build_algorithm, run_experiment


def _config(algo: str, data_cache: str, *overrides: str):
    return compose_config(
        [
            f"+algo={algo}",
            "+experiment=smoke",
            "progress=false",
            "tensorboard=false",
            f"algo.data.cache={data_cache}",
            *overrides,
        ]
    )


@pytest.mark.parametrize("algo, offline_updates", [("dreamer", 20), ("dreamer_scratch", 0)])
def test_smoke_presets_run_from_the_command_line(
    framework_cli, tmp_path, data_cache, algo, offline_updates
):
    run_dir = tmp_path / "run"
    result = framework_cli(
        "run",
        f"+algo={algo}",
        "+experiment=smoke",
        "progress=false",
        "tensorboard=false",
        f"algo.data.cache={data_cache}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluations = read_log(run_dir / "evaluation.csv")
    assert [row["episode"] for row in evaluations] == ["0", "1", "2"]
    assert float(evaluations[0]["updates"]) == offline_updates
    episodes = read_log(run_dir / "train_episodes.csv")
    # From scratch the first episode only fills the replay: no update before the second.
    first_updates = 0 if algo == "dreamer_scratch" else offline_updates + 5
    assert float(episodes[0]["updates"]) == first_updates
    manifest = json.loads((run_dir / "online_episodes" / "manifest.json").read_text())
    assert len(manifest["episodes"]) == 2


def test_dreamer_has_no_penalty_and_no_prior(tmp_path, data_cache):
    cfg = _config("dreamer", data_cache)
    dreamer = build_algorithm(cfg, tmp_path, RunLogger(tmp_path, tensorboard=False))
    assert dreamer.agent.prior is None
    assert dreamer.agent.imagination.alpha == 0.0 and dreamer.agent.imagination.beta == 0.0
    assert cfg.uncertainty.name == "none"


@pytest.mark.parametrize("uncertainty", ["disagreement", "total_variance"])
def test_lompo_penalises_imagined_rewards_offline_only(tmp_path, data_cache, uncertainty):
    cfg = _config("lompo", data_cache, f"uncertainty={uncertainty}")
    assert cfg.phase == "offline" and cfg.uncertainty.name == uncertainty
    assert cfg.algo.alpha == 1.0 and cfg.algo.beta == 0.0
    results = run_experiment(cfg, tmp_path)
    assert set(results) == {"offline_success", "final_success", "best_success"}
    log = read_log(tmp_path / "offline.csv")
    uncertainties = [float(row["imagined_uncertainty"]) for row in log]
    assert all(u > 0 for u in uncertainties)
    assert not (tmp_path / "online_episodes").exists()


def test_dreamer_world_model_and_critic_learn_the_point_task(tmp_path, data_cache):
    cfg = _config(
        "dreamer",
        data_cache,
        "env=point",
        "algo.data.episodes=10",
        "algo.sequence_length=20",
        "algo.batch_size=16",
        "world_model.free_nats=0.1",
        "algo.offline.updates=200",
        "algo.offline.log_every=10",
        "algo.online.episodes=0",
        "algo.online.eval_episodes=1",
    )
    run_experiment(cfg, tmp_path)
    log = read_log(tmp_path / "offline.csv")
    model = [float(row["model_total"]) for row in log]
    reward = [float(row["model_reward"]) for row in log]
    assert np.mean(model[-3:]) < 0.3 * np.mean(model[:3]), model
    assert np.mean(reward[-3:]) < np.mean(reward[:3]), reward
