"""Environment factories: any gymnasium id, and mbrl-lib's own model-based RL test envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mbrl.env.cartpole_continuous
import mbrl.env.reward_fns
import mbrl.env.termination_fns

from framework.errors import UserInputError
from framework.interfaces import EnvFactory


def seeded(env: gym.Env, seed: int) -> gym.Env:
    """Reset ``env`` with ``seed`` and seed its action space; later resets continue the stream."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


class GymEnvFactory(EnvFactory):
    """``gymnasium.make(id, **kwargs)``, with an optional episode-length override."""

    def __init__(self, id: str, max_episode_steps: int | None = None, **kwargs: Any) -> None:
        self.id, self.max_episode_steps, self.kwargs = id, max_episode_steps, kwargs
        if id not in gym.registry:
            raise UserInputError(
                f"no gymnasium environment has id {id!r}. Check the spelling and the version "
                "suffix (e.g. 'Pendulum-v1'); `python -c \"import gymnasium; "
                'gymnasium.pprint_registry()"` lists the ids installed.'
            )

    def make(self, seed: int) -> gym.Env:
        env = gym.make(self.id, max_episode_steps=self.max_episode_steps, **self.kwargs)
        return seeded(env, seed)


class _ResetWithoutOptions(gym.Wrapper):
    """mbrl-lib's envs take no ``options`` in ``reset()``, which gymnasium 1.x's ``TimeLimit``
    passes; this drops them."""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        return self.env.reset(seed=seed)


class MbrlEnvFactory(EnvFactory):
    """One of mbrl-lib's envs, with its known reward and termination functions for models."""

    ENVS = {
        "cartpole_continuous": (
            mbrl.env.cartpole_continuous.CartPoleEnv,
            mbrl.env.reward_fns.cartpole,
            mbrl.env.termination_fns.cartpole,
        ),
    }

    def __init__(self, id: str, max_episode_steps: int = 200) -> None:
        if id not in self.ENVS:
            raise UserInputError(
                f"mbrl env {id!r} is not supported; valid ids: {', '.join(self.ENVS)}"
            )
        self.id, self.max_episode_steps = id, max_episode_steps
        self._env_class, self.reward_fn, self.termination_fn = self.ENVS[id]

    def make(self, seed: int) -> gym.Env:
        env = gym.wrappers.TimeLimit(
            _ResetWithoutOptions(self._env_class()), self.max_episode_steps
        )
        return seeded(env, seed)
