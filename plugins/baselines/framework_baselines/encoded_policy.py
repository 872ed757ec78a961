"""A Gaussian action head on any registered encoder, and the policy that acts with it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from framework.interfaces import Encoder, Policy, RunContext
from framework.library.actor_critic import BehaviourPrior
from framework.library.normaliser import ObservationNormaliser
from framework.library.observed_env import ObservedEnv


class EncodedGaussianPolicy(nn.Module):
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


class HeadPolicy(Policy):
    """Acts with the head's mode (or a sample of it when exploring); keeps no state."""

    def __init__(self, model: EncodedGaussianPolicy, obs_key: str, explore: bool) -> None:
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


def build_encoded_policy(
    context: RunContext, observed: ObservedEnv, normalise_states: bool
) -> EncodedGaussianPolicy:
    """The run's ``encoder`` (from the registry) for the env's observations, an action head
    sized by ``algo.head``, and for state observations a normaliser when ``normalise_states``
    (identity until fitted); on the run's device."""
    cfg = context.cfg
    encoder = context.registry.build("encoder", cfg.encoder, obs_shape=observed.obs_shape)
    states = len(observed.obs_shape) == 1
    return EncodedGaussianPolicy(
        encoder,
        BehaviourPrior(encoder.feature_dim, observed.action_dim, **cfg.algo.head),
        ObservationNormaliser(observed.obs_shape[0]) if states and normalise_states else None,
    ).to(context.device)
