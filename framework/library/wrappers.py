"""Gymnasium wrappers shared by the robotics env factories: action repeat, a sparse success
reward, the framework's observation modes, and MuJoCo render settings.

Time limits need no wrapper of ours: the factories pass ``max_episode_steps`` to
``gymnasium.make``, which applies gymnasium's ``TimeLimit``.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; mujoco reads it when imported

from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

from framework.errors import UserInputError

#: Observation modes: a float32 vector, a uint8 (3, H, W) image, or a dict of both.
OBS_MODES = ("state", "pixels", "both")

StepResult = tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]


def check_observation_settings(obs_mode: str, image_size: int, action_repeat: int) -> None:
    """Reject an unknown observation mode or a non-positive image size or action repeat, with
    the config key in the message; shared by the env factories."""
    if obs_mode not in OBS_MODES:
        raise UserInputError(
            f"env.obs_mode must be one of {', '.join(OBS_MODES)}; got {obs_mode!r}"
        )
    if action_repeat < 1 or image_size < 1:
        raise UserInputError(
            f"env.action_repeat and env.image_size must be positive; got {action_repeat} "
            f"and {image_size}"
        )


class ActionRepeat(gym.Wrapper):
    """Applies each action ``repeats`` times: rewards are summed and ``info['success']`` is
    OR-ed over the repeats; the repeats stop early when the episode ends.

    Hand-written: gymnasium's ``RepeatAction`` returns only the last step's info, which loses a
    success reached before the last repeat.
    """

    def __init__(self, env: gym.Env, repeats: int) -> None:
        super().__init__(env)
        self.repeats = repeats

    def step(self, action: Any) -> StepResult:
        total, success = 0.0, False
        for _ in range(self.repeats):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            success = success or bool(info["success"])
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**info, "success": success}


class SuccessReward(gym.Wrapper):
    """Sparse reward: ``1.0`` on a step whose ``info['success']`` is true, else ``0.0``."""

    def step(self, action: Any) -> StepResult:
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float(info["success"]), terminated, truncated, info


class StatePixelObservation(gym.Wrapper):
    """The framework's observation modes for an env whose observations are state vectors.

    ``mode`` ``state`` returns the state as float32 ``(D,)``; ``pixels`` returns
    ``env.render()`` (an ``rgb_array`` env rendering ``image_size`` x ``image_size`` frames) as
    uint8 ``(3, H, W)``; ``both`` returns ``{"state": ..., "pixels": ...}``. In every mode
    ``info['state']`` holds a fresh float32 copy of the state vector, at reset and at every
    step, so state-based tools (scripted policies, success checks) also work from pixels.
    ``rotate_180`` turns every frame half a turn, for cameras mounted upside down.

    Hand-written: gymnasium's ``AddRenderObservation`` gives ``(H, W, 3)`` frames, drops the
    state in pixel-only mode and resets the env when it is built.
    """

    def __init__(
        self, env: gym.Env, mode: str, image_size: int = 64, rotate_180: bool = False
    ) -> None:
        super().__init__(env)
        if mode not in OBS_MODES:
            raise ValueError(f"observation mode must be one of {OBS_MODES}; got {mode!r}")
        self.mode, self.rotate_180 = mode, rotate_180
        inner = env.observation_space
        state_space = gym.spaces.Box(
            inner.low.astype(np.float32), inner.high.astype(np.float32), dtype=np.float32
        )
        pixel_space = gym.spaces.Box(0, 255, (3, image_size, image_size), dtype=np.uint8)
        self.observation_space = {
            "state": state_space,
            "pixels": pixel_space,
            "both": gym.spaces.Dict({"state": state_space, "pixels": pixel_space}),
        }[mode]

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        state, info = self.env.reset(seed=seed, options=options)
        return self._observe(state, info)

    def step(self, action: Any) -> StepResult:
        state, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._observe(state, info)
        return obs, reward, terminated, truncated, info

    def _observe(self, state: np.ndarray, info: dict) -> tuple[Any, dict]:
        state = np.array(state, dtype=np.float32)
        info = {**info, "state": state.copy()}
        if self.mode == "state":
            return state, info
        frame = self.env.render()
        if self.rotate_180:
            frame = frame[::-1, ::-1]
        pixels = np.ascontiguousarray(frame.transpose(2, 0, 1))
        return (pixels if self.mode == "pixels" else {"state": state, "pixels": pixels}), info


class OwnGLContext(gym.Wrapper):
    """Makes ``renderer``'s OpenGL context current before every ``render()``, as
    ``mujoco.Renderer`` does. gymnasium's ``MujocoRenderer`` switches only between its own
    viewers, so with several envs in one process a frame would be drawn in the context of
    whichever env rendered last (blank once that env is closed)."""

    def __init__(self, env: gym.Env, renderer: MujocoRenderer) -> None:
        super().__init__(env)
        self.renderer = renderer

    def render(self) -> Any:
        if self.renderer.viewer is not None:
            self.renderer.viewer.make_context_current()
        return self.env.render()


def set_render_effects(model: mujoco.MjModel, shadows: bool, reflections: bool) -> None:
    """Switch shadows and mirror reflections off in ``model``, for every renderer drawing it.

    Shadows go by clearing each light's ``castshadow`` (no shadow-map pass), reflections by
    zeroing every material's ``reflectance`` (no mirrored pass). With CPU OpenGL (llvmpipe)
    the shadow maps alone make a frame about 4x slower. ``True`` keeps the model's own setting.
    """
    if not shadows:
        model.light_castshadow[:] = 0
    if not reflections:
        model.mat_reflectance[:] = 0
