"""Sweeps through Hydra's launchers, as docs/scale_out.md describes them: local parallel runs
(joblib), submitit's local executor, our SLURM preset against stand-in `sbatch`/`srun`/`sacct`
commands, and a local Ray instance. Each sweeps 2 seeds x 2 uncertainty estimators of PETS's
smoke preset through the `framework` console script and checks every run's folder.

The console script, not `python -m framework.cli`: the launchers pickle the task function, and
only from the script is it `framework.cli._hydra_run` (under `-m` it lives in `__main__`).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

FRAMEWORK = Path(sys.executable).parent / "framework"
SEEDS = (0, 1)
UNCERTAINTIES = ("none", "disagreement")
#: Hydra's basic sweeper numbers the jobs in this order: job i runs RUNS[i].
RUNS = list(itertools.product(SEEDS, UNCERTAINTIES))
SWEEP = (
    "-m",
    "+algo=pets",
    "+experiment=smoke",
    f"seed={','.join(str(seed) for seed in SEEDS)}",
    f"uncertainty={','.join(UNCERTAINTIES)}",
    "algo.alpha=1.0",  # PETS consults the estimator only with a penalty (alpha > 0)
    "progress=false",
)


def sweep(
    sweep_dir: Path, *launcher: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``framework run SWEEP LAUNCHER`` into ``sweep_dir``; fails the test on a non-zero exit."""
    assert FRAMEWORK.is_file(), f"no console script at {FRAMEWORK}"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(FRAMEWORK), "run", *SWEEP, *launcher, f"hydra.sweep.dir={sweep_dir}"],
        cwd=sweep_dir.parent,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        # A guard against a hung launcher, not a speed check: generous, so that a loaded machine
        # (training runs beside the suite) does not fail it.
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def check_runs(sweep_dir: Path) -> list[Path]:
    """Every job folder holds a finished run of its own seed and estimator; the job folders."""
    jobs = sorted(
        (path for path in sweep_dir.iterdir() if path.name.isdigit()),
        key=lambda path: int(path.name),
    )
    assert [job.name for job in jobs] == [str(number) for number in range(len(RUNS))]
    for job, (seed, uncertainty) in zip(jobs, RUNS, strict=True):
        cfg = yaml.safe_load((job / "config.yaml").read_text())
        assert (cfg["seed"], cfg["uncertainty"]["name"]) == (seed, uncertainty), job
        assert cfg["algo"]["name"] == "pets" and cfg["algo"]["alpha"] == 1.0
        assert "final_return" in json.loads((job / "results.json").read_text())
        with open(job / "episodes.csv") as file:
            assert list(csv.DictReader(file)), f"{job}/episodes.csv has no episodes"
        assert list((job / "tensorboard").glob("events.out.tfevents.*")), job
    return jobs


@pytest.mark.slow
def test_joblib_launcher_runs_a_seed_and_estimator_sweep_in_parallel(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert "Joblib.Parallel(n_jobs=2" in result.stdout + result.stderr
    check_runs(sweep_dir)


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_sweep_and_keeps_each_jobs_log(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = sweep(sweep_dir, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    assert "Submitit 'local' sweep output dir" in result.stdout + result.stderr
    jobs = check_runs(sweep_dir)
    # submitit sends each job's stdout to <sweep>/.submitit/<job id>/<job id>_0_log.out.
    logs = [path.read_text() for path in (sweep_dir / ".submitit").glob("*/*_0_log.out")]
    assert len(logs) == len(RUNS)
    for job in jobs:
        assert sum(f"outputs: {job}\n" in log for log in logs) == 1, job


# A stand-in for SLURM's commands, enough for submitit: `sbatch` prints a job id at once, as
# the real one does, then runs the array's tasks in the background, N at a time (`--array=0-K%N`),
# each with the variables SLURM sets; `srun` runs its command into the --output/--error files;
# `sacct` knows no jobs, so submitit waits for each task's result file.
FAKE_SBATCH = """#!{python}
import os, re, subprocess, sys, time
from pathlib import Path

script = Path(sys.argv[-1])
text = script.read_text()
job = "4242"
if sys.argv[1] != "--run":
    log = open(Path(__file__).with_suffix(".log"), "a")
    subprocess.Popen([sys.executable, __file__, "--run", str(script)], stdout=log, stderr=log)
    print(f"Submitted batch job {{job}}")
    sys.exit(0)
array = re.search(r"^#SBATCH --array=(\\d+)-(\\d+)%(\\d+)$", text, re.M)
first, last, limit = map(int, array.groups())
cpus = re.search(r"^#SBATCH --cpus-per-task=(\\d+)$", text, re.M)
output = re.search(r"^#SBATCH --output=(.*)$", text, re.M)[1]
waiting, running = list(range(first, last + 1)), []
while waiting or running:
    running = [task for task in running if task.poll() is None]
    if waiting and len(running) < limit:
        index = waiting.pop(0)
        folder = Path(output.replace("%A", job).replace("%a", str(index))).parent
        deadline = time.monotonic() + 120  # submitit moves the pickles in after sbatch returns
        while not (folder / f"{{job}}_{{index}}_submitted.pkl").exists():
            if time.monotonic() > deadline:
                sys.exit(f"task {{index}}: no pickle in {{folder}}")
            time.sleep(0.1)
        env = dict(os.environ, SLURM_JOB_ID=str(5000 + index), SLURM_ARRAY_JOB_ID=job,
                   SLURM_ARRAY_TASK_ID=str(index), SLURM_NTASKS="1", SLURM_PROCID="0",
                   SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_JOB_NUM_NODES="1",
                   SLURM_CPUS_PER_TASK=cpus[1] if cpus else "1")
        running.append(subprocess.Popen(["bash", str(script)], env=env))
    time.sleep(0.1)
"""
FAKE_SRUN = """#!/bin/bash
while [[ $1 == --* ]]; do
  case $1 in --output) out=$2; shift 2;; --error) err=$2; shift 2;; *) shift;; esac
done
fill() { local p=${1//%A/$SLURM_ARRAY_JOB_ID}; p=${p//%a/$SLURM_ARRAY_TASK_ID}; echo "${p//%t/0}"; }
exec "$@" >>"$(fill "$out")" 2>>"$(fill "${err:-$out}")"
"""
FAKE_SACCT = """#!/bin/bash
echo "JobID|State|NodeList"
"""


@pytest.mark.slow
def test_slurm_preset_submits_one_job_array_that_runs_the_sweep(tmp_path):
    """`hydra/launcher=slurm` (configs/hydra/launcher/slurm.yaml) against a stand-in SLURM:
    the sbatch script submitit writes from the preset, and the runs it starts."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in [
        ("sbatch", FAKE_SBATCH.format(python=sys.executable)),
        ("srun", FAKE_SRUN),
        ("sacct", FAKE_SACCT),
    ]:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    sweep_dir = tmp_path / "sweep"
    result = sweep(
        sweep_dir,
        "hydra/launcher=slurm",
        "hydra.launcher.partition=debug",
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.array_parallelism=2",
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    assert "Submitit 'slurm' sweep output dir" in result.stdout + result.stderr
    jobs = check_runs(sweep_dir)
    [submitted] = sweep_dir.glob(".submitit/*/*_submission.sh")
    lines = submitted.read_text().splitlines()
    for line in [
        "#SBATCH --array=0-3%2",  # one array of the 4 runs, 2 at a time
        "#SBATCH --partition=debug",
        "#SBATCH --time=30",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --gpus-per-node=1",  # the preset's defaults
        "#SBATCH --mem=32GB",
        "#SBATCH --job-name=framework-pets",
        "export MUJOCO_GL=egl",
    ]:
        assert line in lines, f"{line!r} not in {submitted}:\n" + "\n".join(lines)
    logs = [path.read_text() for path in sweep_dir.glob(".submitit/4242_*/*_0_log.out")]
    for job in jobs:
        assert sum(f"outputs: {job}\n" in log for log in logs) == 1, job


@pytest.mark.slow
def test_ray_launcher_runs_the_sweep_on_a_local_instance_and_shuts_it_down(tmp_path):
    # Ray's socket paths must stay under ~107 characters: a short temp dir, not tmp_path.
    ray_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    # Every process of the sweep's Ray instance inherits this variable: found by it afterwards.
    tag = uuid.uuid4().hex
    marker = f"FRAMEWORK_RAY_TEST={tag}"
    try:
        sweep_dir = tmp_path / "sweep"
        result = sweep(
            sweep_dir,
            "hydra/launcher=ray",
            # A new instance, never one already running here (RAY_ADDRESS, `ray start`).
            "hydra.launcher.ray.init.address=local",
            "+hydra.launcher.ray.init.num_cpus=2",
            "+hydra.launcher.ray.init.include_dashboard=false",
            f"+hydra.launcher.ray.init._temp_dir={ray_dir}",
            # A failed run is not retried (Ray's default for a crashed worker is 3 retries).
            "+hydra.launcher.ray.remote.max_retries=0",
            env={"FRAMEWORK_RAY_TEST": tag, "RAY_USAGE_STATS_ENABLED": "0"},
        )
        assert "Started a local Ray instance" in result.stdout + result.stderr
        check_runs(sweep_dir)
        assert list(ray_dir.glob("session_*")), "Ray did not use the given temp dir"
        assert _wait_until_gone(marker) == [], "Ray processes outlived `framework run`"
    finally:
        for pid in _processes_with(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_dir, ignore_errors=True)


def _processes_with(marker: str) -> list[int]:
    """Ids of the processes whose environment holds ``marker`` (``KEY=VALUE``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return pids


def _wait_until_gone(marker: str, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (pids := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return pids
