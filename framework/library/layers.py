"""Small network builders shared by the component library."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(sizes: Sequence[int], layer_norm: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` with ELU between them (after
    a layer norm when ``layer_norm``) and nothing after the last."""
    blocks: list[nn.Module] = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        blocks.append(nn.Linear(size_in, size_out))
        if index < len(sizes) - 2:
            blocks += [nn.LayerNorm(size_out), nn.ELU()] if layer_norm else [nn.ELU()]
    return nn.Sequential(*blocks)
