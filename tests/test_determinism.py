"""Reproducibility on CPU: two runs with one seed train bit for bit alike; another seed does not.

A run here is MOTO's smoke preset, offline phase only, 100 updates logged every update,
launched with ``framework run`` in a fresh process as a user would. Everything a run draws
from is in the comparison: the demonstrator data (each same-seed run generates its own copy),
the loader, the replay's window sampler, network initialisation and the updates' own random
draws. The two same-seed runs get different ``PYTHONHASHSEED`` values, so a result that
depended on the iteration order of a set or of a str-keyed hash would show up here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from framework.metrics import read_log

UPDATES = 100
RUN = [
    "run",
    "+algo=moto",
    "+experiment=smoke",
    "phase=offline",
    "algo.offline.log_every=1",
    "progress=false",
    "tensorboard=false",
]
#: One thread: the CPU reductions then add up in one fixed order.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": "egl"}


def run_offline(
    framework_cli, tmp_path: Path, name: str, seed: int, hash_seed: str, updates: int = UPDATES
) -> Path:
    """One offline run of ``updates`` updates in ``tmp_path/name`` with its own dataset cache;
    returns its folder."""
    run_dir = tmp_path / name
    result = framework_cli(
        *RUN,
        f"algo.offline.updates={updates}",
        f"seed={seed}",
        f"algo.data.cache={tmp_path / name}-data",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        env={**ONE_THREAD, "PYTHONHASHSEED": hash_seed},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def losses(run_dir: Path, updates: int = UPDATES) -> list[dict[str, str]]:
    """The rows of ``offline.csv``: the step and every loss and metric, as written (``repr``
    of each float, so equal text is equal bits)."""
    rows = read_log(run_dir / "offline.csv")
    assert [int(row["step"]) for row in rows] == list(range(1, updates + 1))
    return rows


def dataset_digests(cache: Path) -> list[str]:
    (folder,) = [path for path in cache.iterdir() if path.is_dir()]
    manifest = json.loads((folder / "manifest.json").read_text())
    return [entry["sha256"] for entry in manifest["episodes"]]


@pytest.mark.slow
def test_same_seed_gives_identical_losses_and_another_seed_does_not(framework_cli, tmp_path):
    first = run_offline(framework_cli, tmp_path, "first", seed=3, hash_seed="1")
    second = run_offline(framework_cli, tmp_path, "second", seed=3, hash_seed="2")
    other = run_offline(framework_cli, tmp_path, "other", seed=4, hash_seed="1", updates=10)

    # The offline data each same-seed run generated is the same, file for file.
    assert dataset_digests(tmp_path / "first-data") == dataset_digests(tmp_path / "second-data")

    reference = losses(first)
    loss_columns = [
        key for key in reference[0] if "loss" in key or key in ("model_total", "prior_nll")
    ]
    assert {"model_total", "actor_loss", "critic_loss"} <= set(loss_columns)
    repeat = losses(second)
    for row, (want, got) in enumerate(zip(reference, repeat, strict=True), start=1):
        differ = {key: (want[key], got[key]) for key in want if got.get(key) != want[key]}
        assert not differ, f"update {row} differs between the same-seed runs: {differ}"

    # And the weights they end with, bit for bit.
    weights = [
        torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["agent"]
        for run in (first, second)
    ]
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key

    # Another seed trains differently from the first update on, so the test can fail.
    different = losses(other, updates=10)
    for column in loss_columns:
        assert [row[column] for row in different] != [row[column] for row in reference[:10]], column
    assert different[0]["model_total"] != reference[0]["model_total"]
