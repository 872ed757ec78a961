"""Evaluating a policy on an env factory, and writing frames out as videos and image strips."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
from gymnasium.vector.utils import iterate
from PIL import Image

from framework.errors import UserInputError
from framework.interfaces import EnvFactory, Policy


def evaluate(
    policy: Policy,
    env_factory: EnvFactory,
    episodes: int,
    seed: int,
    num_envs: int = 1,
    asynchronous: bool = False,
) -> dict[str, float]:
    """Run ``episodes`` episodes; episode ``i`` starts from ``reset(seed=seed + i)``.

    Episodes run ``num_envs`` at a time in a gymnasium vector env (``AsyncVectorEnv``, one
    process per env, when ``asynchronous``); each env gets its own deep copy of ``policy``
    (policies keep per-episode state), ``reset()`` before each of its episodes; a deterministic
    policy scores the same for any ``num_envs``. Returns ``success_rate`` (the fraction of
    episodes with ``info['success']`` true at some step; 0 for envs that never report it),
    ``mean_return``, ``std_return`` and ``mean_length`` (agent steps).
    """
    num_envs = min(num_envs, episodes)
    makers = [lambda rank=rank: env_factory.make(seed + rank) for rank in range(num_envs)]
    vector = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
    envs = vector(makers, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    policies = [policy] + [copy.deepcopy(policy) for _ in range(num_envs - 1)]
    returns, lengths, successes = [], [], []
    try:
        for first in range(0, episodes, num_envs):
            # Each wave starts num_envs episodes; envs past the last episode run unrecorded.
            recorded = min(num_envs, episodes - first)
            result = _run_wave(policies, envs, seed + first)
            for values, wave in zip((returns, lengths, successes), result, strict=True):
                values.extend(wave[:recorded])
    finally:
        envs.close()
    return {
        "success_rate": float(np.mean(successes)),
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_length": float(np.mean(lengths)),
    }


def _run_wave(
    policies: list[Policy], envs: gym.vector.VectorEnv, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One episode in every env (env ``j`` from ``reset(seed=seed + j)``); returns per-env
    return, length and success. An env that finishes first is auto-reset by the vector env on
    the next step; what it does after its episode is ignored."""
    n = envs.num_envs
    obs, _ = envs.reset(seed=[seed + j for j in range(n)])
    for policy in policies:
        policy.reset()
    returns, lengths = np.zeros(n), np.zeros(n, dtype=int)
    success, running = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    while running.any():
        per_env = iterate(envs.single_observation_space, obs)
        actions = np.stack([p.act(o) for p, o in zip(policies, per_env, strict=True)])
        obs, reward, terminated, truncated, info = envs.step(actions)
        returns += np.where(running, reward, 0.0)
        lengths += running
        success |= running & info.get("success", np.zeros(n, dtype=bool)).astype(bool)
        running &= ~(terminated | truncated)
    return returns, lengths, success


def _as_images(frames: np.ndarray) -> np.ndarray:
    """Checks ``(T, 3, H, W)`` uint8 frames and turns them into ``(T, H, W, 3)`` images."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 of shape (T, 3, H, W); got {frames.dtype} {frames.shape}"
        )
    return frames.transpose(0, 2, 3, 1)


def save_video(frames: np.ndarray, path: Path, fps: int = 20) -> None:
    """Write ``(T, 3, H, W)`` uint8 frames (an episode's ``obs.pixels``) as a ``.gif``, or as
    an ``.mp4`` where the ``imageio-ffmpeg`` package is installed."""
    path = Path(path)
    if path.suffix not in (".gif", ".mp4"):
        raise UserInputError(f"videos are written as .gif or .mp4; got {path}")
    if path.suffix == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise UserInputError(
            f"writing {path} needs the imageio-ffmpeg package: `pip install imageio-ffmpeg`, "
            "or save a .gif instead"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    images = _as_images(frames)
    if path.suffix == ".gif":  # Pillow's GIF writer takes the frame duration in milliseconds
        iio.imwrite(path, images, duration=1000 / fps, loop=0)
    else:
        iio.imwrite(path, images, fps=fps)


def save_frame_strip(frames: np.ndarray, path: Path, count: int | None = None) -> None:
    """Write ``(T, 3, H, W)`` uint8 frames side by side as one PNG image; with ``count``, only
    that many frames evenly spaced from the first to the last."""
    images = _as_images(frames)
    if count is not None:
        picks = np.linspace(0, len(images) - 1, min(count, len(images)))
        images = images[picks.round().astype(int)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(list(images), axis=1)).save(path)
