"""λ-returns, the uncertainty penalty, and the actor-critic parts for learning in imagination."""

import math

import pytest
import torch

from framework.library.actor_critic import (
    BehaviourPrior,
    Critic,
    TanhGaussianActor,
    actor_loss,
    critic_loss,
    reinforce_objective,
)
from framework.library.returns import lambda_returns, penalised_rewards, replay_lambda_returns


def _random_rollout(batch: int = 4, horizon: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(batch, horizon, generator=gen)
    values = torch.randn(batch, horizon + 1, generator=gen)
    discounts = 0.99 * torch.rand(batch, horizon, generator=gen)
    return rewards, values, discounts


# ---------------------------------------------------------------- lambda_returns


def test_lambda_returns_match_hand_computed_values():
    # r = (1, 2), v = (0.5, 3, 10), γ = (0.9, 0.5), λ = 0.5:
    #   R_2 = v_2 = 10
    #   R_1 = 2 + 0.5 * (0.5 * 10 + 0.5 * 10) = 2 + 5 = 7
    #   R_0 = 1 + 0.9 * (0.5 * 3 + 0.5 * 7) = 1 + 0.9 * 5 = 5.5
    returns = lambda_returns(
        torch.tensor([[1.0, 2.0]]),
        torch.tensor([[0.5, 3.0, 10.0]]),
        torch.tensor([[0.9, 0.5]]),
        lam=0.5,
    )
    torch.testing.assert_close(returns, torch.tensor([[5.5, 7.0]]))


def test_lambda_zero_is_one_step_td():
    rewards, values, discounts = _random_rollout()
    expected = rewards + discounts * values[:, 1:]  # r_t + γ_t v_{t+1}
    torch.testing.assert_close(lambda_returns(rewards, values, discounts, lam=0.0), expected)


def test_lambda_one_is_discounted_monte_carlo_plus_bootstrap():
    rewards, values, discounts = _random_rollout()
    batch, horizon = rewards.shape
    # R_t = Σ_{k=t}^{H-1} (Π_{j=t}^{k-1} γ_j) r_k + (Π_{j=t}^{H-1} γ_j) v_H, summed explicitly.
    expected = torch.zeros(batch, horizon)
    for t in range(horizon):
        weight = torch.ones(batch)
        for k in range(t, horizon):
            expected[:, t] += weight * rewards[:, k]
            weight = weight * discounts[:, k]
        expected[:, t] += weight * values[:, horizon]
    torch.testing.assert_close(lambda_returns(rewards, values, discounts, lam=1.0), expected)


def test_termination_cuts_the_return():
    # γ_0 = 0 (the episode ends after step 0): R_0 is r_0 whatever follows.
    returns = lambda_returns(
        torch.tensor([[1.0, 5.0]]), torch.tensor([[0.0, 7.0, 9.0]]), torch.tensor([[0.0, 1.0]]), 0.7
    )
    assert returns[0, 0].item() == pytest.approx(1.0)


@pytest.mark.parametrize(("values_shape", "lam"), [((4, 5), 0.9), ((4, 6), 1.5), ((4, 6), -0.1)])
def test_lambda_returns_reject_bad_inputs(values_shape, lam):
    rewards, _, discounts = _random_rollout()
    with pytest.raises(ValueError):
        lambda_returns(rewards, torch.zeros(values_shape), discounts, lam)


def test_replay_lambda_returns_match_hand_computed_values_and_stop_at_episode_starts():
    # Rows 0-2 end one episode, rows 3-4 start the next; r_t arrives with row t. γ = λ = 0.5:
    #   R_4 = v_4 = 6;  R_3 = r_4 + 0.5 (0.5 v_4 + 0.5 R_4) = 5 + 3 = 8
    #   R_2 = v_2 = 3 (row 3 starts another episode)
    #   R_1 = r_2 + 0.5 (0.5 v_2 + 0.5 R_2) = 2 + 1.5 = 3.5
    #   R_0 = r_1 + 0.5 (0.5 v_1 + 0.5 R_1) = 1 + 0.5 (1 + 1.75) = 2.375
    rewards = torch.tensor([[0.0, 1.0, 2.0, 0.0, 5.0]])
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0, 6.0]])
    is_first = torch.tensor([[True, False, False, True, False]])
    expected = torch.tensor([[2.375, 3.5, 3.0, 8.0]])
    torch.testing.assert_close(replay_lambda_returns(rewards, values, is_first, 0.5, 0.5), expected)
    # The reward stored with an episode's first row belongs to no step of it.
    rewards[0, 3] = 100.0
    torch.testing.assert_close(replay_lambda_returns(rewards, values, is_first, 0.5, 0.5), expected)


def test_replay_lambda_returns_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="one \\(B, T\\) shape"):
        replay_lambda_returns(torch.zeros(2, 5), torch.zeros(2, 4), torch.zeros(2, 5), 0.9, 0.9)


# ------------------------------------------------------------- penalised_rewards


def test_penalised_rewards_subtract_scaled_uncertainty():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    uncertainty = torch.tensor([[0.5, 2.0], [0.0, 0.1]], requires_grad=True)
    penalised = penalised_rewards(rewards, uncertainty, alpha=2.0)
    # 1 - 2*0.5 = 0, 0 - 2*2 = -4, 0 - 0 = 0, 1 - 2*0.1 = 0.8
    torch.testing.assert_close(penalised, torch.tensor([[0.0, -4.0], [0.0, 0.8]]))
    penalised.sum().backward()  # the penalty is back-propagated through in imagination
    assert torch.equal(uncertainty.grad, torch.full((2, 2), -2.0))
    assert torch.equal(penalised_rewards(rewards, uncertainty, alpha=0.0), rewards)
    with pytest.raises(ValueError):
        penalised_rewards(rewards, uncertainty[0], alpha=1.0)


# ------------------------------------------------------------------------- actor


def _fixed_actor(mean: float, log_std: float, feature_dim: int = 3, action_dim: int = 2):
    """An actor whose μ is ``mean`` and σ is ``exp(log_std)`` everywhere."""
    actor = TanhGaussianActor(
        feature_dim, action_dim, hidden_dim=8, log_std_min=log_std, log_std_max=log_std
    )
    head = actor.net[-1]
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.copy_(torch.tensor([mean] * action_dim + [0.0] * action_dim))
    return actor


def test_actor_samples_bounded_reparameterised_actions_for_any_leading_shape():
    torch.manual_seed(0)
    actor = TanhGaussianActor(feature_dim=3, action_dim=2, hidden_dim=16)
    features = torch.randn(4, 5, 3)
    sample = actor.sample(features)
    assert sample.action.shape == (4, 5, 2) and sample.log_prob.shape == (4, 5)
    assert sample.action.abs().max() < 1.0
    sample.action.sum().backward()
    assert actor.net[0].weight.grad.abs().sum() > 0  # rsample: gradients reach the actor
    assert actor.mode(features).shape == (4, 5, 2)


def test_log_prob_includes_tanh_correction():
    actor = _fixed_actor(mean=0.2, log_std=math.log(0.5))
    features = torch.zeros(1, 3)
    actions = torch.tensor([[0.3, -0.6]])
    u = torch.atanh(actions)
    # log π(a) = Σ_i [log N(u_i; 0.2, 0.5) − log(1 − a_i²)]
    expected = (torch.distributions.Normal(0.2, 0.5).log_prob(u) - torch.log(1 - actions**2)).sum()
    assert actor.log_prob(features, actions).item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(actor.mode(features), torch.full((1, 2), math.tanh(0.2)))


def test_sample_log_prob_agrees_with_log_prob_of_the_same_action():
    torch.manual_seed(1)
    actor = TanhGaussianActor(feature_dim=3, action_dim=2, hidden_dim=16, log_std_max=-1.0)
    features = torch.randn(64, 3)
    sample = actor.sample(features)
    torch.testing.assert_close(
        sample.log_prob, actor.log_prob(features, sample.action), rtol=1e-3, atol=1e-3
    )


def test_std_scale_widens_the_pre_tanh_spread_by_exactly_that_factor():
    actor = _fixed_actor(mean=0.2, log_std=math.log(0.1))
    features = torch.zeros(1000, 3)
    draws = {}
    for scale in (1.0, 3.0):
        torch.manual_seed(7)
        draws[scale] = torch.atanh(actor.sample(features, std_scale=scale).action.detach())
    torch.manual_seed(7)
    torch.testing.assert_close(torch.atanh(actor.sample(features).action.detach()), draws[1.0])
    # The same noise, three times as far from μ: u = μ + 3σε.
    torch.testing.assert_close(draws[3.0] - 0.2, 3.0 * (draws[1.0] - 0.2), rtol=1e-4, atol=1e-5)
    assert draws[3.0].std().item() == pytest.approx(0.3, rel=0.1)


def test_log_prob_of_saturated_dataset_actions_is_finite():
    actor = TanhGaussianActor(feature_dim=3, action_dim=2, hidden_dim=16)
    log_prob = actor.log_prob(torch.randn(2, 3), torch.tensor([[1.0, -1.0], [1.0, 0.0]]))
    assert torch.isfinite(log_prob).all()


def test_entropy_estimate():
    torch.manual_seed(2)
    features = torch.zeros(1, 3)
    # Narrow around 0, tanh is nearly the identity: entropy ≈ the Gaussian's, per dimension
    # ½ log(2πe σ²) with σ = 0.01 → −3.186; the tanh term adds only ≈ −E[u²] = −1e-4.
    narrow = _fixed_actor(mean=0.0, log_std=math.log(0.01))
    gaussian = 2 * 0.5 * math.log(2 * math.pi * math.e * 0.01**2)
    assert narrow.entropy(features, samples=2000).item() == pytest.approx(gaussian, abs=0.01)
    # Wide: squashing into [-1, 1] caps the entropy at the uniform's, log 2 per dimension,
    # far below the Gaussian's ½ log(2πe e⁴) = 3.42 per dimension.
    wide = _fixed_actor(mean=0.0, log_std=2.0)
    assert wide.entropy(features, samples=2000).item() < 2 * math.log(2)


# --------------------------------------------------------------- behaviour prior


def test_behaviour_prior_fits_a_toy_mapping_by_maximum_likelihood():
    torch.manual_seed(3)
    features = torch.randn(256, 3)
    weights = torch.tensor([[1.0, -0.5], [0.5, 1.0], [-1.0, 0.5]])
    # Dataset actions: a deterministic function of the features plus a little noise.
    actions = (0.9 * torch.tanh(features @ weights) + 0.05 * torch.randn(256, 2)).clamp(-1, 1)
    prior = BehaviourPrior(feature_dim=3, action_dim=2, hidden_dim=64)
    optimiser = torch.optim.Adam(prior.parameters(), lr=3e-3)
    initial = prior.nll(features, actions).item()
    for _ in range(300):
        loss = prior.nll(features, actions)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    final = prior.nll(features, actions).item()
    assert final < 0.0 and final < initial - 10.0, (initial, final)
    error = (prior.mode(features) - actions).abs().mean().item()  # noise alone: 0.04
    assert error < 0.1, error


# ------------------------------------------------------------------------ critic


def test_critic_target_starts_equal_and_moves_toward_online():
    torch.manual_seed(4)
    critic = Critic(feature_dim=3, hidden_dim=16)
    features = torch.randn(8, 3)
    assert critic(features).shape == (8,)
    torch.testing.assert_close(critic.target_value(features), critic(features))
    with torch.no_grad():  # the online critic learns something; the target lags behind
        for param in critic.online.parameters():
            param.add_(torch.randn_like(param))
    before = [p.clone() for p in critic.target.parameters()]
    critic.update_target(tau=0.25)
    for old, new, online in zip(
        before, critic.target.parameters(), critic.online.parameters(), strict=True
    ):
        # θ' ← θ' + 0.25 (θ − θ'): a quarter of the way, so the gap shrinks to three quarters.
        torch.testing.assert_close(new, old + 0.25 * (online - old))
        assert (online - new).norm() < (online - old).norm()
    critic.update_target(tau=1.0)  # hard update
    torch.testing.assert_close(critic.target_value(features), critic(features))
    with pytest.raises(ValueError):
        critic.update_target(tau=0.0)


def test_critic_loss_regresses_onto_stop_gradient_targets():
    values = torch.tensor([1.0, 3.0], requires_grad=True)
    targets = torch.tensor([2.0, 1.0], requires_grad=True)
    loss = critic_loss(values, targets)
    assert loss.item() == pytest.approx(1.25)  # ½ · mean((1-2)², (3-1)²) = ½ · 2.5
    loss.backward()
    assert values.grad.tolist() == pytest.approx([-0.5, 1.0])  # (v − R) / N
    assert targets.grad is None
    with pytest.raises(ValueError):
        critic_loss(values, targets[:1])


def test_critic_target_parameters_take_no_gradient_but_features_do():
    critic = Critic(feature_dim=3, hidden_dim=16)
    features = torch.randn(5, 3, requires_grad=True)
    critic.target_value(features).sum().backward()
    assert features.grad.abs().sum() > 0  # ∂V/∂s for dynamics back-propagation
    assert all(p.grad is None for p in critic.target.parameters())


# -------------------------------------------------------------------- actor loss


def test_actor_loss_terms_and_signs():
    returns = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    log_prob_behaviour = torch.tensor([[-1.0, -2.0], [-3.0, -6.0]])
    entropy = torch.tensor([[0.5, 0.5], [1.5, 1.5]])
    unregularised = -returns.mean() - 0.1 * entropy.mean()  # −2.5 − 0.1 · 1 = −2.6
    assert torch.equal(actor_loss(returns, log_prob_behaviour, entropy, 0.0, 0.1), unregularised)
    # β = 2: − 2 · mean(log π_β) = − 2 · (−3) = +6 on top.
    regularised = actor_loss(returns, log_prob_behaviour, entropy, 2.0, 0.1)
    assert regularised.item() == pytest.approx(-2.6 + 6.0)
    with pytest.raises(ValueError):
        actor_loss(returns, log_prob_behaviour[0], entropy, 1.0, 0.1)


def _imagine(actor, critic, prior, starts, horizon, lam=0.95, gamma=0.99):
    """Toy dynamics s' = s + a with reward −s'² (the goal is the origin); returns the pieces of
    the actor loss, all differentiable through the dynamics."""
    state, states, rewards, log_prob_behaviour, entropy = starts, [starts], [], [], []
    for _ in range(horizon):
        sample = actor.sample(state)
        log_prob_behaviour.append(prior.log_prob(state, sample.action))
        entropy.append(-sample.log_prob)
        state = state + sample.action
        states.append(state)
        rewards.append(-(state**2).sum(-1))
    values = critic.target_value(torch.stack(states, 1))
    discounts = torch.full((starts.shape[0], horizon), gamma)
    returns = lambda_returns(torch.stack(rewards, 1), values, discounts, lam)
    return returns, torch.stack(log_prob_behaviour, 1), torch.stack(entropy, 1)


def test_actor_gradients_flow_through_returns_and_regulariser_changes_them():
    torch.manual_seed(5)
    actor = TanhGaussianActor(feature_dim=1, action_dim=1, hidden_dim=16)
    critic, prior = Critic(feature_dim=1, hidden_dim=16), BehaviourPrior(1, 1, hidden_dim=16)
    prior.requires_grad_(False)
    starts = torch.rand(32, 1) * 2 - 1

    def actor_grad(beta):
        torch.manual_seed(6)  # the same rsample noise for both β
        actor.zero_grad()
        returns, log_prob_behaviour, entropy = _imagine(actor, critic, prior, starts, horizon=3)
        actor_loss(returns, log_prob_behaviour, entropy, beta, entropy_scale=0.0).backward()
        return torch.cat([p.grad.flatten() for p in actor.parameters()])

    returns_only = actor_grad(beta=0.0)  # η = β = 0: the returns are the only path
    assert returns_only.abs().sum() > 0
    assert not torch.allclose(actor_grad(beta=1.0), returns_only)


def test_actor_learns_to_reach_the_goal_through_the_model():
    torch.manual_seed(7)
    actor = TanhGaussianActor(feature_dim=1, action_dim=1, hidden_dim=32)
    critic, prior = Critic(feature_dim=1, hidden_dim=16), BehaviourPrior(1, 1, hidden_dim=16)
    prior.requires_grad_(False)
    optimiser = torch.optim.Adam(actor.parameters(), lr=1e-2)
    starts = torch.rand(64, 1) * 1.6 - 0.8

    def miss():  # how far the deterministic action leaves each start from the goal
        with torch.no_grad():
            return (starts + actor.mode(starts)).abs().mean().item()

    initial = miss()
    for _ in range(100):
        # γ = 0: the return is the one reward, whose optimum is a = −s exactly.
        returns, log_prob_behaviour, entropy = _imagine(
            actor, critic, prior, starts, horizon=1, gamma=0.0
        )
        loss = actor_loss(returns, log_prob_behaviour, entropy, beta=0.0, entropy_scale=1e-3)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert miss() < 0.3 * initial, (initial, miss())


def test_reinforce_objective_weighs_log_probs_by_range_scaled_advantages():
    log_prob = torch.zeros(2, 11, requires_grad=True)
    returns = torch.arange(22.0).reshape(2, 11)  # 0..21: P5 = 1.05, P95 = 19.95
    baseline = torch.full((2, 11), 10.0)
    reinforce_objective(log_prob, returns, baseline).sum().backward()
    torch.testing.assert_close(log_prob.grad, (returns - 10.0) / 18.9)
    # A range below 1 is floored at 1: small returns are not blown up.
    small = torch.zeros(2, 11, requires_grad=True)
    reinforce_objective(small, returns / 100, baseline / 100).sum().backward()
    torch.testing.assert_close(small.grad, (returns - 10.0) / 100)
    # Returns and baseline only weigh: no gradient reaches them.
    weighted = torch.ones(2, 11, requires_grad=True)
    reinforce_objective(log_prob, weighted, baseline).sum().backward()
    assert weighted.grad is None
    with pytest.raises(ValueError, match="one shape"):
        reinforce_objective(log_prob, returns[0], baseline)


def test_actor_learns_to_reach_the_goal_by_reinforce_without_model_gradients():
    torch.manual_seed(8)
    actor = TanhGaussianActor(feature_dim=1, action_dim=1, hidden_dim=32)
    optimiser = torch.optim.Adam(actor.parameters(), lr=1e-2)
    starts = torch.rand(256, 1) * 1.6 - 0.8

    def miss():
        with torch.no_grad():
            return (starts + actor.mode(starts)).abs().mean().item()

    initial = miss()
    for _ in range(300):
        with torch.no_grad():  # the "model" is only scored, never differentiated
            actions = actor.sample(starts).action
            rewards = -((starts + actions) ** 2).sum(-1, keepdim=True)
        objective = reinforce_objective(
            actor.log_prob(starts, actions).unsqueeze(-1), rewards, rewards.mean().expand(256, 1)
        )
        entropy = torch.zeros_like(objective)
        loss = actor_loss(objective, torch.zeros_like(objective), entropy, 0.0, 0.0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert miss() < 0.3 * initial, (initial, miss())
