"""Algorithms: how components are trained together."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from omegaconf import DictConfig

if TYPE_CHECKING:
    from framework.metrics import RunLogger
    from framework.registry import ComponentRegistry


@dataclass
class RunContext:
    """What the runner hands an algorithm: the composed config, where to write, and its tools."""

    cfg: DictConfig
    run_dir: Path
    registry: ComponentRegistry
    logger: RunLogger
    device: torch.device
    seed: int


class Algorithm(ABC):
    """A training procedure composed from registered components.

    Construct with a :class:`RunContext`; build parts with ``context.registry.build(kind, cfg)``
    from the config groups (``context.cfg.uncertainty``, ``context.cfg.planner``, ...), never by
    importing another plugin.

    Implement:
        ``run()``: train, log through ``context.logger``, write checkpoints under
        ``context.run_dir``; return final scalar results (e.g. ``{"return": 200.0}``).
    """

    #: Whether ``framework run resume=<run folder>`` can continue this algorithm's runs (it
    #: restores from ``context.run_dir``'s checkpoint when ``cfg.resume`` is set, as the
    #: :class:`~framework.phases.PhaseRunner` does).
    resumable: ClassVar[bool] = False

    def __init__(self, context: RunContext) -> None:
        self.context = context

    @abstractmethod
    def run(self) -> dict[str, float]:
        """Train and return the final results."""
