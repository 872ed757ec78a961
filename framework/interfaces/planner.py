"""Policies act; planners search action sequences against an objective."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

import numpy as np
import torch

#: Scores action sequences: ``(population, horizon, action_dim)`` -> ``(population,)``.
SequenceObjective = Callable[[torch.Tensor], torch.Tensor]


class Policy(ABC):
    """Anything that acts in an environment.

    Implement:
        ``act(obs)``: one observation (numpy, the env's shape) to one action (numpy,
        ``(action_dim,)``, inside the action space's bounds).
    May override:
        ``reset()``: called at the start of every episode (clears warm starts, hidden states).
    """

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Choose the action for one observation."""

    def reset(self) -> None:  # noqa: B027 - optional hook, deliberately a no-op by default
        """Forget per-episode state; the default keeps none."""


class TrainablePolicy(Policy):
    """A policy with parameters learned from data.

    Implement, beyond :class:`Policy`:
        ``update(batch)``: one gradient step on a mapping of named tensors; returns named
        scalar losses for logging.
    """

    @abstractmethod
    def update(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One learning step; returns scalar metrics such as losses."""


class Planner(ABC):
    """Searches action sequences of a fixed horizon that maximise an objective (MPC's inner loop).

    Built by the algorithm with ``action_low``/``action_high`` (``(action_dim,)`` arrays) and
    ``horizon`` plus the planner's own config.

    Implement:
        ``plan(objective)``: return the best found sequence, ``(horizon, action_dim)`` numpy,
        within bounds. ``objective`` scores ``(population, horizon, action_dim)`` tensors.
        ``reset()``: forget any warm start (called at episode start).
    Set:
        ``horizon``.
    """

    horizon: int

    @abstractmethod
    def plan(self, objective: SequenceObjective) -> np.ndarray:
        """Best ``(horizon, action_dim)`` action sequence found for ``objective``."""

    @abstractmethod
    def reset(self) -> None:
        """Drop the warm start before a new episode."""
