"""Sampling-based trajectory optimisers from mbrl-lib behind the :class:`Planner` interface."""

from __future__ import annotations

from typing import Any

import mbrl.planning
import numpy as np
from omegaconf import OmegaConf

from framework.interfaces import Planner
from framework.interfaces.planner import SequenceObjective


class MbrlPlanner(Planner):
    """Wraps ``mbrl.planning.TrajectoryOptimizer`` around the optimiser named by
    ``optimizer_target``; the previous solution, shifted by one step, warm-starts the next plan.

    Subclasses set ``optimizer_target``; keyword arguments are the optimiser's own (population
    size, iterations, ...), as in mbrl-lib's action-optimiser configs.
    """

    optimizer_target: str

    def __init__(
        self,
        action_low: np.ndarray,
        action_high: np.ndarray,
        horizon: int,
        device: str = "cpu",
        **optimizer_params: Any,
    ) -> None:
        self.horizon = horizon
        optimizer_cfg = OmegaConf.create(
            {"_target_": self.optimizer_target, "device": device, **optimizer_params}
        )
        self._optimizer = mbrl.planning.TrajectoryOptimizer(
            optimizer_cfg,
            np.asarray(action_low, dtype=np.float32),
            np.asarray(action_high, dtype=np.float32),
            planning_horizon=horizon,
            replan_freq=1,
            keep_last_solution=True,
        )

    def plan(self, objective: SequenceObjective) -> np.ndarray:
        return self._optimizer.optimize(objective)

    def reset(self) -> None:
        self._optimizer.reset()


class CEMPlanner(MbrlPlanner):
    """Cross-entropy method (``mbrl.planning.CEMOptimizer``): refit a Gaussian to the elites."""

    optimizer_target = "mbrl.planning.CEMOptimizer"


class ICEMPlanner(MbrlPlanner):
    """Improved CEM (``mbrl.planning.ICEMOptimizer``): coloured noise, kept elites, decaying
    population."""

    optimizer_target = "mbrl.planning.ICEMOptimizer"


class MPPIPlanner(MbrlPlanner):
    """Model-predictive path integral control (``mbrl.planning.MPPIOptimizer``)."""

    optimizer_target = "mbrl.planning.MPPIOptimizer"
