"""MetaWorld and Franka Kitchen factories and the wrappers they share."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

from framework.errors import UserInputError
from framework.library.kitchen_env import FrankaKitchenFactory
from framework.library.metaworld_env import (
    CAMERAS,
    MetaWorldEnvFactory,
    _camera_upside_down,
    scripted_policy,
)
from framework.library.wrappers import ActionRepeat
from framework.plugins import load_plugins

CONFIGS = Path(__file__).parent.parent / "configs" / "env"


@pytest.fixture(scope="module")
def pixel_env():
    env = MetaWorldEnvFactory(obs_mode="pixels").make(0)
    yield env
    env.close()


def _scripted_episode(env: gym.Env, task: str, seed: int) -> list[tuple[float, bool]]:
    """(reward, success) of every step of one scripted episode."""
    policy, steps = scripted_policy(task), []
    _, info = env.reset(seed=seed)
    done = False
    while not done:
        _, reward, terminated, truncated, info = env.step(policy.get_action(info["state"]))
        steps.append((reward, info["success"]))
        done = terminated or truncated
    return steps


def test_metaworld_state_mode_shapes_and_dtypes():
    env = MetaWorldEnvFactory(task="drawer-open-v3").make(0)
    obs, info = env.reset(seed=3)
    assert obs.shape == (39,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(info["state"], obs)
    assert env.action_space.shape == (4,)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and obs.dtype == np.float32
        assert isinstance(info["success"], bool) and isinstance(reward, float)
    env.close()


def test_metaworld_reset_seed_picks_the_task_variant():
    env = MetaWorldEnvFactory(task="reach-v3").make(0)
    first, _ = env.reset(seed=5)
    other, _ = env.reset(seed=6)
    again, _ = env.reset(seed=5)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[-3:], other[-3:])  # another goal position
    env.close()


def test_metaworld_pixels_are_uint8_chw_in_the_space(pixel_env):
    obs, info = pixel_env.reset(seed=1)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
    assert pixel_env.observation_space.contains(obs)
    assert info["state"].shape == (39,) and info["state"].dtype == np.float32
    obs, *_, info = pixel_env.step(pixel_env.action_space.sample())
    assert pixel_env.observation_space.contains(obs) and info["state"].shape == (39,)


def test_metaworld_both_mode_gives_state_and_pixels():
    env = MetaWorldEnvFactory(obs_mode="both", image_size=32).make(0)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state", "pixels"} and env.observation_space.contains(obs)
    assert obs["pixels"].shape == (3, 32, 32) and obs["state"].dtype == np.float32
    env.close()


def test_default_camera_is_upright(pixel_env):
    """The wooden table fills the bottom half of an upright frame and little of the top."""
    obs, _ = pixel_env.reset(seed=0)
    red, green, blue = obs.astype(int)
    wood = (red > green) & (green > blue) & (red - blue > 30) & (red - blue < 110)
    top, bottom = wood[:32].mean(), wood[32:].mean()
    assert bottom > 0.3 and bottom > 4 * top


def test_corner_cameras_are_the_upside_down_ones(pixel_env):
    flipped = {camera: _camera_upside_down(pixel_env, camera) for camera in CAMERAS}
    assert [camera for camera, value in flipped.items() if value] == [
        "corner",
        "corner2",
        "corner3",
        "corner4",
    ]


def test_sparse_reward_equals_success_and_scripted_policy_solves_door_open():
    env = MetaWorldEnvFactory(task="door-open-v3", max_episode_steps=200).make(0)
    steps = _scripted_episode(env, "door-open-v3", seed=0)
    env.close()
    assert len(steps) == 200
    assert all(reward == float(success) for reward, success in steps)
    assert any(success for _, success in steps)


def test_action_repeat_sums_rewards_and_advances_the_sim():
    single = MetaWorldEnvFactory(task="reach-v3", reward="dense").make(0)
    repeated = MetaWorldEnvFactory(task="reach-v3", reward="dense", action_repeat=3).make(0)
    single.reset(seed=2)
    repeated.reset(seed=2)
    action = np.array([0.5, -0.3, 0.2, 1.0], dtype=np.float32)
    steps = [single.step(action) for _ in range(3)]
    obs, reward, *_ = repeated.step(action)
    np.testing.assert_array_equal(obs, steps[-1][0])
    assert reward == pytest.approx(sum(step[1] for step in steps)) and steps[0][1] > 0
    assert repeated.unwrapped.curr_path_length == 3
    single.close()
    repeated.close()


class _SucceedsOnce(gym.Env):
    """Reward 1 per step; success only on the second step."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Box(-1, 1, (1,))

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), 1.0, False, self.t >= 5, {"success": self.t == 2}


def test_action_repeat_ors_success_and_stops_at_episode_end():
    env = ActionRepeat(_SucceedsOnce(), repeats=3)
    env.reset()
    _, reward, _, truncated, info = env.step(np.zeros(1))
    assert reward == 3.0 and info["success"] and not truncated
    _, reward, _, truncated, info = env.step(np.zeros(1))
    assert reward == 2.0 and not info["success"] and truncated


def test_max_episode_steps_counts_metaworld_steps():
    env = MetaWorldEnvFactory(task="reach-v3", max_episode_steps=6, action_repeat=2).make(0)
    env.reset(seed=0)
    ends = [env.step(env.action_space.sample())[3] for _ in range(3)]
    assert ends == [False, False, True]
    env.close()


def test_unknown_task_lists_valid_names():
    with pytest.raises(UserInputError, match="valid tasks: .*door-open-v3.*reach-v3"):
        MetaWorldEnvFactory(task="door-opn-v3")
    with pytest.raises(UserInputError, match="valid tasks"):
        scripted_policy("door-opn-v3")
    with pytest.raises(UserInputError, match="corner4"):
        MetaWorldEnvFactory(camera="front")
    with pytest.raises(UserInputError, match="horizon 500"):
        MetaWorldEnvFactory(max_episode_steps=1000)


@pytest.mark.parametrize("name", ["metaworld", "kitchen"])
def test_env_configs_build_through_the_registry(name):
    factory = load_plugins().registry.build("env", OmegaConf.load(CONFIGS / f"{name}.yaml"))
    env = factory.make(0)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.close()


def test_kitchen_state_mode_reset_and_step():
    env = FrankaKitchenFactory().make(0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (59,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert env.action_space.shape == (9,)
    obs, reward, terminated, _, info = env.step(env.action_space.sample())
    assert obs.shape == (59,) and reward == 0.0 and not terminated
    assert info["success"] is False and info["state"].shape == (59,)
    env.close()


def test_kitchen_reward_counts_completed_tasks():
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import (
        OBS_ELEMENT_GOALS,
        OBS_ELEMENT_INDICES,
    )

    env = FrankaKitchenFactory().make(0)
    env.reset(seed=0)
    kitchen, hold = env.unwrapped, np.zeros(9)

    def complete(*tasks: str) -> tuple[float, bool, dict]:
        for task in tasks:
            kitchen.data.qpos[OBS_ELEMENT_INDICES[task]] = OBS_ELEMENT_GOALS[task]
        _, reward, terminated, _, info = env.step(hold)
        return reward, terminated, info

    reward, terminated, info = complete("microwave", "kettle")
    assert reward == 2.0 and not terminated and not info["success"]
    reward, terminated, info = complete("microwave", "kettle")  # counted once per episode
    assert reward == 0.0
    reward, terminated, info = complete("light switch", "slide cabinet")
    assert reward == 2.0 and terminated and info["success"]
    env.close()


def test_kitchen_renders_one_frame():
    env = FrankaKitchenFactory(obs_mode="pixels").make(0)  # make() renders a first frame
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8 and obs.std() > 10
    assert env.observation_space.contains(obs) and info["state"].shape == (59,)
    env.close()
