"""MetaWorld v3: any of its 50 tasks (``Meta-World/MT1``), from state, pixels or both."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; mujoco reads it when imported

from typing import Any

import gymnasium as gym
import metaworld  # importing it registers the Meta-World/* gymnasium ids
import mujoco
import numpy as np
from metaworld.policies import ENV_POLICY_MAP
from metaworld.policies.policy import Policy as MetaWorldPolicy
from metaworld.sawyer_xyz_env import SawyerXYZEnv

from framework.errors import UserInputError
from framework.interfaces import Demonstrator, EnvFactory
from framework.library.envs import seeded
from framework.library.wrappers import (
    ActionRepeat,
    OwnGLContext,
    StatePixelObservation,
    SuccessReward,
    check_observation_settings,
    set_render_effects,
)

TASKS = tuple(sorted(metaworld.ALL_V3_ENVIRONMENTS))
#: The cameras every MetaWorld scene defines.
CAMERAS = ("topview", "corner", "corner2", "corner3", "corner4", "behindGripper", "gripperPOV")
#: MetaWorld's own episode length; its envs refuse to step past it.
HORIZON = SawyerXYZEnv.max_path_length
REWARDS = ("sparse", "dense")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise UserInputError(f"MetaWorld has no task {task!r}; valid tasks: {', '.join(TASKS)}")


def scripted_policy(task: str) -> MetaWorldPolicy:
    """MetaWorld's own scripted policy for ``task``: ``get_action(state)`` maps the raw state
    vector (39,) to an action (4,). The state is the observation in ``state`` mode and
    ``info['state']`` in every mode (see :class:`MetaWorldEnvFactory`). Some of these policies
    write into the array they are given: pass a copy you do not keep."""
    _check_task(task)
    return ENV_POLICY_MAP[task]()


class _RegularMetaWorld(gym.Wrapper):
    """Makes MetaWorld's env follow gymnasium's contract.

    - Its own observation space is fixed before a task sets the goal bounds, so observations
      fall outside it; this takes the space MetaWorld computes once a task is set (build this
      wrapper after a first reset).
    - ``info['success']`` becomes a bool (MetaWorld gives 0.0 or 1.0).
    - ``reset(seed=...)`` reseeds MetaWorld's generator, which picks the episode's variant of
      the task (object and goal positions, 50 per task); MetaWorld itself ignores the seed.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = env.unwrapped.sawyer_observation_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        if seed is not None:
            self.env.unwrapped.seed(seed)
        return self.env.reset(options=options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "success": bool(info["success"])}


def _camera_upside_down(env: gym.Env, camera: str) -> bool:
    """Whether ``camera``'s image-up axis points below the horizon in the current pose. All four
    ``corner*`` cameras of MetaWorld's scene are mounted so; their frames need a half turn."""
    model, data = env.unwrapped.model, env.unwrapped.data
    camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    return bool(data.cam_xmat[camera_id].reshape(3, 3)[2, 1] < 0)


class MetaWorldEnvFactory(EnvFactory):
    """One MetaWorld v3 task, e.g. ``door-open-v3``; each reset draws one of its 50 variants.

    ``obs_mode``: ``state`` (float32 (39,)), ``pixels`` (uint8 (3, image_size, image_size))
    or ``both`` (a dict of the two). ``info['state']`` holds the state vector at reset and at
    every step in all modes (for :func:`scripted_policy`), ``info['success']`` a bool at every
    step. ``camera``: one of :data:`CAMERAS`; the default ``corner4`` is the close view of the
    arm and the objects that TD-MPC uses; upside-down cameras (all ``corner*``) are turned a
    half turn so frames are upright. ``action_repeat``: each action is applied that many
    times, rewards summed and success OR-ed. ``reward``: ``sparse`` (1.0 on success steps,
    else 0.0) or ``dense`` (MetaWorld's shaped reward, 0 to 10 per step). ``shadows`` and
    ``reflections`` off make CPU rendering about 4x faster. ``max_episode_steps`` counts
    MetaWorld steps (before action repeat), at most and by default :data:`HORIZON`.
    """

    def __init__(
        self,
        task: str = "door-open-v3",
        obs_mode: str = "state",
        image_size: int = 64,
        camera: str = "corner4",
        action_repeat: int = 1,
        reward: str = "sparse",
        shadows: bool = False,
        reflections: bool = False,
        max_episode_steps: int | None = None,
    ) -> None:
        _check_task(task)
        check_observation_settings(obs_mode, image_size, action_repeat)
        for key, value, valid in [("camera", camera, CAMERAS), ("reward", reward, REWARDS)]:
            if value not in valid:
                raise UserInputError(f"env.{key} must be one of {', '.join(valid)}; got {value!r}")
        if max_episode_steps is not None and not 1 <= max_episode_steps <= HORIZON:
            raise UserInputError(
                f"env.max_episode_steps must be between 1 and MetaWorld's horizon {HORIZON} "
                f"(or null for {HORIZON}); got {max_episode_steps}"
            )
        self.task, self.obs_mode, self.image_size, self.camera = task, obs_mode, image_size, camera
        self.action_repeat, self.reward = action_repeat, reward
        self.shadows, self.reflections = shadows, reflections
        self.max_episode_steps = max_episode_steps

    def demonstrator(self) -> Demonstrator:
        """The task's scripted policy; it gets a copy of the state (some policies edit it)."""
        policy = scripted_policy(self.task)

        def act(state: np.ndarray) -> np.ndarray:
            with warnings.catch_warnings():  # its P-controllers warn whenever they saturate
                warnings.filterwarnings("ignore", "Constant\\(s\\) may be too high")
                return policy.get_action(state.copy())

        return act

    def make(self, seed: int) -> gym.Env:
        render = (
            {}
            if self.obs_mode == "state"
            else {
                "render_mode": "rgb_array",
                "camera_name": self.camera,
                "width": self.image_size,
                "height": self.image_size,
            }
        )
        # The passive checker only repeats the observation-space mismatch fixed below.
        env = gym.make(
            "Meta-World/MT1",
            env_name=self.task,
            seed=seed,
            max_episode_steps=self.max_episode_steps,
            disable_env_checker=True,
            **render,
        )
        env.reset()
        set_render_effects(env.unwrapped.model, self.shadows, self.reflections)
        env = _RegularMetaWorld(OwnGLContext(env, env.unwrapped.mujoco_renderer))
        if self.action_repeat > 1:
            env = ActionRepeat(env, self.action_repeat)
        if self.reward == "sparse":
            env = SuccessReward(env)
        rotate = self.obs_mode != "state" and _camera_upside_down(env, self.camera)
        env = StatePixelObservation(env, self.obs_mode, self.image_size, rotate_180=rotate)
        return seeded(env, seed)
