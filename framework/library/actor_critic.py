"""Actor-critic parts for learning in imagination (Dreamer-style), shared by MOTO and baselines.

Features are whatever the world model gives per latent state (e.g. the concatenated GRU state and
stochastic latent), ``(..., feature_dim)``; every network maps the last axis only, so the same
modules serve ``(batch, feature_dim)`` starts and ``(batch, horizon, feature_dim)`` rollouts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Independent, Normal, TanhTransform, TransformedDistribution

from framework.library.layers import mlp

#: Dataset actions are pulled this far inside ``[-1, 1]`` before ``atanh``; scripted policies
#: often emit exactly ±1, whose pre-tanh value is infinite.
ACTION_EDGE = 1e-5


def inside_action_box(actions: torch.Tensor) -> torch.Tensor:
    """``actions`` clamped to ``±(1 − ACTION_EDGE)``: inside the tanh policy's support."""
    return actions.clamp(-1.0 + ACTION_EDGE, 1.0 - ACTION_EDGE)


@dataclass
class ActionSample:
    """A reparameterised action and its log-density under the policy that drew it.

    ``action``: ``(..., action_dim)`` in ``(-1, 1)``, differentiable in the policy's parameters.
    ``log_prob``: ``(...,)`` nats, ``log π(a|s)`` with the tanh correction. ``-log_prob`` is a
    one-sample unbiased estimate of the policy's entropy at ``s``.
    """

    action: torch.Tensor
    log_prob: torch.Tensor


class _GaussianHead(nn.Module):
    """An MLP from features ``(..., feature_dim)`` to a mean and a log-std per action
    dimension, the log-std squashed into ``[log_std_min, log_std_max]`` (CleanRL's SAC actor):
    ``log σ = min + ½ (max − min)(tanh(x) + 1)``."""

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        hidden_dim: int,
        layers: int,
        log_std_min: float,
        log_std_max: float,
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.net = mlp([feature_dim] + [hidden_dim] * layers + [2 * action_dim], layer_norm=True)

    def mean_and_log_std(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The unsquashed mean and the bounded log-std, each ``(..., action_dim)``."""
        mean, raw_log_std = self.net(features).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            torch.tanh(raw_log_std) + 1.0
        )
        return mean, log_std


class TanhGaussianActor(_GaussianHead):
    """``π(a|s) = tanh(u)``, ``u ~ N(μ(s), diag σ(s)²)``: features ``(..., feature_dim)`` to a
    distribution over actions in ``[-1, 1]^action_dim``.

    The log-std is bounded as :class:`_GaussianHead` describes. Densities of actions include
    the change of variables ``log π(a|s) = log N(u; μ, σ) − Σ_i log(1 − tanh(u_i)²)``, computed by
    :class:`torch.distributions.TanhTransform` in its numerically stable form.
    """

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        hidden_dim: int = 256,
        layers: int = 2,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__(feature_dim, action_dim, hidden_dim, layers, log_std_min, log_std_max)

    def distribution(
        self, features: torch.Tensor, std_scale: float = 1.0
    ) -> TransformedDistribution:
        """The action distribution at each feature row; batch shape ``features.shape[:-1]``,
        event shape ``(action_dim,)``. ``std_scale`` multiplies σ (a temperature for acting;
        1 is the actor's own distribution)."""
        mean, log_std = self.mean_and_log_std(features)
        # cache_size=1 lets log_prob of a freshly drawn action reuse its pre-tanh value u
        # instead of atanh(a), which is inexact (and infinite) where tanh saturates.
        return TransformedDistribution(
            Independent(Normal(mean, std_scale * log_std.exp()), 1), [TanhTransform(cache_size=1)]
        )

    def sample(self, features: torch.Tensor, std_scale: float = 1.0) -> ActionSample:
        """Draw ``a = tanh(μ + std_scale·σ·ε)`` with ``rsample`` (gradients reach the actor
        through ``a``); ``log_prob`` is that of the distribution drawn from."""
        dist = self.distribution(features, std_scale)
        action = dist.rsample()
        return ActionSample(action=action, log_prob=dist.log_prob(action))

    def log_prob(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log π(a|s)`` ``(...,)`` of given actions ``(..., action_dim)`` (e.g. dataset
        actions), clamped to ``±(1 − ACTION_EDGE)`` first so that ``atanh`` stays finite."""
        return self.distribution(features).log_prob(inside_action_box(actions))

    def entropy(self, features: torch.Tensor, samples: int = 1) -> torch.Tensor:
        """Monte Carlo entropy ``H[π(·|s)] ≈ −(1/K) Σ_k log π(a_k|s)``, ``(...,)`` nats.

        A tanh-Gaussian has no closed-form entropy; the estimate is differentiable (``rsample``).
        """
        dist = self.distribution(features)
        actions = dist.rsample((samples,))
        return -dist.log_prob(actions).mean(dim=0)

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``tanh(μ(s))`` ``(..., action_dim)``, for evaluation."""
        mean, _ = self.net(features).chunk(2, dim=-1)
        return torch.tanh(mean)


class BehaviourPrior(_GaussianHead):
    """``π_β(a|s) = N(a; tanh(μ(s)), diag σ(s)²)``: a Gaussian over actions fitted by maximum
    likelihood to the dataset's actions at the world model's (posterior) features. Minimise
    :meth:`nll` with any optimiser; in the actor loss it scores the actor's actions through
    :meth:`log_prob` (freeze it there).

    Why not a tanh-Gaussian like the actor: scripted policies saturate, emitting actions at
    exactly ±1, and a tanh-Gaussian fits those with a density that grows without bound at the
    edge of the action box (the ``−log(1 − a²)`` Jacobian). The actor, maximising
    ``log π_β(a|s)``, then gains most by pushing its own actions to ±1, whatever the data did
    in between. A Gaussian in action space with ``σ ≥ exp(log_std_min)`` keeps the density
    bounded and smooth, so the regulariser only pulls the actor toward the data's actions.
    """

    def __init__(
        self,
        feature_dim: int,
        action_dim: int,
        hidden_dim: int = 256,
        layers: int = 2,
        log_std_min: float = -3.0,
        log_std_max: float = 0.0,
    ) -> None:
        super().__init__(feature_dim, action_dim, hidden_dim, layers, log_std_min, log_std_max)

    def distribution(self, features: torch.Tensor) -> Independent:
        """The Gaussian over actions at each feature row; batch shape ``features.shape[:-1]``,
        event shape ``(action_dim,)``; log-std squashed into ``[log_std_min, log_std_max]``."""
        mean, log_std = self.mean_and_log_std(features)
        return Independent(Normal(torch.tanh(mean), log_std.exp()), 1)

    def log_prob(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log π_β(a|s)`` ``(...,)`` nats; differentiable in ``actions``."""
        return self.distribution(features).log_prob(actions)

    def nll(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood ``−mean log π_β(a|s)`` (scalar, nats) of dataset
        ``actions`` ``(..., action_dim)`` at ``features`` ``(..., feature_dim)``."""
        return -self.log_prob(features, actions).mean()

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        """The most likely action ``tanh(μ(s))`` ``(..., action_dim)``."""
        return self.distribution(features).mean


class Critic(nn.Module):
    """``V(s)``: features ``(..., feature_dim)`` to values ``(...,)``, with a slow target copy.

    ``target`` starts equal to ``online`` and only moves through :meth:`update_target`; its
    parameters never take gradients. Optimise ``critic.online.parameters()``.
    """

    def __init__(self, feature_dim: int, hidden_dim: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.online = mlp([feature_dim] + [hidden_dim] * layers + [1], layer_norm=True)
        self.target = copy.deepcopy(self.online).requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Online values ``(...,)``."""
        return self.online(features).squeeze(-1)

    def target_value(self, features: torch.Tensor) -> torch.Tensor:
        """Target-network values ``(...,)``: the bootstrap for λ-returns.

        Gradients reach ``features`` (the actor needs ``∂V/∂s`` when back-propagating through
        the dynamics) but never the target's parameters; detach where it is a regression target.
        """
        return self.target(features).squeeze(-1)

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """Polyak step ``θ' ← θ' + τ (θ − θ')`` for every parameter.

        ``tau = 1`` copies the online critic (a hard update: call it every N steps); a small
        ``tau`` called every step gives the exponential moving average.
        """
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"update_target needs tau in (0, 1]; got {tau}")
        for target, online in zip(self.target.parameters(), self.online.parameters(), strict=True):
            target.lerp_(online, tau)


def actor_loss(
    returns: torch.Tensor,
    log_prob_behaviour: torch.Tensor,
    entropy: torch.Tensor,
    beta: float,
    entropy_scale: float,
) -> torch.Tensor:
    """Dreamer-style actor loss (dynamics back-propagation) with MOTO's behaviour regulariser.

    All inputs share one shape, e.g. ``(batch, horizon)`` over imagined states ``s_t``:
    ``returns`` the λ-returns ``R_t`` (differentiable through the model into the actor's
    actions: do not detach), ``log_prob_behaviour`` ``log π_β(a_t|s_t)`` of the actor's own
    actions under the frozen behaviour prior, ``entropy`` an estimate of ``H[π(·|s_t)]``.

    Minimised (so each term is negated to be maximised)::

        loss = −mean(R_t) − β · mean(log π_β(a_t|s_t)) − η · mean(H[π(·|s_t)])

    This is the ``−β log π_β(a|s)`` form of MOTO's regulariser, not ``β·KL(π ‖ π_β)``. Since
    ``KL(π ‖ π_β) = −H[π] − E_π[log π_β]``, the KL form is this loss with ``η`` replaced by
    ``η + β``. ``β = 0`` is Dreamer's actor loss (MOTO's "no policy regularisation" ablation).
    """
    if not returns.shape == log_prob_behaviour.shape == entropy.shape:
        raise ValueError(
            f"actor_loss expects returns, log_prob_behaviour and entropy of one shape; got "
            f"{tuple(returns.shape)}, {tuple(log_prob_behaviour.shape)}, {tuple(entropy.shape)}"
        )
    return -returns.mean() - beta * log_prob_behaviour.mean() - entropy_scale * entropy.mean()


def reinforce_objective(
    log_prob: torch.Tensor, returns: torch.Tensor, baseline: torch.Tensor
) -> torch.Tensor:
    """The score-function (REINFORCE) surrogate ``log π(a_t|s_t) · sg(A_t)``, to be maximised
    in place of the returns themselves (pass it to :func:`actor_loss` as ``returns``).

    All inputs share one shape, e.g. ``(batch, horizon)``: ``log_prob`` of the imagined actions
    under the actor (differentiable in its parameters, the actions themselves detached),
    ``returns`` the λ-returns ``R_t`` and ``baseline`` the critic's ``V(s_t)``. The advantage
    ``A_t = (R_t − V(s_t)) / max(1, P95(R) − P5(R))`` is scaled as DreamerV3 scales it: by the
    returns' 5th–95th percentile range, floored at 1 so that small returns are not blown up.
    DreamerV3 tracks that range as a moving average over updates; here it is the batch's own.

    The surrogate's value is not a return; its gradient is the REINFORCE estimate of the
    returns' gradient, which needs no derivative of the model (unlike dynamics back-prop).
    """
    if not log_prob.shape == returns.shape == baseline.shape:
        raise ValueError(
            f"reinforce_objective expects log_prob, returns and baseline of one shape; got "
            f"{tuple(log_prob.shape)}, {tuple(returns.shape)}, {tuple(baseline.shape)}"
        )
    returns, baseline = returns.detach(), baseline.detach()
    low, high = torch.quantile(returns.flatten(), returns.new_tensor([0.05, 0.95]))
    advantage = (returns - baseline) / torch.clamp(high - low, min=1.0)
    return log_prob * advantage


def critic_loss(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Regression of online values onto stop-gradient λ-returns: ``½ mean((V(s_t) − sg(R_t))²)``.

    ``values`` and ``targets`` share one shape, e.g. ``(batch, horizon)``.
    """
    if values.shape != targets.shape:
        raise ValueError(
            f"critic_loss expects values and targets of one shape; got "
            f"{tuple(values.shape)} and {tuple(targets.shape)}"
        )
    return 0.5 * (values - targets.detach()).pow(2).mean()
