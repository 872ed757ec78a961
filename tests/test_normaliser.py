"""Observation standardisation for latent-model agents from states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framework.library.normaliser import ObservationNormaliser


def test_fitted_statistics_standardise_and_floor_constant_dimensions():
    rng = np.random.default_rng(0)
    data = np.stack(
        [rng.normal(3.0, 0.5, 1000), np.full(1000, 0.15), rng.normal(-1.0, 0.02, 1000)], axis=1
    )
    normaliser = ObservationNormaliser(3, min_std=0.01)
    x = torch.as_tensor(data, dtype=torch.float32)
    torch.testing.assert_close(normaliser(x), x)  # the identity until fitted
    normaliser.fit(data)
    out = normaliser(x).numpy()
    np.testing.assert_allclose(out[:, [0, 2]].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out[:, [0, 2]].std(0), 1.0, atol=1e-4)
    assert np.all(out[:, 1] == 0.0)  # constant in the data: centred, spread floored at 0.01
    assert normaliser(torch.tensor([[3.0, 0.16, -1.0]]))[0, 1].item() == pytest.approx(
        1.0, abs=1e-4
    )


def test_statistics_travel_in_the_state_dict():
    fitted = ObservationNormaliser(2)
    fitted.fit(np.array([[0.0, 1.0], [2.0, 5.0]]))
    restored = ObservationNormaliser(2)
    restored.load_state_dict(fitted.state_dict())
    x = torch.tensor([[1.0, 2.0]])
    torch.testing.assert_close(restored(x), fitted(x))
    torch.testing.assert_close(fitted(x), torch.tensor([[0.0, -0.5]]))


@pytest.mark.parametrize("data", [np.zeros((0, 2)), np.array([[0.0, np.nan], [1.0, 2.0]])])
def test_fitting_to_empty_or_non_finite_data_fails_clearly(data):
    with pytest.raises(ValueError, match="cannot fit observation statistics"):
        ObservationNormaliser(2).fit(data)
