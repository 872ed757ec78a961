"""Acting with a latent-model agent: filter each observation into the RSSM's state, then act."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from framework.interfaces import Policy
from framework.library.actor_critic import BehaviourPrior, TanhGaussianActor
from framework.library.rssm import LatentState, WorldModel


class LatentPolicy(Policy):
    """Acts in an env with ``actor`` on the world model's filtered latent state.

    ``obs_key`` picks the part of a dict observation (``"state"`` or ``"pixels"``); plain
    array observations are used as they are. ``explore``: sample the posterior latent and
    the actor's action (its own entropy is the exploration noise); otherwise filter with the
    posterior mean and act with the actor's mode, deterministically. The state carries over
    between :meth:`act` calls and is cleared by :meth:`reset`. ``actor`` may also be a
    behaviour prior, acting greedily only (a diagnostic: what the regulariser pulls toward).
    ``lookahead``, if given, replaces the actor's action by its choice at the filtered state
    (:class:`~framework.library.lookahead.ImaginedLookahead`). ``reads_observation``: the actor
    reads the normalised observation instead of the latent state's features (an agent with
    ``policy_input`` observation); the state is then filtered only for a lookahead.
    ``explore_std_scale`` multiplies the actor's σ when exploring (1: its own entropy).
    """

    def __init__(
        self,
        world_model: WorldModel,
        actor: TanhGaussianActor | BehaviourPrior,
        obs_key: str,
        explore: bool,
        device: torch.device,
        lookahead: Callable[[LatentState, torch.Tensor], torch.Tensor] | None = None,
        reads_observation: bool = False,
        explore_std_scale: float = 1.0,
    ) -> None:
        if explore and not isinstance(actor, TanhGaussianActor):
            raise ValueError("only the actor explores; a behaviour prior acts with explore=False")
        if explore_std_scale <= 0:
            raise ValueError(f"explore_std_scale must be positive; got {explore_std_scale}")
        self.world_model, self.actor = world_model, actor
        self.obs_key, self.explore, self.device = obs_key, explore, device
        self.lookahead, self.reads_observation = lookahead, reads_observation
        self.explore_std_scale = explore_std_scale
        self._state: LatentState | None = None
        self._action = torch.zeros(1, actor.action_dim, device=device)

    def reset(self) -> None:
        self._state = None
        self._action = torch.zeros_like(self._action)

    @torch.no_grad()
    def act(self, obs: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        if isinstance(obs, Mapping):
            obs = obs[self.obs_key]
        obs_tensor = torch.as_tensor(np.asarray(obs), device=self.device).unsqueeze(0)
        if self.lookahead is not None or not self.reads_observation:
            embed = self.world_model.embed(obs_tensor)
            self._state = self.world_model.rssm.observe_step(
                self._state, self._action, embed, sample=self.explore
            )
        if self.reads_observation:
            inputs = self.world_model.reconstruction_target(obs_tensor)
        else:
            inputs = self._state.features
        if self.explore:
            action = self.actor.sample(inputs, self.explore_std_scale).action
        else:
            action = self.actor.mode(inputs)
        if self.lookahead is not None:
            action = self.lookahead(self._state, action)
        self._action = action
        return action.squeeze(0).cpu().numpy().astype(np.float32)
