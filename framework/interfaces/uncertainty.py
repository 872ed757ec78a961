"""Uncertainty estimators: ensemble predictions to one number per sample."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from framework.interfaces.dynamics import EnsemblePrediction


class UncertaintyEstimator(ABC):
    """Turns an ensemble's per-member predictions into a per-sample uncertainty.

    Implement:
        ``__call__(prediction)``: ``prediction`` holds ``(ensemble, batch, dim)`` means and
        variances; return a non-negative float tensor of shape ``(batch,)``, in the units its
        docstring states. Must be differentiable in the prediction (penalties are
        back-propagated through in imagination).
    """

    @abstractmethod
    def __call__(self, prediction: EnsemblePrediction) -> torch.Tensor:
        """Uncertainty of each sample, shape ``(batch,)``."""
