"""Environment factories."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

#: Model-side function of ``(action, next_obs)`` batches, ``(batch, ·)`` each, to ``(batch, 1)``.
ModelSideFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: A scripted policy: the env's ``info["state"]`` vector to an action.
Demonstrator = Callable[[np.ndarray], np.ndarray]


class EnvFactory(ABC):
    """Builds environments and says what a model may know about them.

    Implement:
        ``make(seed)``: a fresh gymnasium env with time limit applied, reset-able with
        ``reset(seed=..., options=...)``.
    May override:
        ``demonstrator()``: a scripted policy that solves the task from ``info["state"]`` (the
        env must then put the state vector in ``info`` at reset and at every step); offline
        datasets are generated with it.
    May set:
        ``reward_fn``: known reward of ``(action, next_obs)`` as ``(batch, 1)`` float, or None
        when the reward must be learned.
        ``termination_fn``: known termination of ``(action, next_obs)`` as ``(batch, 1)`` bool,
        or None when episodes only end by time limit.
    """

    reward_fn: ModelSideFn | None = None
    termination_fn: ModelSideFn | None = None

    @abstractmethod
    def make(self, seed: int) -> gym.Env:
        """A new environment, seeded."""

    def demonstrator(self) -> Demonstrator | None:
        """A scripted policy of ``info["state"]``, or None when the env has none."""
        return None
