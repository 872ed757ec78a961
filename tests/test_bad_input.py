"""Bad input fails fast with a clear message and a non-zero exit, and writes nothing: neither a
new run folder nor anything in an existing one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from framework.config_groups import group_options
from framework.plugins import load_plugins

SMOKE = ["+experiment=smoke", "progress=false"]


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def corrupt_dataset(tmp_path_factory) -> Path:
    """A door-open dataset (2 short scripted episodes) whose second episode file is cut short."""
    from framework.data.collect import collect

    root = tmp_path_factory.mktemp("corrupt") / "door-open"
    collect("door-open-v3", 2, 0.1, "state", root, seed=0, max_episode_steps=30)
    episode = root / "episodes" / "episode_000001.npz"
    episode.write_bytes(episode.read_bytes()[:-100])
    return root


BAD_INPUTS = {
    "wrong-typed top-level override": (["+algo=iql", "seed=abc"], "seed: Value 'abc'"),
    "wrong-typed algorithm setting": (
        ["+algo=iql", "algo.offline.updates=ten"],
        "algo.offline.updates: Value 'ten'",
    ),
    "missing dataset folder": (
        ["+algo=iql", "algo.data.path=/no/such/dataset"],
        "dataset folder /no/such/dataset does not exist",
    ),
    "gym env id that does not exist": (
        ["+algo=pets", "env=gym", "env.id=NoSuchEnv-v9"],
        "no gymnasium environment has id 'NoSuchEnv-v9'",
    ),
    "MetaWorld task that does not exist": (
        ["+algo=iql", "env.task=no-such-task-v3"],
        "MetaWorld has no task 'no-such-task-v3'; valid tasks: assembly-v3",
    ),
    "pixels from an env that only has states": (
        ["+algo=iql", "env=point", "encoder=conv"],
        "encoder 'conv' reads pixels observations, but env 'point' gives ['obs.state']",
    ),
    "pixels for a state-space planner": (
        ["+algo=pets", "encoder=conv"],
        "PETS plans on the env's state vectors; encoder 'conv' reads pixels",
    ),
    "a GPU that is not there": (["+algo=iql", "device=cuda:7"], "torch sees no GPU here"),
    "no CPU threads": (["+algo=iql", "threads=0"], "threads=0: give 1 or more, or null"),
    "phase name": (["+algo=moto", "phase=pretrain"], "phase must be one of all, offline, online"),
    "latent agent's setting out of range": (
        ["+algo=moto", "algo.replay_value_scale=-1"],
        "algo: replay_value_scale weighs the critic's replay loss and must be >= 0; got -1.0",
    ),
    "actor gradient that does not exist": (
        ["+algo=moto", "algo.actor_gradient=sarsa"],
        "algo: actor_gradient must be one of dynamics, reinforce; got 'sarsa'",
    ),
    "behaviour regulariser without a prior": (
        ["+algo=dreamer", "algo.beta=1"],
        "algo: beta > 0 regularises the actor toward a behaviour prior; none given",
    ),
    "init checkpoint that does not exist": (
        ["+algo=moto", "phase=online", "init=/no/such/run"],
        "checkpoint /no/such/run does not exist",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_fails_fast_and_writes_no_run_folder(framework_cli, tmp_path, case):
    args, message = BAD_INPUTS[case]
    run_dir = tmp_path / "run"
    result = framework_cli("run", *args, *SMOKE, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not run_dir.exists()


def test_corrupt_dataset_file_is_named(framework_cli, tmp_path, corrupt_dataset):
    run_dir = tmp_path / "run"
    result = framework_cli(
        "run",
        "+algo=iql",
        *SMOKE,
        f"algo.data.path={corrupt_dataset}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "episode_000001.npz is truncated or corrupt (sha256 mismatch)" in result.stderr
    assert "framework collect" in result.stderr  # what to do
    assert not run_dir.exists()


@pytest.mark.slow
def test_unknown_name_in_every_config_group_lists_the_valid_ones(framework_cli, tmp_path):
    groups = group_options(load_plugins().searchpaths)
    assert {"algo", "env", "encoder", "dynamics", "uncertainty", "planner"} <= set(groups)
    # `preset` is not chosen by hand: `+experiment=NAME` picks the algorithm's own preset.
    for group, options in ((g, o) for g, o in groups.items() if g != "preset"):
        override = f"+{group}=nonesuch" if group in ("algo", "experiment") else f"{group}=nonesuch"
        algo = [] if group == "algo" else ["+algo=pets"]
        result = framework_cli(
            "run", *algo, override, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path
        )
        assert result.returncode != 0, group
        assert f"Available options in '{group}'" in result.stderr, group
        missing = [option for option in options if option not in result.stderr]
        assert not missing, (group, missing)
        assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_an_existing_run_folder_is_left_untouched(framework_cli, tmp_path, data_cache):
    run_dir = tmp_path / "run"
    args = ["+algo=iql", *SMOKE, "env=point", f"algo.data.cache={data_cache}"]
    result = framework_cli("run", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    before = _tree_digest(run_dir)
    attempts = [
        [*args, f"hydra.run.dir={run_dir}"],  # a second run into the same folder
        [*args, "seed=abc", f"hydra.run.dir={run_dir}"],
        [*args, "encoder=conv", f"hydra.run.dir={run_dir}"],
        ["+algo=pets", "+experiment=smoke", f"hydra.run.dir={run_dir}"],
    ]
    messages = []
    for attempt in attempts:
        result = framework_cli("run", *attempt, cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        messages.append(result.stderr)
    assert f"{run_dir} already holds a run: continue it with `framework run resume=" in messages[0]
    assert _tree_digest(run_dir) == before
