"""MOTO (Rafailov et al., CoRL 2023): model-based offline pre-training, then online fine-tuning.

Composed from the core's registered parts: an encoder (``encoder=state|conv``), the latent
transition ensemble (``dynamics=latent_ensemble``), any uncertainty estimator for the reward
penalty ``r̃ = r̂ − α·u`` (``uncertainty=...``), the recurrent world model, actor-critic in
imagination and the behaviour prior (:class:`~framework.library.latent_agent.LatentAgent`).
What is MOTO's own lives here: the behaviour prior fitted to the offline actions only, the
β-regularised actor with its schedule across phases, and the phases as the config lists them
(``phase=offline`` pre-trains and saves; ``phase=online init=<checkpoint>`` fine-tunes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from framework.checkpoint import load_checkpoint
from framework.data.offline import DataSettings
from framework.errors import UserInputError
from framework.evaluation import save_video
from framework.interfaces import Algorithm, Policy, RunContext
from framework.library.imagination_video import open_loop_frames
from framework.library.latent_agent import batch_to_tensors, build_latent_agent, episode_features
from framework.library.latent_policy import LatentPolicy
from framework.library.observed_env import observed_env
from framework.phases import (
    OfflineSettings,
    OnlineSettings,
    PhaseRunner,
    online_replay,
)
from framework.replay import SequenceReplay
from framework.typed_config import typed_settings


@dataclass(frozen=True)
class BetaSchedule:
    """β while fine-tuning: ``beta_scale`` times the offline β, annealed linearly to 0 over
    ``beta_anneal_episodes`` online episodes when that is positive (0: kept)."""

    beta_scale: float = 1.0
    beta_anneal_episodes: int = 0


@dataclass(frozen=True)
class ReplaySettings:
    """Windows of ``sequence_length`` rows; online episodes kept up to ``online_capacity_steps``
    rows (the oldest evicted first)."""

    sequence_length: int = 50
    online_capacity_steps: int = 1_000_000


@dataclass(frozen=True)
class PriorSettings:
    """The behaviour prior's fit: with every agent update, ``steps_per_update``
    maximum-likelihood steps on ``batch_size`` random offline steps each, at posterior features
    recomputed by filtering every offline episode each ``refresh_every`` updates (the world
    model under them keeps learning).

    Why not the update's own sequence batch: its 16 windows are a few stretches of a few
    episodes, and a prior fitted on them drifts off the demonstrations in closed loop
    (door-open: success 0.0 after 2,000 updates, against 0.4–0.7 from all offline steps).
    """

    batch_size: int = 256
    steps_per_update: int = 4
    refresh_every: int = 100


PHASES = {"all": ("offline", "online"), "offline": ("offline",), "online": ("online",)}
CHECKPOINT = "checkpoint.pt"


def checkpoint_path(init: str) -> Path:
    """``init`` as a checkpoint file: a file as given, or a run folder's ``checkpoint.pt``."""
    path = Path(init)
    return path / CHECKPOINT if path.is_dir() else path


class MOTO(Algorithm):
    """Offline pre-training and online fine-tuning of a latent-model agent; see the module
    docstring. Results: ``offline_success`` (after pre-training), ``final_success``,
    ``best_success``, ``online_episodes``."""

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        cfg, registry = context.cfg, context.registry
        if cfg.phase not in PHASES:
            raise UserInputError(f"phase must be one of {', '.join(PHASES)}; got {cfg.phase!r}")
        if cfg.phase == "online" and cfg.init is None:
            raise UserInputError(
                "phase=online fine-tunes a pre-trained agent: add init=<checkpoint file or run "
                "folder> (from a phase=offline run)"
            )
        self.replay_settings = typed_settings(ReplaySettings, cfg.algo, "algo")
        self.offline_settings = typed_settings(OfflineSettings, cfg.algo.offline, "algo.offline")
        self.online_settings = typed_settings(OnlineSettings, cfg.algo.online, "algo.online")
        self.observed = observed_env(registry, cfg, context.seed)
        self.env_factory, self.obs_key = self.observed.factory, self.observed.obs_key
        self.data_settings = typed_settings(DataSettings, cfg.algo.data, "algo.data")
        self.beta_schedule = typed_settings(BetaSchedule, cfg.algo.online, "algo.online")
        self.prior_settings = typed_settings(PriorSettings, cfg.algo.prior, "algo.prior")
        self._offline_episodes: list[Mapping[str, np.ndarray]] = []
        self._prior_data: tuple[torch.Tensor, torch.Tensor] | None = None
        self._prior_age = 0
        self.agent = build_latent_agent(
            registry, cfg, self.observed.obs_shape, self.observed.action_dim, with_prior=True
        ).to(context.device)
        self.base_beta = self.agent.imagination.beta

    # The SequenceLearner protocol (framework.phases).
    def train_step(self, batch: Mapping[str, np.ndarray], phase: str) -> dict[str, float]:
        """One agent update, and one step of the behaviour prior on the offline data only (in
        both phases: it follows the world model's features; see :class:`PriorSettings`)."""
        tensors = batch_to_tensors(batch, self.obs_key, self.context.device)
        metrics = self.agent.update(tensors)
        if self._prior_data is None or self._prior_age >= self.prior_settings.refresh_every:
            self._prior_data = episode_features(
                self.agent.world_model, self._offline_episodes, self.obs_key, self.context.device
            )
            self._prior_age = 0
        self._prior_age += 1
        for _ in range(self.prior_settings.steps_per_update):
            metrics["prior_nll"] = self.agent.fit_prior(
                *self._prior_data, self.prior_settings.batch_size
            )
        metrics["beta"] = self.agent.imagination.beta
        return metrics

    def policy(self, explore: bool) -> Policy:
        return LatentPolicy(
            self.agent.world_model,
            self.agent.actor,
            self.obs_key.removeprefix("obs."),
            explore,
            self.context.device,
        )

    def _set_online_beta(self, episode: int) -> None:
        """Set β for online episode ``episode`` by :class:`BetaSchedule`."""
        beta = self.base_beta * self.beta_schedule.beta_scale
        anneal = self.beta_schedule.beta_anneal_episodes
        if anneal > 0:
            beta *= max(0.0, 1.0 - episode / anneal)
        self.agent.imagination = dataclasses.replace(self.agent.imagination, beta=beta)

    def _offline_replay(self) -> tuple[SequenceReplay, Mapping[str, np.ndarray]]:
        """The offline episodes in a replay, and the first of them."""
        episodes = self.observed.offline_episodes(self.data_settings)
        replay = SequenceReplay.from_episodes(
            episodes, self.replay_settings.sequence_length, seed=self.context.seed
        )
        self._offline_episodes = episodes
        return replay, episodes[0]

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "agent": self.agent.state_dict(),
            "optimisers": self.agent.optimiser_state(),
            "config": OmegaConf.to_container(self.context.cfg, resolve=True),
        }

    def load(self, init: str) -> dict[str, Any]:
        """Load the agent's weights and optimiser states from a checkpoint (exactly: every
        parameter must match in name and shape); returns the checkpoint."""
        path = checkpoint_path(init)
        checkpoint = load_checkpoint(path)
        try:
            self.agent.load_state_dict(checkpoint["agent"])
            self.agent.load_optimiser_state(checkpoint["optimisers"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise UserInputError(
                f"checkpoint {path} does not fit this agent (was it saved with other encoder, "
                f"world_model or algo sizes?): {str(error).splitlines()[0]}"
            ) from None
        return checkpoint

    def run(self) -> dict[str, float]:
        context = self.context
        if context.cfg.init is not None:
            self.load(context.cfg.init)
        runner = PhaseRunner(
            self,
            self.env_factory,
            context.logger,
            context.seed,
            context.run_dir / CHECKPOINT,
            context.cfg.progress,
        )
        phases = PHASES[context.cfg.phase]
        offline_replay, first_episode = self._offline_replay()
        normaliser = self.agent.world_model.normaliser
        if normaliser is not None and context.cfg.init is None:
            normaliser.fit(np.concatenate([e[self.obs_key] for e in self._offline_episodes]))
        results: dict[str, float] = {}
        eval_episodes = self.online_settings.eval_episodes
        if "offline" in phases:
            runner.offline(offline_replay, self.offline_settings)
            results["offline_success"] = runner.evaluate(eval_episodes, "offline")
        if "online" in phases:
            self._set_online_beta(0)
            curve = runner.online(
                offline_replay,
                online_replay(
                    context.run_dir,
                    context.seed,
                    self.replay_settings.online_capacity_steps,
                    self.replay_settings.sequence_length,
                ),
                self.online_settings,
                evaluate_first="offline" not in phases,
                on_episode=self._set_online_beta,
            )
            results.update(
                final_success=curve[-1],
                best_success=max(curve),
                online_episodes=float(runner.progress.online_episodes),
            )
        if self.obs_key == "obs.pixels":
            self._save_imagination(first_episode)
        return results

    def _save_imagination(self, episode: Mapping[str, np.ndarray]) -> None:
        """``imagination.gif``: an offline episode (left) beside the model's open-loop
        prediction of it from its first 5 frames and its actions (right)."""
        frames = open_loop_frames(
            self.agent.world_model, episode["obs.pixels"], episode["action"], context=5
        )
        save_video(frames, self.context.run_dir / "imagination.gif")
