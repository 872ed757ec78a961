"""Model-predictive control on a probabilistic ensemble with trajectory sampling (PETS-style)."""

from __future__ import annotations

import numpy as np
import torch

from framework.interfaces import DynamicsEnsemble, Planner, Policy, UncertaintyEstimator
from framework.interfaces.env import ModelSideFn
from framework.interfaces.planner import SequenceObjective


class EnsembleMPC(Policy):
    """Acts by planning on an ensemble: the planner searches ``a_1..a_H`` maximising

        J(a_1..a_H) = mean over particles p of  sum_t  [ r_t(p) - alpha * u_t(p) ]

    Each particle propagates the current state with TS1 (a random member draws each next
    state); ``r_t`` comes from ``reward_fn(action, next_state)`` when given, else from the
    ensemble's last output dimension (a learned reward); ``u_t`` is the uncertainty estimator
    on all members' predictions; rewards after a predicted termination count zero. The first
    action of the best sequence is taken, and the plan is redone every step.

    ``model.predict`` must return ``(ensemble, batch, state_dim [+ 1 reward])``.
    """

    def __init__(
        self,
        model: DynamicsEnsemble,
        planner: Planner,
        uncertainty: UncertaintyEstimator,
        state_dim: int,
        particles: int,
        alpha: float,
        reward_fn: ModelSideFn | None,
        termination_fn: ModelSideFn | None,
        generator: torch.Generator,
    ) -> None:
        self.model, self.planner, self.uncertainty = model, planner, uncertainty
        self.state_dim, self.particles, self.alpha = state_dim, particles, alpha
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self.generator = generator

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.planner.plan(self.sequence_returns(obs))[0]

    def reset(self) -> None:
        self.planner.reset()

    def sequence_returns(self, obs: np.ndarray) -> SequenceObjective:
        """The objective ``J`` for action sequences starting in ``obs``."""
        start = torch.as_tensor(obs, dtype=torch.float32, device=self.generator.device)

        def returns(actions: torch.Tensor) -> torch.Tensor:
            population, horizon, _ = actions.shape
            n = population * self.particles
            state = start.expand(n, -1)
            total = torch.zeros(n, device=start.device)
            terminated = torch.zeros(n, dtype=torch.bool, device=start.device)
            for t in range(horizon):
                action = actions[:, t].repeat_interleave(self.particles, dim=0)
                outcome, uncertainty = self._step(state, action)
                next_state = outcome[:, : self.state_dim]
                if self.reward_fn is None:
                    reward = outcome[:, self.state_dim]
                else:
                    reward = self.reward_fn(action, next_state).squeeze(-1)
                reward = (reward - self.alpha * uncertainty).masked_fill(terminated, 0.0)
                total += reward
                if self.termination_fn is not None:
                    terminated |= self.termination_fn(action, next_state).squeeze(-1)
                state = next_state
            scores = total.view(population, self.particles).mean(dim=1)
            return torch.nan_to_num(scores, nan=-1e10)

        return returns

    def _step(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One TS1 step for ``(n, ·)`` particles: sampled outcomes ``(n, target_dim)`` and their
        uncertainty ``(n,)`` (zeros when ``alpha`` is 0)."""
        n, members = state.shape[0], self.model.ensemble_size
        rows = torch.arange(n, device=state.device)
        if self.alpha > 0 or n % members:
            # Every member predicts every particle: the uncertainty needs them all.
            prediction = self.model.predict(state, action)
            chosen = torch.randint(members, (n,), generator=self.generator, device=state.device)
            outcome = self.model.sample(prediction, self.generator)[chosen, rows]
            uncertainty = self.uncertainty(prediction) if self.alpha > 0 else rows.new_zeros(n)
            return outcome, uncertainty
        # Without a penalty, TS1 at 1/members of the cost: shuffle particles into equal slices,
        # one per member.
        order = torch.randperm(n, generator=self.generator, device=state.device)
        prediction = self.model.predict(
            state[order].view(members, n // members, -1),
            action[order].view(members, n // members, -1),
        )
        outcome = torch.empty(n, prediction.mean.shape[-1], device=state.device)
        outcome[order] = self.model.sample(prediction, self.generator).flatten(0, 1)
        return outcome, torch.zeros(n, device=state.device)
