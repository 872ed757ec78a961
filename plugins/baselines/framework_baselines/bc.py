"""Behaviour cloning: any registered encoder and a Gaussian action head fitted by maximum
likelihood to the offline data's actions; the policy acts with the head's mode.

Built from the core's parts: the env the encoder reads (:func:`observed_env`), the offline
data and its cache, the state normaliser, the action head the latent-model agents use as their
behaviour prior, and the offline phase's loop, logs and checkpoints (:class:`PhaseRunner`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from framework.checkpoint import restore_optimiser
from framework.data.offline import DataSettings
from framework.interfaces import Algorithm, Policy, RunContext
from framework.library.observed_env import observed_env
from framework.phases import OfflineSettings, PhaseRunner, reject_phase_options
from framework.replay import SequenceReplay
from framework.typed_config import typed_settings
from framework_baselines.encoded_policy import HeadPolicy, build_encoded_policy


@dataclass(frozen=True)
class BCSettings:
    """``updates`` Adam steps at learning rate ``lr`` on ``batch_size`` random offline steps;
    state observations standardised by the offline data when ``normalise_states``."""

    updates: int = 3000
    batch_size: int = 256
    lr: float = 3e-4
    log_every: int = 100
    checkpoint_every: int = 1000
    eval_episodes: int = 10
    normalise_states: bool = True


class BC(Algorithm):
    """Behaviour cloning on the offline data (``algo.data``), then one evaluation. Results:
    ``offline_success`` (= ``final_success``)."""

    resumable = True

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        cfg = context.cfg
        reject_phase_options(cfg)
        self.settings = typed_settings(BCSettings, cfg.algo.train, "algo.train")
        self.data_settings = typed_settings(DataSettings, cfg.algo.data, "algo.data")
        self.observed = observed_env(context.registry, cfg, context.seed)
        self.model = build_encoded_policy(context, self.observed, self.settings.normalise_states)
        self.optimiser = torch.optim.Adam(self.model.parameters(), self.settings.lr)

    # The SequenceLearner protocol (framework.phases): windows of 2 rows, the first holding
    # an observation and the second the action taken at it.
    def train_step(self, batch: Mapping[str, np.ndarray], phase: str) -> dict[str, float]:
        device = self.context.device
        obs = torch.as_tensor(batch[self.observed.obs_key][:, 0], device=device)
        actions = torch.as_tensor(batch["action"][:, 1], dtype=torch.float32, device=device)
        loss = self.model.nll(obs, actions)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return {"bc_nll": float(loss.detach())}

    def policy(self, explore: bool) -> Policy:
        return HeadPolicy(self.model, self.observed.obs_key.removeprefix("obs."), explore)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        restore_optimiser(self.optimiser, state["optimiser"])

    def run(self) -> dict[str, float]:
        context, settings = self.context, self.settings
        episodes = self.observed.offline_episodes(self.data_settings)
        if self.model.normaliser is not None:
            self.model.normaliser.fit_episodes(episodes, self.observed.obs_key)
        replay = SequenceReplay.from_episodes(episodes, 2, seed=context.seed)
        runner = PhaseRunner.for_run(self, self.observed.factory, context)
        offline = OfflineSettings(
            settings.updates, settings.batch_size, settings.log_every, settings.checkpoint_every
        )
        return runner.run(("offline",), replay, offline, settings.eval_episodes)
