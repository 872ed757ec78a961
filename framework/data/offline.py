"""The offline data of an offline-to-online run: a dataset folder, or one generated once from
the env's demonstrator and cached by its settings."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from framework.data.collect import collect_dataset
from framework.data.format import MANIFEST, Dataset, Episode, load_dataset
from framework.interfaces import EnvFactory


def cached_dataset_folder(
    cache: Path | str, env_settings: Mapping[str, Any], data_settings: Mapping[str, Any]
) -> Path:
    """``cache/<env name>-<hash>``: one folder per distinct env and generation settings."""
    key = json.dumps({"env": dict(env_settings), "data": dict(data_settings)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(cache) / f"{env_settings.get('name', 'env')}-{digest}"


@dataclass(frozen=True)
class DataSettings:
    """Where an offline-to-online run's offline data comes from: the dataset folder ``path``,
    or, when it is None, ``episodes`` demonstrator episodes with action noise ``noise`` (seeds
    from ``seed``; only successful ones with ``only_successful``) generated under ``cache``."""

    path: str | None = None
    episodes: int = 10
    noise: float = 0.1
    seed: int = 0
    only_successful: bool = False
    cache: str = "datasets"


def offline_dataset(
    factory: EnvFactory,
    env_settings: Mapping[str, Any],
    settings: DataSettings,
    obs_spec: Mapping[str, tuple[int, ...]],
    action_dim: int,
) -> Dataset:
    """Load the dataset at ``settings.path``; without one, generate the demonstrator episodes
    into a folder under ``settings.cache`` named by the env's settings and the generation
    settings, or reuse that folder (a killed generation is completed). Either way the dataset
    is checked against the env's ``action_dim`` and observation shapes ``obs_spec`` (see
    :func:`~framework.data.format.observation_spec`)."""
    path = settings.path
    if path is None:
        generation = dataclasses.asdict(settings)
        del generation["path"], generation["cache"]
        folder = cached_dataset_folder(settings.cache, env_settings, generation)
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Parallel runs (e.g. a multirun over seeds) share the folder: one generates it.
        with FileLock(str(folder) + ".lock"):
            manifest = folder / MANIFEST
            stored = len(json.loads(manifest.read_text())["episodes"]) if manifest.exists() else 0
            if stored < settings.episodes:
                label = env_settings.get("task", env_settings.get("name", "demonstrator"))
                metadata = {**generation, "env_settings": dict(env_settings)}
                collect_dataset(
                    factory,
                    settings.episodes - stored,
                    settings.noise,
                    folder,
                    metadata,
                    settings.seed,
                    settings.only_successful,
                    label=str(label),
                )
        path = str(folder)
    return load_dataset(path, action_dim=action_dim, obs_spec=obs_spec)


def with_sparse_rewards(episode: Episode) -> Episode:
    """``episode`` with ``reward`` replaced by its ``success`` column as float32 (1.0 on
    success steps): the sparse reward of envs built with ``reward: sparse``, whatever reward
    the dataset stored."""
    return {**episode, "reward": np.asarray(episode["success"], np.float32)}
