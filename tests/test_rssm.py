"""RSSM world model: ensemble heads, filtering resets, balanced KL, training, imagination."""

import pytest
import torch
from torch import nn

from framework.library.encoders import ConvEncoder, MLPEncoder
from framework.library.rssm import (
    RSSM,
    ConvDecoder,
    LatentEnsembleHeads,
    MLPDecoder,
    WorldModel,
    balanced_kl,
)
from framework.library.uncertainty import EnsembleDisagreement


def _looped_heads(heads: LatentEnsembleHeads, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: every head evaluated on its own with plain matmuls; ``x`` is ``(M, B, in)``."""
    means, stds = [], []
    for i in range(heads.ensemble_size):
        out = x[i]
        for k, layer in enumerate(heads.layers):
            out = out @ layer.weight[i] + layer.bias[i, 0]
            if k < len(heads.layers) - 1:
                out = nn.functional.elu(out)
        mean, raw_std = out.chunk(2, dim=-1)
        means.append(mean)
        stds.append(nn.functional.softplus(raw_std) + heads.min_std)
    return torch.stack(means), torch.stack(stds)


def test_ensemble_heads_vectorised_equal_looped_reference():
    torch.manual_seed(0)
    heads = LatentEnsembleHeads(
        state_dim=6, action_dim=2, stoch_dim=4, ensemble_size=5, hidden_dim=8
    )
    state, action = torch.randn(5, 3, 6), torch.randn(5, 3, 2)
    prediction = heads.predict(state, action)
    assert prediction.mean.shape == (5, 3, 4)
    mean, std = _looped_heads(heads, torch.cat([state, action], -1))
    torch.testing.assert_close(prediction.mean, mean)
    torch.testing.assert_close(prediction.var, std**2)
    assert bool((prediction.std >= heads.min_std).all())
    # A (batch, ·) input is shared by all heads.
    shared = heads.predict(state[0], action[0])
    mean, _ = _looped_heads(heads, torch.cat([state[0], action[0]], -1).expand(5, 3, 8))
    torch.testing.assert_close(shared.mean, mean)
    assert not torch.allclose(shared.mean[0], shared.mean[1])  # heads differ at init
    with pytest.raises(ValueError, match="take an action"):
        heads.predict(state[0])


def _rssm(embed_dim: int = 5, action_dim: int = 2, heads: int = 3) -> RSSM:
    return RSSM(embed_dim, action_dim, deter_dim=8, stoch_dim=4, hidden_dim=8, ensemble_size=heads)


def test_observe_shapes_and_is_first_resets_the_state():
    torch.manual_seed(0)
    rssm = _rssm()
    embeds, actions = torch.randn(2, 6, 5), torch.randn(2, 6, 2)
    is_first = torch.zeros(2, 6, dtype=torch.bool)
    is_first[0, 3] = True
    out = rssm.observe(embeds, actions, is_first)
    assert out.posterior.features.shape == (2, 6, 12)
    assert out.post_mean.shape == out.post_std.shape == (2, 6, 4)
    assert out.prior_mean.shape == out.prior_std.shape == (3, 2, 6, 4)
    # After a reset, the step sees neither the history nor the action: same as a fresh start.
    fresh_actions = torch.randn(2, 3, 2)
    fresh = rssm.observe(embeds[:, 3:], fresh_actions, torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(out.posterior.deter[0, 3], fresh.posterior.deter[0, 0])
    torch.testing.assert_close(out.post_mean[0, 3], fresh.post_mean[0, 0])
    assert not torch.allclose(out.posterior.deter[1, 3], fresh.posterior.deter[1, 0])


def test_balanced_kl_frees_only_the_posterior_term_and_splits_gradients():
    mean, std = torch.randn(2, 3, 4), torch.rand(2, 3, 4) + 0.1
    loss, kl = balanced_kl(mean, std, mean.expand(5, 2, 3, 4), std.expand(5, 2, 3, 4), 0.8, 1.0)
    # Equal distributions: KL 0; only the posterior's term is lifted to free nats (0.2 * 1).
    assert kl.item() == 0.0 and loss.item() == pytest.approx(0.2)
    # q = N(1, 1), p = N(0, 1) in 2 dims: KL = 2 * 0.5 = 1 nat, above free nats of 0.5.
    post_mean = torch.ones(1, 1, 2, requires_grad=True)
    prior_mean = torch.zeros(1, 1, 2, requires_grad=True)
    unit = torch.ones(1, 1, 2)
    loss, kl = balanced_kl(post_mean, unit, prior_mean, unit, balance=0.8, free_nats=0.5)
    assert kl.item() == pytest.approx(1.0) and loss.item() == pytest.approx(1.0)
    loss.backward()
    # 80% of the gradient trains the prior, 20% the posterior.
    torch.testing.assert_close(prior_mean.grad, torch.full((1, 1, 2), -0.8))
    torch.testing.assert_close(post_mean.grad, torch.full((1, 1, 2), 0.2))
    # Below free nats (KL 1 < 2) the posterior gets no gradient, the prior still learns.
    post_mean.grad, prior_mean.grad = None, None
    balanced_kl(post_mean, unit, prior_mean, unit, balance=0.8, free_nats=2.0)[0].backward()
    torch.testing.assert_close(prior_mean.grad, torch.full((1, 1, 2), -0.8))
    assert post_mean.grad is None or not post_mean.grad.any()


def _sequences(generator: torch.Generator, batch: int = 4, length: int = 10):
    """A point moved by actions: positions (B, T, 2), actions (B, T, 2), rewards, is_first."""
    actions = torch.rand(batch, length, 2, generator=generator) * 2 - 1
    actions[:, 0] = 0
    positions = torch.cumsum(0.3 * actions, dim=1)
    rewards = -positions.norm(dim=-1)
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    return positions, actions, rewards, is_first


def _train(model: WorldModel, obs, actions, rewards, is_first, steps: int = 40) -> list[dict]:
    """Adam on one fixed batch; every step's terms as floats."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    history = []
    for _ in range(steps):
        terms, _ = model.elbo(obs, actions, rewards, is_first, generator)
        assert set(terms) == {"reconstruction", "reward", "kl_loss", "kl", "total"}
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        history.append({name: value.item() for name, value in terms.items()})
    return history


def test_world_model_loss_falls_on_state_sequences():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    positions, actions, rewards, is_first = _sequences(generator)
    obs = torch.cat([positions, positions**2], dim=-1) * 3
    rssm = _rssm(embed_dim=16)
    model = WorldModel(
        MLPEncoder((4,), feature_dim=16, hidden_dim=32),
        rssm,
        MLPDecoder(rssm.feature_dim, 4, hidden_dim=32),
        reward_hidden_dim=32,
    )
    history = _train(model, obs, actions, rewards, is_first)
    # The KL term sits at its free-nats floor, so the fit shows in the other terms.
    fit = [step["reconstruction"] + step["reward"] for step in history]
    assert sum(fit[-5:]) / 5 < 0.3 * fit[0], fit
    assert history[-1]["total"] < history[0]["total"] - 0.5 * fit[0]


def test_world_model_loss_falls_on_pixel_sequences():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    positions, actions, rewards, is_first = _sequences(generator, batch=2, length=6)
    # A bright 8x8 square whose place follows the point, on a dark 64x64 background.
    images = torch.full((2, 6, 3, 64, 64), 20, dtype=torch.uint8)
    corners = (28 + 8 * positions.clamp(-3, 3)).long()
    for b in range(2):
        for t in range(6):
            row, col = corners[b, t].tolist()
            images[b, t, :, row : row + 8, col : col + 8] = 230
    encoder = ConvEncoder((3, 64, 64), depth=2)
    rssm = _rssm(embed_dim=encoder.feature_dim)
    model = WorldModel(encoder, rssm, ConvDecoder(rssm.feature_dim, depth=2), reward_hidden_dim=16)
    totals = [step["total"] for step in _train(model, images, actions, rewards, is_first)]
    assert sum(totals[-5:]) / 5 < 0.5 * totals[0], totals
    with pytest.raises(TypeError, match="uint8"):
        model.decoder.nll(torch.zeros(1, rssm.feature_dim), images[0, :1].float())


def test_imagine_shapes_and_ensemble_uncertainty():
    torch.manual_seed(0)
    rssm = _rssm(heads=4)
    out = rssm.observe(
        torch.randn(2, 3, 5), torch.randn(2, 3, 2), torch.zeros(2, 3, dtype=torch.bool)
    )
    start = out.posterior.flatten_detached()
    assert start.deter.shape == (6, 8)
    policy = nn.Linear(rssm.feature_dim, 2)
    generator = torch.Generator().manual_seed(0)
    rollout = rssm.imagine(start, lambda f: torch.tanh(policy(f)), horizon=5, generator=generator)
    assert rollout.features.shape == (6, 5, 12) and rollout.actions.shape == (6, 5, 2)
    assert rollout.prior_mean.shape == rollout.prior_std.shape == (4, 6, 5, 4)
    assert rollout.head.shape == (6, 5) and len(rollout.head.unique()) > 1
    uncertainty = rollout.uncertainty(EnsembleDisagreement())
    assert uncertainty.shape == (6, 5) and bool((uncertainty > 0).all())
    # Step 2's uncertainty is the estimator applied to that step's (M, B, z) predictions.
    torch.testing.assert_close(
        uncertainty[:, 2], rollout.prior_mean[:, :, 2].var(dim=0, unbiased=False).sum(-1)
    )
    # The rollout is differentiable back to the policy (Dreamer-style actor gradients).
    (rollout.features.sum() + uncertainty.sum()).backward()
    assert policy.weight.grad is not None and policy.weight.grad.abs().sum() > 0
