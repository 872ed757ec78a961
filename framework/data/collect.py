"""Offline datasets from scripted policies (MetaWorld's own, or any env factory's
demonstrator), with Gaussian action noise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from framework.data.format import DatasetWriter, Episode, observation_entries, succeeded
from framework.errors import UserInputError
from framework.evaluation import save_frame_strip
from framework.interfaces import EnvFactory
from framework.library.metaworld_env import MetaWorldEnvFactory

#: Stored rewards are MetaWorld's shaped ones; sparse rewards are the ``success`` column.
REWARD = "dense"


def record_episode(
    env: gym.Env, act: Callable[[Any, dict[str, Any]], np.ndarray], seed: int | None = None
) -> Episode:
    """Run one episode of ``env`` from ``env.reset(seed=seed)`` to its end with actions
    ``act(observation, info)`` (``info`` from the reset or the last step); returns it in the
    episode layout (docs/datasets.md)."""
    observation, info = env.reset(seed=seed)
    rows: dict[str, list[np.ndarray]] = {
        key: [value] for key, value in observation_entries(observation).items()
    }
    done = False
    while not done:
        action = act(observation, info)
        observation, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        step = {
            "action": action,
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "success": info.get("success", False),
            **observation_entries(observation),
        }
        for key, value in step.items():
            rows.setdefault(key, []).append(value)
    dtypes = {"action": np.float32, "reward": np.float32}
    return {key: np.asarray(values, dtype=dtypes.get(key)) for key, values in rows.items()}


def collect_episode(
    env: gym.Env,
    policy: Callable[[np.ndarray], np.ndarray],
    noise: float,
    rng: np.random.Generator,
) -> Episode:
    """Run one episode of an env that reports ``info["state"]`` to its end, acting
    ``policy(info["state"]) + N(0, noise²)`` clipped to the action bounds."""
    low, high = env.action_space.low, env.action_space.high

    def act(_: Any, info: dict[str, Any]) -> np.ndarray:
        action = policy(info["state"])
        action = np.clip(action + noise * rng.standard_normal(action.shape), low, high)
        return action.astype(np.float32)

    return record_episode(env, act)


def collect(
    task: str,
    episodes: int,
    noise: float,
    obs: str,
    out: Path,
    seed: int = 0,
    image_size: int = 64,
    max_episode_steps: int | None = None,
    only_successful: bool = False,
) -> float:
    """Append ``episodes`` scripted episodes of MetaWorld ``task`` (observation mode ``obs``,
    frames of ``image_size`` pixels a side, MetaWorld's dense rewards) to the dataset at
    ``out``; see :func:`collect_dataset`."""
    factory = MetaWorldEnvFactory(
        task, obs, image_size, reward=REWARD, max_episode_steps=max_episode_steps
    )
    metadata = {"env": "metaworld", "task": task, "obs": obs, "noise": noise, "seed": seed}
    metadata.update(reward=REWARD)
    if obs != "state":
        metadata.update(image_size=image_size, camera=factory.camera)
    return collect_dataset(factory, episodes, noise, out, metadata, seed, only_successful, task)


def collect_dataset(
    factory: EnvFactory,
    episodes: int,
    noise: float,
    out: Path,
    metadata: dict[str, Any],
    seed: int = 0,
    only_successful: bool = False,
    label: str = "scripted",
) -> float:
    """Append ``episodes`` episodes of ``factory``'s demonstrator (actions with Gaussian noise
    of std ``noise``) to the dataset at ``out``, stored with ``metadata``; returns the fraction
    of the episodes run that reached success at some step. With ``only_successful``, failed
    episodes are discarded and more are run (at most ``3 * episodes`` in all) until
    ``episodes`` successful ones are stored. A run appending to an existing dataset seeds its
    env and noise with ``seed`` plus the number of episodes already stored. With pixels,
    ``out/strips/episode_NNNNNN.png`` shows 10 evenly spaced frames of each episode."""
    if episodes < 1 or noise < 0:
        raise UserInputError(
            f"--episodes must be positive and --noise non-negative; got {episodes}, {noise}"
        )
    policy = factory.demonstrator()
    if policy is None:
        raise UserInputError(
            f"{type(factory).__name__} has no scripted demonstrator to generate offline data "
            "with; pass a dataset folder instead"
        )
    out = Path(out)
    writer = DatasetWriter(out, metadata)
    start = seed + len(writer)
    env = factory.make(start)
    rng = np.random.default_rng(start)
    successes = attempts = stored = 0
    progress = tqdm(total=episodes, desc=f"collect {label}", unit="episode")
    try:
        while stored < episodes:
            if attempts == 3 * episodes:
                raise UserInputError(
                    f"only {stored} of {attempts} scripted {label} episodes succeeded with noise "
                    f"{noise}; lower --noise or drop --only-successful"
                )
            episode = collect_episode(env, policy, noise, rng)
            attempts += 1
            success = succeeded(episode)
            successes += success
            if only_successful and not success:
                continue
            path = writer.write(episode)
            if "obs.pixels" in episode:
                strip = out / "strips" / path.with_suffix(".png").name
                save_frame_strip(episode["obs.pixels"], strip, count=10)
            stored += 1
            progress.update()
    finally:
        progress.close()
        env.close()
    return successes / attempts
