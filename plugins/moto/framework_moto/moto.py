"""MOTO (Rafailov et al., CoRL 2023): model-based offline pre-training, then online fine-tuning.

Composed from the core's registered parts: an encoder (``encoder=state|conv``), the latent
transition ensemble (``dynamics=latent_ensemble``), any uncertainty estimator for the reward
penalty ``r̃ = r̂ − α·u`` (``uncertainty=...``), the recurrent world model, actor-critic in
imagination, and the phases with their data, checkpoints and logs
(:class:`~framework.library.latent_algorithm.LatentOfflineToOnline`). What is MOTO's own
lives here: the behaviour prior fitted to the offline actions (optionally also to the online
episodes that succeeded), the β-regularised actor, and α's and β's schedule across phases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from framework.data import load_dataset
from framework.data.format import MANIFEST, Episode, succeeded
from framework.errors import UserInputError
from framework.interfaces import RunContext
from framework.library.latent_agent import ImaginationSettings, episode_policy_inputs
from framework.library.latent_algorithm import LatentOfflineToOnline
from framework.phases import ONLINE_EPISODES
from framework.typed_config import typed_settings


@dataclass(frozen=True)
class FineTuneSchedule:
    """The coefficients while fine-tuning. α: ``alpha_scale`` times the offline α. β:
    ``beta_scale`` times the offline β, annealed linearly to 0 over ``beta_anneal_episodes``
    online episodes when that is positive (0: kept).

    ``actor_from_prior``: fine-tuning starts the actor at the behaviour prior's weights (not
    in the paper). After pre-training the actor acts within the data's action noise of the
    prior, yet fails where the prior succeeds (docs/moto_experiments.md, "β = 10 in
    pre-training…")."""

    alpha_scale: float = 1.0
    beta_scale: float = 1.0
    beta_anneal_episodes: int = 0
    actor_from_prior: bool = False

    def settings_at(self, offline: ImaginationSettings, episode: int) -> ImaginationSettings:
        """The imagination settings once ``episode`` online episodes are stored, from the
        offline phase's ``offline``."""
        beta = offline.beta * self.beta_scale
        if self.beta_anneal_episodes > 0:
            beta *= max(0.0, 1.0 - episode / self.beta_anneal_episodes)
        return dataclasses.replace(offline, alpha=offline.alpha * self.alpha_scale, beta=beta)


@dataclass(frozen=True)
class PriorSettings:
    """The behaviour prior's fit: with every agent update, ``steps_per_update``
    maximum-likelihood steps on ``batch_size`` random offline steps each, at the actor's inputs
    there (:func:`~framework.library.latent_agent.episode_policy_inputs`: posterior features,
    recomputed by filtering every offline episode each ``refresh_every`` updates since the
    world model under them keeps learning; or the observations).

    Why not the update's own sequence batch: its 16 windows are a few stretches of a few
    episodes, and a prior fitted on them drifts off the demonstrations in closed loop
    (door-open: success 0.0 after 2,000 updates, against 0.4–0.7 from all offline steps).

    ``online_successes``: while fine-tuning, also fit it on the stored online episodes that
    reached success (filtered behaviour cloning; not in the paper), so that β pulls the actor
    toward what worked online as well as toward the demonstrations.

    ``offline_successes_only``: fit it only on the offline episodes that reached success,
    while the world model and critic still learn from all of them (not in the paper). On
    shelf-place it scored below the prior on all of them (docs/moto_experiments.md, "The
    behaviour prior on the offline successes, and the actor's σ at the copy").
    """

    batch_size: int = 256
    steps_per_update: int = 4
    refresh_every: int = 100
    online_successes: bool = False
    offline_successes_only: bool = False


class MOTO(LatentOfflineToOnline):
    """MOTO; see the module docstring. Results as
    :class:`~framework.library.latent_algorithm.LatentOfflineToOnline`'s."""

    with_prior = True

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        cfg = context.cfg
        self.schedule = typed_settings(FineTuneSchedule, cfg.algo.online, "algo.online")
        self.prior_settings = typed_settings(PriorSettings, cfg.algo.prior, "algo.prior")
        self._prior_data: tuple[torch.Tensor, torch.Tensor] | None = None
        self._prior_age = 0
        self.offline_imagination = self.agent.imagination

    def train_step(self, batch: Mapping[str, np.ndarray], phase: str) -> dict[str, float]:
        """One agent update, then the behaviour prior's steps on the offline data (in both
        phases: it follows the world model's features; see :class:`PriorSettings`)."""
        metrics = super().train_step(batch, phase)
        if self._prior_data is None or self._prior_age >= self.prior_settings.refresh_every:
            self._prior_data = episode_policy_inputs(
                self.agent,
                self._prior_episodes(phase),
                self.obs_key,
                self.context.device,
            )
            self._prior_age = 0
        self._prior_age += 1
        for _ in range(self.prior_settings.steps_per_update):
            metrics["prior_nll"] = self.agent.fit_prior(
                *self._prior_data, self.prior_settings.batch_size
            )
        metrics["alpha"] = self.agent.imagination.alpha
        metrics["beta"] = self.agent.imagination.beta
        return metrics

    def _prior_episodes(self, phase: str) -> list[Episode]:
        """The episodes the prior is fitted on: the offline ones (those that reached success
        with ``offline_successes_only``), and with ``online_successes`` while fine-tuning those
        stored online that reached success (read back from the run's ``online_episodes``
        folder, where the runner keeps every one)."""
        offline = self._prior_offline_episodes()
        folder = self.context.run_dir / ONLINE_EPISODES
        wanted = phase == "online" and self.prior_settings.online_successes
        if not wanted or not (folder / MANIFEST).is_file():
            return offline
        online = load_dataset(folder).episodes
        return offline + [e for e in online if succeeded(e)]

    def _prior_offline_episodes(self) -> list[Episode]:
        if not self.prior_settings.offline_successes_only:
            return self.offline_episodes
        successes = [e for e in self.offline_episodes if succeeded(e)]
        if not successes:
            raise UserInputError(
                f"algo.prior.offline_successes_only=true, but none of the "
                f"{len(self.offline_episodes)} offline episodes reached success, so the "
                "behaviour prior has nothing to fit; drop the override, or give offline data "
                "with successes (more algo.data.episodes, lower algo.data.noise)"
            )
        return successes

    def on_online_episode(self, episode: int) -> None:
        """Set α and β once ``episode`` online episodes are stored, by
        :class:`FineTuneSchedule`; before the first one, start the actor at the prior when
        ``actor_from_prior``."""
        self.agent.imagination = self.schedule.settings_at(self.offline_imagination, episode)
        if episode == 0 and self.schedule.actor_from_prior:
            self.agent.start_actor_at_prior()
            if self.acting is not None:
                # AveragedModel copies the live weights at its next update when it has
                # averaged none; until then the policy acts with the live ones.
                self.acting.n_averaged.zero_()
