"""Fixed per-dimension standardisation of vector observations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn


class ObservationNormaliser(nn.Module):
    """``(x − mean) / std`` per dimension, with statistics fixed by :meth:`fit` (e.g. on the
    offline dataset) and ``std`` floored at ``min_std`` so that dimensions constant in the data
    stay finite. Starts as the identity. The statistics are buffers: they travel in the
    ``state_dict``, so a checkpoint restores them with the weights.

    Written here rather than taken from mbrl-lib (``mbrl.util.math.Normalizer``): that one is
    not an ``nn.Module``, so its statistics would not travel in the agent's checkpoints.
    """

    def __init__(self, dim: int, min_std: float = 0.01) -> None:
        super().__init__()
        self.dim, self.min_std = dim, min_std
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, observations: np.ndarray | torch.Tensor) -> None:
        """Set the statistics from ``observations`` ``(..., dim)``."""
        data = torch.as_tensor(observations, dtype=torch.float64).reshape(-1, self.dim)
        if len(data) == 0 or not torch.isfinite(data).all():
            raise ValueError(
                f"cannot fit observation statistics to {len(data)} rows"
                + ("" if len(data) == 0 else " holding NaN or inf values")
            )
        self.mean.copy_(data.mean(0))
        self.std.copy_(data.std(0, correction=0).clamp_min(self.min_std))

    def fit_episodes(self, episodes: Sequence[Mapping[str, np.ndarray]], obs_key: str) -> None:
        """:meth:`fit` to every observation under ``obs_key`` of ``episodes``."""
        self.fit(np.concatenate([episode[obs_key] for episode in episodes]))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return (observations.float() - self.mean) / self.std
