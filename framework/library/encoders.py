"""Encoders for vector and image observations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from framework.interfaces import Encoder


def _check_shape(obs: torch.Tensor, obs_shape: tuple[int, ...], name: str) -> None:
    if tuple(obs.shape[1:]) != obs_shape:
        raise ValueError(
            f"{name} expects observations of shape (batch, {', '.join(map(str, obs_shape))}); "
            f"got {tuple(obs.shape)}"
        )


class IdentityEncoder(Encoder):
    """Flat vector observations passed through unchanged; ``feature_dim`` is their size."""

    def __init__(self, obs_shape: Sequence[int]) -> None:
        super().__init__()
        if len(obs_shape) != 1:
            raise ValueError(f"identity encoder needs vector observations; got shape {obs_shape}")
        self.obs_shape = tuple(obs_shape)
        self.feature_dim = self.obs_shape[0]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        _check_shape(obs, self.obs_shape, "identity encoder")
        return obs.float()


class MLPEncoder(Encoder):
    """Vector observations through an MLP with layer norm and ELU: ``(batch, obs_dim)`` to
    ``(batch, feature_dim)``."""

    def __init__(
        self,
        obs_shape: Sequence[int],
        feature_dim: int = 256,
        hidden_dim: int = 256,
        layers: int = 2,
    ) -> None:
        super().__init__()
        if len(obs_shape) != 1:
            raise ValueError(f"mlp encoder needs vector observations; got shape {obs_shape}")
        self.obs_shape = tuple(obs_shape)
        self.feature_dim = feature_dim
        sizes = [self.obs_shape[0]] + [hidden_dim] * (layers - 1) + [feature_dim]
        blocks: list[nn.Module] = []
        for size_in, size_out in zip(sizes[:-1], sizes[1:], strict=False):
            blocks += [nn.Linear(size_in, size_out), nn.LayerNorm(size_out), nn.ELU()]
        self.net = nn.Sequential(*blocks)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        _check_shape(obs, self.obs_shape, "mlp encoder")
        return self.net(obs.float())


class ConvEncoder(Encoder):
    """DreamerV2-style image encoder: four stride-2 4×4 convolutions (``depth`` × 1, 2, 4, 8
    channels, ELU), flattened. Takes ``uint8`` images ``(batch, channels, height, width)`` and
    scales them to ``[-0.5, 0.5]`` itself."""

    observation = "pixels"

    def __init__(self, obs_shape: Sequence[int], depth: int = 32) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(
                f"conv encoder needs (channels, height, width) images; got {obs_shape}"
            )
        self.obs_shape = tuple(obs_shape)
        channels = [self.obs_shape[0]] + [depth * 2**i for i in range(4)]
        blocks: list[nn.Module] = []
        for size_in, size_out in zip(channels[:-1], channels[1:], strict=False):
            blocks += [nn.Conv2d(size_in, size_out, kernel_size=4, stride=2), nn.ELU()]
        self.net = nn.Sequential(*blocks, nn.Flatten())
        with torch.no_grad():
            self.feature_dim = self.net(torch.zeros(1, *self.obs_shape)).shape[1]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        _check_shape(obs, self.obs_shape, "conv encoder")
        if obs.dtype != torch.uint8:
            raise TypeError(f"conv encoder takes uint8 images; got {obs.dtype}")
        return self.net(obs.float() / 255.0 - 0.5)
