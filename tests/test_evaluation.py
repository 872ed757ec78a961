"""Policy evaluation over env factories, videos and frame strips."""

from __future__ import annotations

import importlib.util

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from framework.errors import UserInputError
from framework.evaluation import evaluate, save_frame_strip, save_video
from framework.interfaces import Policy
from framework.library.envs import GymEnvFactory
from framework.library.metaworld_env import MetaWorldEnvFactory, scripted_policy


class _Scripted(Policy):
    """MetaWorld's scripted policy acting on state observations."""

    def __init__(self, task: str) -> None:
        self.policy = scripted_policy(task)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.policy.get_action(obs.copy()).astype(np.float32)


class _Constant(Policy):
    """The same action every step; counts its resets."""

    def __init__(self, action: np.ndarray) -> None:
        self.action, self.resets = action, 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.action

    def reset(self) -> None:
        self.resets += 1


def test_scripted_policy_evaluates_to_full_success_in_parallel_envs():
    factory = MetaWorldEnvFactory(task="door-open-v3", max_episode_steps=150)
    result = evaluate(_Scripted("door-open-v3"), factory, episodes=2, seed=0, num_envs=2)
    assert result["success_rate"] == 1.0 and result["mean_length"] == 150
    assert 0 < result["mean_return"] <= 150  # sparse reward: steps spent in success


@pytest.mark.parametrize("asynchronous", [False, True])
def test_evaluate_is_independent_of_the_number_of_envs(asynchronous):
    factory = GymEnvFactory("Pendulum-v1", max_episode_steps=20)
    policy = _Constant(np.array([0.5], dtype=np.float32))
    alone = evaluate(policy, factory, episodes=3, seed=4)
    assert policy.resets == 3
    parallel = evaluate(policy, factory, episodes=3, seed=4, num_envs=2, asynchronous=asynchronous)
    assert parallel == pytest.approx(alone)
    assert alone["success_rate"] == 0.0 and alone["mean_length"] == 20 and alone["std_return"] > 0


def _frames(count: int, height: int = 8, width: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 3, height, width), dtype=np.uint8)


def test_save_video_writes_a_gif(tmp_path):
    save_video(_frames(5, 16, 16), tmp_path / "clip.gif")
    assert iio.imread(tmp_path / "clip.gif").shape[:3] == (5, 16, 16)
    with pytest.raises(UserInputError, match=".gif or .mp4"):
        save_video(_frames(2), tmp_path / "clip.avi")


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is not None, reason="has ffmpeg")
def test_save_video_mp4_without_ffmpeg_says_what_to_install(tmp_path):
    with pytest.raises(UserInputError, match="imageio-ffmpeg"):
        save_video(_frames(2), tmp_path / "clip.mp4")


def test_save_frame_strip_puts_evenly_spaced_frames_side_by_side(tmp_path):
    frames = _frames(10)
    save_frame_strip(frames, tmp_path / "strip.png", count=4)
    strip = np.asarray(Image.open(tmp_path / "strip.png"))
    expected = np.concatenate([frames[i].transpose(1, 2, 0) for i in (0, 3, 6, 9)], axis=1)
    np.testing.assert_array_equal(strip, expected)
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        save_frame_strip(frames.transpose(0, 2, 3, 1), tmp_path / "bad.png")
