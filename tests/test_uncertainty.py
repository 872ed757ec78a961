"""Uncertainty estimators against values computed by hand."""

import math

import pytest
import torch

from framework.interfaces import EnsemblePrediction
from framework.library.uncertainty import (
    EnsembleDisagreement,
    MaxAleatoricStd,
    MaxPairwiseDistance,
    NoUncertainty,
    TotalVariance,
)

# Two members, one sample, two dimensions.
#   means: (0, 0) and (2, 0)          variances: (1, 4) and (1, 0.25)
HAND = EnsemblePrediction(
    mean=torch.tensor([[[0.0, 0.0]], [[2.0, 0.0]]]),
    var=torch.tensor([[[1.0, 4.0]], [[1.0, 0.25]]]),
)


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        # Var_e of dim 0 is ((0-1)^2 + (2-1)^2) / 2 = 1; dim 1 has none.
        (EnsembleDisagreement(), 1.0),
        # mean variances (1, 2.125) summed = 3.125, plus disagreement 1.
        (TotalVariance(), 4.125),
        # member norms of std: sqrt(1 + 4) = 2.236..., sqrt(1 + 0.25) = 1.118...
        (MaxAleatoricStd(), math.sqrt(5.0)),
        # the only pair is 2 apart.
        (MaxPairwiseDistance(), 2.0),
        (NoUncertainty(), 0.0),
    ],
)
def test_estimators_match_hand_computed_values(estimator, expected):
    value = estimator(HAND)
    assert value.shape == (1,)
    assert value.item() == pytest.approx(expected)


def test_three_members_batch_of_two():
    # Sample 0: means 0, 3, 6 on one dim; sample 1: all members agree.
    mean = torch.tensor([[[0.0], [1.0]], [[3.0], [1.0]], [[6.0], [1.0]]])
    var = torch.full_like(mean, 0.5)
    prediction = EnsemblePrediction(mean, var)
    assert EnsembleDisagreement()(prediction).tolist() == pytest.approx([6.0, 0.0])
    assert MaxPairwiseDistance()(prediction).tolist() == pytest.approx([6.0, 0.0])
    assert TotalVariance()(prediction).tolist() == pytest.approx([6.5, 0.5])
    assert MaxAleatoricStd()(prediction).tolist() == pytest.approx([math.sqrt(0.5)] * 2)


def test_total_variance_is_aleatoric_plus_disagreement():
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(7, 32, 5, generator=generator)
    var = torch.rand(7, 32, 5, generator=generator) + 0.1
    prediction = EnsemblePrediction(mean, var)
    aleatoric = var.mean(dim=0).sum(dim=-1)
    torch.testing.assert_close(
        TotalVariance()(prediction), aleatoric + EnsembleDisagreement()(prediction)
    )


@pytest.mark.parametrize(
    "estimator",
    [EnsembleDisagreement(), TotalVariance(), MaxAleatoricStd(), MaxPairwiseDistance()],
)
def test_gradients_are_finite_even_where_members_agree(estimator):
    mean = torch.zeros(4, 3, 2, requires_grad=True)  # identical members: zero distances
    var = torch.ones(4, 3, 2, requires_grad=True)
    estimator(EnsemblePrediction(mean, var)).sum().backward()
    grads = [tensor.grad for tensor in (mean, var) if tensor.grad is not None]
    assert grads and all(torch.isfinite(grad).all() for grad in grads)


def test_prediction_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(ensemble, batch, dim\)"):
        EnsemblePrediction(torch.zeros(2, 3, 4), torch.ones(2, 3))
