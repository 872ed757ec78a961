"""Encoder: observations to feature vectors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn


class Encoder(nn.Module, ABC):
    """Maps a batch of observations to a batch of feature vectors.

    Implement:
        ``forward(obs)``: ``obs`` has shape ``(batch, *obs_shape)``. Vector observations are
        float tensors; image observations arrive as ``uint8`` tensors of shape
        ``(batch, channels, height, width)`` with values in ``[0, 255]``; the encoder itself
        converts them to float (the one place where that happens). Returns a float tensor of
        shape ``(batch, feature_dim)``.
    Set:
        ``feature_dim``: the size of the returned feature vector.
        ``observation`` (class attribute): which observation it reads, ``"state"`` (vectors,
        the default) or ``"pixels"`` (images); algorithms ask the env for that mode.
    """

    feature_dim: int
    observation: ClassVar[str] = "state"

    @abstractmethod
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Encode ``(batch, *obs_shape)`` observations into ``(batch, feature_dim)`` features."""
