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
from torch import nn

from framework.data.offline import DataSettings
from framework.interfaces import Algorithm, Encoder, Policy, RunContext
from framework.library.actor_critic import BehaviourPrior
from framework.library.normaliser import ObservationNormaliser
from framework.library.observed_env import observed_env
from framework.phases import OfflineSettings, PhaseRunner
from framework.replay import SequenceReplay
from framework.typed_config import typed_settings

CHECKPOINT = "checkpoint.pt"


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


class ClonedPolicy(nn.Module):
    """Observations → (normaliser) → encoder → Gaussian action head."""

    def __init__(
        self, encoder: Encoder, head: BehaviourPrior, normaliser: ObservationNormaliser | None
    ) -> None:
        super().__init__()
        self.encoder, self.head, self.normaliser = encoder, head, normaliser

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Encoder features ``(N, F)`` of raw observations ``(N, *obs_shape)``."""
        return self.encoder(obs if self.normaliser is None else self.normaliser(obs))

    def nll(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of ``actions`` ``(N, A)`` at ``obs``."""
        return self.head.nll(self.features(obs), actions)


class _ModePolicy(Policy):
    """Acts with the head's mode (or a sample of it when exploring); keeps no state."""

    def __init__(self, model: ClonedPolicy, obs_key: str, explore: bool) -> None:
        self.model, self.obs_key, self.explore = model, obs_key, explore

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def act(self, obs: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        if isinstance(obs, Mapping):
            obs = obs[self.obs_key]
        device = next(self.model.parameters()).device
        features = self.model.features(torch.as_tensor(np.asarray(obs), device=device)[None])
        head = self.model.head
        action = head.distribution(features).sample() if self.explore else head.mode(features)
        # The head's actions live in [-1, 1], the action box of the envs served here.
        return action[0].clamp(-1.0, 1.0).cpu().numpy().astype(np.float32)


class BC(Algorithm):
    """Behaviour cloning on the offline data (``algo.data``), then one evaluation. Results:
    ``offline_success`` (= ``final_success``)."""

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        cfg = context.cfg
        self.settings = typed_settings(BCSettings, cfg.algo.train, "algo.train")
        self.data_settings = typed_settings(DataSettings, cfg.algo.data, "algo.data")
        self.observed = observed_env(context.registry, cfg, context.seed)
        encoder = context.registry.build("encoder", cfg.encoder, obs_shape=self.observed.obs_shape)
        states = len(self.observed.obs_shape) == 1
        self.model = ClonedPolicy(
            encoder,
            BehaviourPrior(encoder.feature_dim, self.observed.action_dim, **cfg.algo.head),
            ObservationNormaliser(self.observed.obs_shape[0])
            if states and self.settings.normalise_states
            else None,
        ).to(context.device)
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
        return _ModePolicy(self.model, self.observed.obs_key.removeprefix("obs."), explore)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict()}

    def run(self) -> dict[str, float]:
        context, settings = self.context, self.settings
        episodes = self.observed.offline_episodes(self.data_settings)
        if self.model.normaliser is not None:
            self.model.normaliser.fit(np.concatenate([e[self.observed.obs_key] for e in episodes]))
        replay = SequenceReplay.from_episodes(episodes, 2, seed=context.seed)
        runner = PhaseRunner(
            self,
            self.observed.factory,
            context.logger,
            context.seed,
            context.run_dir / CHECKPOINT,
            context.cfg.progress,
        )
        runner.offline(
            replay,
            OfflineSettings(
                settings.updates, settings.batch_size, settings.log_every, settings.checkpoint_every
            ),
        )
        success = runner.evaluate(settings.eval_episodes, "offline")
        return {"offline_success": success, "final_success": success}
