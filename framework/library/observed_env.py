"""The env a learner reads through its encoder: built so that it serves what the encoder reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from framework.data import observation_spec
from framework.data.format import Episode
from framework.data.offline import DataSettings, offline_dataset, with_sparse_rewards
from framework.errors import UserInputError
from framework.interfaces import EnvFactory
from framework.registry import ComponentRegistry


@dataclass(frozen=True)
class ObservedEnv:
    """``factory`` built from ``settings`` (the ``env`` config, its ``obs_mode`` set to what
    the encoder reads); ``obs_spec`` the observation shapes it gives (dataset keys such as
    ``obs.state``), ``obs_key`` the one the encoder reads, ``action_dim`` its action size."""

    factory: EnvFactory
    settings: dict[str, Any]
    obs_spec: dict[str, tuple[int, ...]]
    obs_key: str
    action_dim: int

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of the observations the encoder reads."""
        return self.obs_spec[self.obs_key]

    def offline_episodes(self, data: DataSettings) -> list[Episode]:
        """The offline data (:func:`~framework.data.offline.offline_dataset`) as learners train
        on it: the encoder's observations, actions, flags and rewards, the rewards replaced
        by the success column when the env's reward is sparse."""
        dataset = offline_dataset(self.factory, self.settings, data, self.obs_spec, self.action_dim)
        sparse = self.settings.get("reward") == "sparse"
        keep = {self.obs_key, "action", "reward", "terminated", "truncated", "success"}
        return [
            {
                key: value
                for key, value in (with_sparse_rewards(e) if sparse else e).items()
                if key in keep
            }
            for e in dataset.episodes
        ]


def observed_env(registry: ComponentRegistry, cfg: DictConfig, seed: int) -> ObservedEnv:
    """The run's env for its ``encoder``: ``encoder=conv`` switches an env with an ``obs_mode``
    to pixels. Fails with a clear message when the env cannot give what the encoder reads."""
    settings = OmegaConf.to_container(cfg.env, resolve=True)
    observation = registry.get("encoder", cfg.encoder.name).observation
    if "obs_mode" in settings:
        settings["obs_mode"] = observation
    factory = registry.build("env", settings)
    env = factory.make(seed)
    try:
        obs_spec = observation_spec(env.observation_space)
        action_dim = env.action_space.shape[0]
    finally:
        env.close()
    obs_key = f"obs.{observation}"
    if obs_key not in obs_spec:
        raise UserInputError(
            f"encoder {cfg.encoder.name!r} reads {observation} observations, but env "
            f"{cfg.env.name!r} gives {sorted(obs_spec)}"
        )
    return ObservedEnv(factory, settings, obs_spec, obs_key, action_dim)
