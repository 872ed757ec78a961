"""Dynamics ensembles: N members, each predicting a Gaussian over the next target."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class EnsemblePrediction:
    """Per-member diagonal Gaussians.

    ``mean`` and ``var`` have shape ``(ensemble, batch, dim)``; ``var`` is the aleatoric
    variance each member predicts (strictly positive).
    """

    mean: torch.Tensor
    var: torch.Tensor

    def __post_init__(self) -> None:
        if self.mean.shape != self.var.shape or self.mean.dim() != 3:
            raise ValueError(
                "EnsemblePrediction needs mean and var of one shape (ensemble, batch, dim); "
                f"got mean {tuple(self.mean.shape)} and var {tuple(self.var.shape)}"
            )

    @property
    def ensemble_size(self) -> int:
        return self.mean.shape[0]

    @property
    def std(self) -> torch.Tensor:
        return self.var.sqrt()


class DynamicsEnsemble(nn.Module, ABC):
    """An ensemble of probabilistic models of what comes next, evaluated for all members at once.

    Members must be evaluated in one vectorised call (stacked parameters, batched matmuls),
    never a Python loop over members.

    Implement:
        ``predict(state, action)``: ``state`` is ``(batch, state_dim)`` (every member sees the
        same batch) or ``(ensemble, batch, state_dim)`` (member ``i`` sees slice ``i``);
        ``action`` has the same leading shape with ``action_dim`` last. Returns an
        :class:`EnsemblePrediction` of shape ``(ensemble, batch, target_dim)`` over the
        *absolute* next target (e.g. next state, optionally followed by the reward); each
        implementation documents what its target holds.
    May override:
        ``loss(state, action, target)``: a scalar, by default the Gaussian negative
        log-likelihood of ``target`` averaged over members, batch and dimensions.
        ``sample(prediction, generator)``: one draw per member, ``(ensemble, batch, target_dim)``.
    Set:
        ``ensemble_size``.
    """

    ensemble_size: int

    @abstractmethod
    def predict(self, state: torch.Tensor, action: torch.Tensor) -> EnsemblePrediction:
        """Per-member Gaussians over the next target, ``(ensemble, batch, target_dim)``."""

    def loss(self, state: torch.Tensor, action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL of ``target`` (``(batch, dim)`` or ``(ensemble, batch, dim)``), averaged
        over members, batch and dimensions; a scalar tensor."""
        prediction = self.predict(state, action)
        return nn.functional.gaussian_nll_loss(
            prediction.mean, target.expand_as(prediction.mean), prediction.var, full=True
        )

    def sample(
        self, prediction: EnsemblePrediction, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``mean + std * noise`` for every member: ``(ensemble, batch, target_dim)``."""
        noise = torch.randn(
            prediction.mean.shape,
            generator=generator,
            device=prediction.mean.device,
            dtype=prediction.mean.dtype,
        )
        return prediction.mean + prediction.std * noise


class TransitionEnsemble(DynamicsEnsemble):
    """A :class:`DynamicsEnsemble` over environment states that trains itself on transitions.

    Its target is ``concat(next_state, reward)`` when ``learns_reward`` is true, else
    ``next_state``.

    Implement, beyond :class:`DynamicsEnsemble`:
        ``fit(obs, action, next_obs, reward)``: train on all transitions seen so far (numpy
        arrays of shapes ``(n, state_dim)``, ``(n, action_dim)``, ``(n, state_dim)``,
        ``(n,)``); return the per-epoch mean training losses.
    Set:
        ``learns_reward``.
    """

    learns_reward: bool

    @abstractmethod
    def fit(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, reward: np.ndarray
    ) -> list[float]:
        """Train on the given transitions; return the mean training loss of each epoch."""
