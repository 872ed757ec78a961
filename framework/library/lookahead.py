"""Acting by lookahead in the world model: perturb the actor's actions, imagine where each
perturbation leads, act on the one the imagined returns favour."""

from __future__ import annotations

import torch

from framework.library.actor_critic import inside_action_box
from framework.library.latent_agent import LatentAgent
from framework.library.rssm import LatentState


class ImaginedLookahead:
    """Chooses each action by a search around the actor's proposal.

    From the filtered state, ``candidates`` offsets (zero, and ``candidates - 1`` Gaussian
    draws with std ``noise``) are each added to every action of an imagined rollout of the
    actor (the first action: the proposal plus the offset), over the imagination horizon,
    ``particles`` rollouts per offset; the offset whose λ-return, averaged over its particles,
    is highest gives the action taken. The return is the one the actor learns from
    (:meth:`LatentAgent.imagine`: penalised rewards, the target critic's bootstrap). The
    offset persists through the rollout because one step's nudge moves the end effector too
    little for the returns to tell apart from the model's sampling noise.

    Written here rather than taken from mbrl-lib: its optimisers search action sequences from
    a spread fixed by the action bounds (CEM, iCEM) or unscaled noise (MPPI), and cannot be
    centred on a policy's proposal with a small spread.
    """

    def __init__(self, agent: LatentAgent, candidates: int, noise: float, particles: int) -> None:
        if candidates < 2:
            raise ValueError(f"candidates must be >= 2 (the actor's and others); got {candidates}")
        if noise <= 0:
            raise ValueError(f"noise must be > 0 (the offsets' standard deviation); got {noise}")
        if particles < 1:
            raise ValueError(f"particles must be >= 1 (rollouts per candidate); got {particles}")
        self.agent, self.candidates, self.noise = agent, candidates, noise
        self.particles = particles

    @torch.no_grad()
    def __call__(self, state: LatentState, proposal: torch.Tensor) -> torch.Tensor:
        """The chosen action ``(1, A)`` at the filtered ``state`` (batch 1), given the actor's
        ``proposal`` ``(1, A)``."""
        if proposal.shape[0] != 1 or state.deter.shape[0] != 1:
            raise ValueError(
                f"the lookahead acts in one env: expected batch 1, got state "
                f"{tuple(state.deter.shape)} and proposal {tuple(proposal.shape)}"
            )
        offsets = self.noise * torch.randn(
            self.candidates, proposal.shape[1], device=proposal.device
        )
        offsets[0] = 0.0
        first = inside_action_box(proposal + offsets)
        rows = self.candidates * self.particles
        start = LatentState(state.deter.expand(rows, -1), state.stoch.expand(rows, -1))
        _, _, scored = self.agent.imagine(
            start,
            first_action=first.repeat_interleave(self.particles, 0),
            action_offset=offsets.repeat_interleave(self.particles, 0),
        )
        returns = scored.returns[:, 0].view(self.candidates, self.particles).mean(1)
        return first[returns.argmax()].unsqueeze(0)
