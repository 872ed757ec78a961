"""Return targets for actor-critic learning (Dreamer-style TD(λ)), in imagination and along
replayed sequences."""

from __future__ import annotations

import torch


def lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, discounts: torch.Tensor, lam: float
) -> torch.Tensor:
    """TD(λ) returns of imagined rollouts, computed backwards from the bootstrap value.

    ``rewards`` ``(batch, horizon)``: ``r_t``, the reward of the step from ``s_t``.
    ``values`` ``(batch, horizon + 1)``: ``v_t = V(s_t)`` for ``t = 0..H``; ``v_H`` closes the tail.
    ``discounts`` ``(batch, horizon)``: ``γ_t = γ · c_t``, the discount times the predicted
    probability that the episode continues after step ``t`` (just ``γ`` without terminations).
    ``lam``: λ in ``[0, 1]``; 0 gives one-step TD targets, 1 discounted Monte Carlo plus bootstrap.

    Returns ``(batch, horizon)``: ``R_t`` for ``t = 0..H-1``, where::

        R_H = v_H
        R_t = r_t + γ_t · [(1 - λ) · v_{t+1} + λ · R_{t+1}]

    Differentiable in all three inputs; detach the result where it is a regression target.
    """
    batch, horizon = rewards.shape
    if values.shape != (batch, horizon + 1) or discounts.shape != (batch, horizon):
        raise ValueError(
            f"lambda_returns expects rewards (B, H), values (B, H+1), discounts (B, H); got "
            f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(discounts.shape)}"
        )
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda_returns needs lam in [0, 1]; got {lam}")
    next_return = values[:, -1]  # R_H = v_H
    returns = []
    for t in reversed(range(horizon)):
        next_return = rewards[:, t] + discounts[:, t] * (
            (1.0 - lam) * values[:, t + 1] + lam * next_return
        )
        returns.append(next_return)
    return torch.stack(returns[::-1], dim=1)


def replay_lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, is_first: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """TD(λ) returns along replayed sequence windows, for the critic's replay loss.

    Rows as the replay stores them: ``rewards`` ``(batch, T)`` holds the reward received on
    arriving at row ``t``, ``values`` ``(batch, T)`` a value estimate of each row's state and
    ``is_first`` ``(batch, T)`` marks rows that start an episode (a window may run from one
    episode into the next). Returns ``(batch, T - 1)``: ``R_t`` for ``t = 0..T-2`` with::

        R_{T-1} = v_{T-1}
        R_t = r_{t+1} + γ · [(1 − λ) · v_{t+1} + λ · R_{t+1}]   if row t+1 continues row t's episode
        R_t = v_t                                              if row t+1 starts a new one

    (episodes here end by time limit only, so a row whose successor is missing bootstraps
    from its own value).
    """
    if not (rewards.shape == values.shape == is_first.shape) or rewards.dim() != 2:
        raise ValueError(
            f"replay_lambda_returns expects rewards, values and is_first of one (B, T) shape; "
            f"got {tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(is_first.shape)}"
        )
    boundary = is_first[:, 1:].bool()
    # At a boundary the step's "reward" is v_t and its discount 0, so R_t = v_t exactly and
    # the recursion before it continues from there.
    step_rewards = torch.where(boundary, values[:, :-1], rewards[:, 1:])
    discounts = gamma * (~boundary).to(values.dtype)
    return lambda_returns(step_rewards, values, discounts, lam)


def penalised_rewards(
    rewards: torch.Tensor, uncertainty: torch.Tensor, alpha: float
) -> torch.Tensor:
    """MOTO's pessimistic reward ``r̃ = r̂ − α · u``.

    ``rewards`` and ``uncertainty`` share one shape (e.g. ``(batch, horizon)``); ``u`` is an
    :class:`~framework.interfaces.UncertaintyEstimator`'s value, so ``α`` converts its units into
    reward units. ``α = 0`` is the "no epistemic uncertainty" ablation.
    """
    if rewards.shape != uncertainty.shape:
        raise ValueError(
            f"penalised_rewards expects rewards and uncertainty of one shape; got "
            f"{tuple(rewards.shape)} and {tuple(uncertainty.shape)}"
        )
    return rewards - alpha * uncertainty
