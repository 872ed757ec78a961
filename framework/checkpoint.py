"""Atomic checkpoint files: a killed writer never leaves a half-written checkpoint behind."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from framework.atomic import atomic_write_bytes
from framework.errors import UserInputError


class MissingCheckpointError(UserInputError, FileNotFoundError):
    """The checkpoint file does not exist (the CLI prints the message, no traceback)."""


class CorruptCheckpointError(UserInputError, ValueError):
    """The file is not a readable checkpoint (the CLI prints the message, no traceback)."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise ``payload`` with ``torch.save`` and write it atomically to ``path``."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def restore_optimiser(optimiser: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load ``optimiser``'s moments and step counts from ``state`` (its ``state_dict``), keeping
    the learning rates it was built with: ``init=<checkpoint> algo.optim.actor_lr=…`` then
    fine-tunes at the rate asked for, where ``load_state_dict`` alone would restore the
    checkpoint's rates."""
    rates = [group["lr"] for group in optimiser.param_groups]
    optimiser.load_state_dict(state)
    for group, rate in zip(optimiser.param_groups, rates, strict=True):
        group["lr"] = rate


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a clear error if it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(
            f"checkpoint {path} does not exist: pass a checkpoint.pt or the run folder holding one"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CorruptCheckpointError(
            f"checkpoint {path} is corrupt or not a checkpoint: {error}"
        ) from error
