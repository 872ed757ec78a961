"""The `framework` command as a user meets it: listing, errors, runs, Hydra flags, sweeps."""

import csv
import json

import pytest
import torch
import yaml

from framework.compose import compose_config
from framework.errors import UserInputError
from framework.runner import cpu_threads, run_experiment


def test_list_shows_plugins_component_kinds_and_config_groups(framework_cli, tmp_path):
    result = framework_cli("list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "baselines" in out and "core" in out
    assert "uncertainty:  disagreement (core), max_aleatoric (core)" in out
    for line_start in ("encoder:", "dynamics:", "planner:", "algo:"):
        assert any(line.strip().startswith(line_start) for line in out.splitlines())
    assert "pets (baselines)" in out


def test_run_without_algorithm_lists_the_valid_ones(framework_cli, tmp_path):
    result = framework_cli("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "no algorithm chosen" in result.stderr and "pets" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_wrong_typed_override_fails_before_training(framework_cli, tmp_path):
    result = framework_cli(
        "run",
        "+algo=pets",
        "dynamics.ensemble_size=many",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "dynamics.ensemble_size must be int; got 'many'" in result.stderr
    assert not (tmp_path / "run" / "episodes.csv").exists()


def test_cfg_job_prints_the_composed_config(framework_cli, tmp_path):
    result = framework_cli(
        "run",
        "+algo=pets",
        "+experiment=smoke",
        "uncertainty=max_pairwise",
        "--cfg",
        "job",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["algo"]["name"] == "pets"
    assert cfg["uncertainty"]["name"] == "max_pairwise"
    assert cfg["algo"]["episodes"] == 2  # the smoke preset applied


def test_smoke_run_writes_config_logs_checkpoint_and_results(framework_cli, tmp_path):
    run_dir = tmp_path / "run"
    result = framework_cli(
        "run",
        "+algo=pets",
        "+experiment=smoke",
        "uncertainty=disagreement",
        "algo.alpha=0.5",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "PETS episodes" in result.stderr  # the progress bar
    assert f"outputs: {run_dir}" in result.stdout and "pets: final_return" in result.stdout
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["uncertainty"]["name"] == "disagreement" and saved["algo"]["alpha"] == 0.5
    with open(run_dir / "episodes.csv") as file:
        rows = list(csv.DictReader(file))
    planned = [row for row in rows if row["random"] == "0"]
    assert len(planned) == 2
    assert [int(row["step"]) for row in rows] == sorted(int(row["step"]) for row in rows)
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "checkpoint.pt").stat().st_size > 0
    results = json.loads((run_dir / "results.json").read_text())
    assert results["final_return"] == float(planned[-1]["return"])


def test_multirun_sweeps_seeds(framework_cli, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = framework_cli(
        "run",
        "-m",
        "+algo=pets",
        "+experiment=smoke",
        "seed=1,2",
        "progress=false",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    seeds = sorted(
        yaml.safe_load((sweep_dir / job / "config.yaml").read_text())["seed"] for job in ("0", "1")
    )
    assert seeds == [1, 2]
    assert all((sweep_dir / job / "results.json").exists() for job in ("0", "1"))


@pytest.mark.parametrize("algo", ["bc", "iql", "pets"])
@pytest.mark.parametrize("option", ["phase=offline", "init=runs/some_run"])
def test_single_phase_algorithms_reject_phase_options(framework_cli, tmp_path, algo, option):
    result = framework_cli(
        "run",
        f"+algo={algo}",
        "+experiment=smoke",
        option,
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"drop {option}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "requested, environ, threads",
    [(None, {}, 1), (None, {"OMP_NUM_THREADS": "3"}, 3), (None, {"OMP_NUM_THREADS": "4,2"}, 4)]
    + [(2, {"OMP_NUM_THREADS": "3"}, 2)],
)
def test_cpu_threads_default_to_one_or_what_the_launcher_set(requested, environ, threads):
    assert cpu_threads(requested, environ) == threads


def test_a_malformed_thread_count_in_the_environment_is_named():
    with pytest.raises(UserInputError, match="OMP_NUM_THREADS='many' is not a number of threads"):
        cpu_threads(None, {"OMP_NUM_THREADS": "many"})


@pytest.mark.parametrize(
    "override, omp_num_threads, threads", [([], None, 1), ([], "3", 3), (["threads=2"], "3", 2)]
)
def test_a_run_sets_torch_to_its_thread_count(
    tmp_path, data_cache, monkeypatch, override, omp_num_threads, threads
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if omp_num_threads:
        monkeypatch.setenv("OMP_NUM_THREADS", omp_num_threads)
    cfg = compose_config(
        ["+algo=bc", "+experiment=smoke", "env=point", "progress=false", "tensorboard=false"]
        + [f"algo.data.cache={data_cache}", *override]
    )
    torch.set_num_threads(5)
    try:
        run_experiment(cfg, tmp_path / "run")
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(1)
