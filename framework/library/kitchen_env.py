"""Franka Kitchen (gymnasium-robotics ``FrankaKitchen-v1``): a 9-DoF arm with kitchen tasks."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; mujoco reads it when imported

from typing import Any

import gymnasium as gym

from framework.errors import UserInputError
from framework.interfaces import EnvFactory
from framework.library.envs import seeded
from framework.library.wrappers import (
    ActionRepeat,
    OwnGLContext,
    StatePixelObservation,
    check_observation_settings,
    set_render_effects,
)

#: D4RL's "kitchen-complete" task set.
DEFAULT_TASKS = ("microwave", "kettle", "light switch", "slide cabinet")


class _TasksSuccess(gym.Wrapper):
    """``info['success']``: every task of the episode has been completed."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        done = len(info["episode_task_completions"]) == len(self.env.unwrapped.goal)
        return obs, reward, terminated, truncated, {**info, "success": done}


class FrankaKitchenFactory(EnvFactory):
    """Franka Kitchen with ``tasks`` to complete, in any order.

    Reward: the number of tasks completed on that step; a task counts once per episode, so the
    return is the number of tasks done. ``info['success']``: all tasks done (the episode then
    terminates). ``obs_mode``: ``state`` (float32 (59,): robot joint positions and velocities,
    then object positions and velocities), ``pixels`` (uint8 (3, image_size, image_size) from
    the env's default upright camera) or ``both``; ``info['state']`` holds the state in every
    mode. Rendering is slow on CPU (well under 10 frames/s even with ``shadows`` and
    ``reflections`` off). ``max_episode_steps``: null keeps the env's 280.
    """

    def __init__(
        self,
        tasks: tuple[str, ...] | list[str] = DEFAULT_TASKS,
        obs_mode: str = "state",
        image_size: int = 64,
        action_repeat: int = 1,
        shadows: bool = False,
        reflections: bool = False,
        max_episode_steps: int | None = None,
    ) -> None:
        # Imported here rather than on top: importing gymnasium_robotics prints a notice on
        # stderr, which every `framework` command would show otherwise.
        from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS

        unknown = [task for task in tasks if task not in OBS_ELEMENT_GOALS]
        if unknown or not tasks:
            raise UserInputError(
                f"env.tasks must name Franka Kitchen tasks; got {list(tasks)}. Valid tasks: "
                f"{', '.join(OBS_ELEMENT_GOALS)}"
            )
        check_observation_settings(obs_mode, image_size, action_repeat)
        self.tasks, self.obs_mode, self.image_size = list(tasks), obs_mode, image_size
        self.action_repeat, self.shadows, self.reflections = action_repeat, shadows, reflections
        self.max_episode_steps = max_episode_steps

    def make(self, seed: int) -> gym.Env:
        render = (
            {}
            if self.obs_mode == "state"
            else {"render_mode": "rgb_array", "width": self.image_size, "height": self.image_size}
        )
        # "module:id" imports gymnasium_robotics (registering the id) in any process, e.g. the
        # workers of an AsyncVectorEnv. The passive checker only warns that the env's goal
        # dicts are shared between calls.
        env = gym.make(
            "gymnasium_robotics:FrankaKitchen-v1",
            tasks_to_complete=self.tasks,
            max_episode_steps=self.max_episode_steps,
            disable_env_checker=True,
            **render,
        )
        set_render_effects(env.unwrapped.model, self.shadows, self.reflections)
        env = gym.wrappers.TransformObservation(
            OwnGLContext(env, env.unwrapped.robot_env.mujoco_renderer),
            lambda obs: obs["observation"],
            env.observation_space["observation"],
        )
        env = _TasksSuccess(env)
        if self.action_repeat > 1:
            env = ActionRepeat(env, self.action_repeat)
        env = StatePixelObservation(env, self.obs_mode, self.image_size)
        return seeded(env, seed)
