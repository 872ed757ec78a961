"""The offline data of an offline-to-online run: a dataset folder, or one generated once from
the env's demonstrator and cached by its settings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from framework.data.collect import collect_dataset
from framework.data.format import MANIFEST, Dataset, Episode, load_dataset, observation_spec
from framework.interfaces import EnvFactory


def cached_dataset_folder(
    cache: Path | str, env_settings: Mapping[str, Any], data_settings: Mapping[str, Any]
) -> Path:
    """``cache/<env name>-<hash>``: one folder per distinct env and generation settings."""
    key = json.dumps({"env": dict(env_settings), "data": dict(data_settings)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(cache) / f"{env_settings.get('name', 'env')}-{digest}"


def offline_dataset(
    factory: EnvFactory,
    env_settings: Mapping[str, Any],
    path: str | None,
    episodes: int,
    noise: float,
    seed: int,
    cache: str,
    only_successful: bool = False,
) -> Dataset:
    """Load the dataset at ``path``; without one, generate ``episodes`` demonstrator episodes
    (action noise ``noise``, seeds from ``seed``) into a folder under ``cache`` named by the
    env's settings and these, or reuse that folder (a killed generation is completed). Either
    way the dataset is checked against the env's action size and observation shapes."""
    env = factory.make(seed)
    try:
        obs_spec, action_dim = observation_spec(env.observation_space), env.action_space.shape[0]
    finally:
        env.close()
    if path is None:
        settings = {"episodes": episodes, "noise": noise, "seed": seed}
        settings["only_successful"] = only_successful
        folder = cached_dataset_folder(cache, env_settings, settings)
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Parallel runs (e.g. a multirun over seeds) share the folder: one generates it.
        with FileLock(str(folder) + ".lock"):
            manifest = folder / MANIFEST
            stored = len(json.loads(manifest.read_text())["episodes"]) if manifest.exists() else 0
            if stored < episodes:
                label = env_settings.get("task", env_settings.get("name", "demonstrator"))
                metadata = {**settings, "env_settings": dict(env_settings)}
                collect_dataset(
                    factory,
                    episodes - stored,
                    noise,
                    folder,
                    metadata,
                    seed,
                    only_successful,
                    label=str(label),
                )
        path = str(folder)
    return load_dataset(path, action_dim=action_dim, obs_spec=obs_spec)


def with_sparse_rewards(episode: Episode) -> Episode:
    """``episode`` with ``reward`` replaced by its ``success`` column as float32 (1.0 on
    success steps): the sparse reward of envs built with ``reward: sparse``, whatever reward
    the dataset stored."""
    return {**episode, "reward": np.asarray(episode["success"], np.float32)}
