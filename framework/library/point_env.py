"""A point-mass reaching task: seconds to learn, for tests and smoke runs of learning code."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from framework.errors import UserInputError
from framework.interfaces import Demonstrator, EnvFactory
from framework.library.envs import seeded


class PointReach(gym.Env):
    """A point starts uniformly in ``[-1, 1]²`` and must reach the disc of ``radius`` around
    the origin: ``x' = clip(x + step_size · a, -1, 1)``, ``a ∈ [-1, 1]²``. The reward is 1.0 on
    steps that end inside the disc (sparse, like MetaWorld's success reward), else 0.0;
    ``info`` carries ``success`` and ``state`` (the observation, for the demonstrator)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, step_size: float = 0.1, radius: float = 0.15) -> None:
        self.step_size, self.radius = step_size, radius
        self.position = np.zeros(2, np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        return self.position.copy(), {"state": self.position.copy(), "success": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        move = self.step_size * np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        self.position = np.clip(self.position + move, -1.0, 1.0).astype(np.float32)
        success = bool(np.linalg.norm(self.position) <= self.radius)
        info = {"state": self.position.copy(), "success": success}
        return self.position.copy(), float(success), False, False, info


class PointReachFactory(EnvFactory):
    """:class:`PointReach` episodes of ``max_episode_steps`` steps (``env=point``)."""

    def __init__(
        self, max_episode_steps: int = 30, step_size: float = 0.1, radius: float = 0.15
    ) -> None:
        if max_episode_steps < 1 or step_size <= 0 or radius <= 0:
            raise UserInputError(
                "env.max_episode_steps, env.step_size and env.radius must be positive; got "
                f"{max_episode_steps}, {step_size}, {radius}"
            )
        self.max_episode_steps, self.step_size, self.radius = max_episode_steps, step_size, radius

    def make(self, seed: int) -> gym.Env:
        env = gym.wrappers.TimeLimit(
            PointReach(self.step_size, self.radius), self.max_episode_steps
        )
        return seeded(env, seed)

    def demonstrator(self) -> Demonstrator:
        """Full speed straight at the origin, stopping on it."""
        step = self.step_size
        return lambda state: np.clip(-state / step, -1.0, 1.0).astype(np.float32)
