"""Uncertainty estimators over ensemble predictions ``(ensemble, batch, dim)``.

With ``mu_e`` and ``sigma2_e`` member ``e``'s mean and variance vectors, and ``Var_e`` the
population variance across members (divide by ``E``):
- disagreement:    sum_d Var_e[mu_e,d]                               (epistemic, trace)
- total variance:  sum_d ( mean_e sigma2_e,d + Var_e[mu_e,d] )       (law of total variance)
- max aleatoric:   max_e ||sigma_e||_2                               (MOPO)
- max pairwise:    max_{i,j} ||mu_i - mu_j||_2                       (MOReL)
"""

from __future__ import annotations

import torch

from framework.interfaces import EnsemblePrediction, UncertaintyEstimator


class NoUncertainty(UncertaintyEstimator):
    """Zero for every sample: turns any uncertainty penalty off."""

    def __call__(self, prediction: EnsemblePrediction) -> torch.Tensor:
        return prediction.mean.new_zeros(prediction.mean.shape[1])


class EnsembleDisagreement(UncertaintyEstimator):
    """Spread of member means: ``sum_d Var_e[mu_e,d]`` (squared target units)."""

    def __call__(self, prediction: EnsemblePrediction) -> torch.Tensor:
        return prediction.mean.var(dim=0, unbiased=False).sum(dim=-1)


class TotalVariance(UncertaintyEstimator):
    """Trace of the ensemble mixture's covariance: aleatoric ``mean_e sigma2`` plus epistemic
    ``Var_e[mu]``, summed over dimensions (squared target units)."""

    def __call__(self, prediction: EnsemblePrediction) -> torch.Tensor:
        aleatoric = prediction.var.mean(dim=0)
        epistemic = prediction.mean.var(dim=0, unbiased=False)
        return (aleatoric + epistemic).sum(dim=-1)


class MaxAleatoricStd(UncertaintyEstimator):
    """Largest member's predicted standard deviation norm, ``max_e ||sigma_e||_2`` (MOPO;
    target units)."""

    def __call__(self, prediction: EnsemblePrediction) -> torch.Tensor:
        return prediction.std.norm(dim=-1).amax(dim=0)


class MaxPairwiseDistance(UncertaintyEstimator):
    """Largest distance between two members' means, ``max_{i,j} ||mu_i - mu_j||_2`` (MOReL;
    target units)."""

    def __call__(self, prediction: EnsemblePrediction) -> torch.Tensor:
        means = prediction.mean.transpose(0, 1)  # (batch, ensemble, dim)
        return torch.cdist(means, means).flatten(start_dim=1).amax(dim=-1)
