"""IQL (Kostrikov et al., ICLR 2022): implicit Q-learning on the offline data, then online
fine-tuning on batches mixing offline and online transitions (the model-free baseline of the
MOTO paper).

``V`` is fitted by expectile regression to the target ``Q``, so it estimates an upper
expectile of in-data action values without querying actions outside the data; the twin ``Q``
regress onto ``r + γ·V(s')``; the actor (a Gaussian head on the encoder) maximises the
advantage-weighted likelihood of the data's actions, ``exp(temperature · (Q − V))`` clipped.
The encoder learns from the ``Q`` loss; ``V`` and the actor read its features detached.
Transitions are replay windows of 2 rows: row 0 holds ``s``, row 1 ``a``, ``r``, ``s'`` and
whether ``s'`` is terminal.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from framework.checkpoint import restore_optimiser
from framework.data.offline import DataSettings
from framework.interfaces import Algorithm, Policy, RunContext
from framework.library.layers import mlp
from framework.library.observed_env import observed_env
from framework.phases import OfflineSettings, OnlineSettings, PhaseRunner, reject_phase_options
from framework.replay import SequenceReplay
from framework.typed_config import typed_settings
from framework_baselines.encoded_policy import HeadPolicy, build_encoded_policy


@dataclass(frozen=True)
class IQLSettings:
    """The learning rule's constants (the paper's values for locomotion/kitchen), network
    sizes of ``Q`` and ``V``, Adam's learning rate, and the online replay's capacity."""

    gamma: float = 0.99
    expectile: float = 0.7
    temperature: float = 3.0
    max_weight: float = 100.0
    target_tau: float = 0.005
    lr: float = 3e-4
    hidden_dim: int = 256
    layers: int = 2
    normalise_states: bool = True
    online_capacity_steps: int = 1_000_000


def expectile_loss(difference: torch.Tensor, expectile: float) -> torch.Tensor:
    """``mean(|τ − 1[d < 0]| · d²)`` of ``d = target − prediction``: above the mean for τ > ½."""
    weight = torch.where(difference < 0, 1.0 - expectile, expectile)
    return (weight * difference.pow(2)).mean()


class IQL(Algorithm):
    """Offline IQL, then ``algo.online.episodes`` of fine-tuning (0: offline only). Results:
    ``offline_success``, ``final_success``, ``best_success``, ``online_episodes``."""

    resumable = True

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        cfg = context.cfg
        reject_phase_options(cfg)
        self.settings = typed_settings(IQLSettings, cfg.algo.iql, "algo.iql")
        self.data_settings = typed_settings(DataSettings, cfg.algo.data, "algo.data")
        self.offline_settings = typed_settings(OfflineSettings, cfg.algo.offline, "algo.offline")
        self.online_settings = typed_settings(OnlineSettings, cfg.algo.online, "algo.online")
        self.observed = observed_env(context.registry, cfg, context.seed)
        self.model = build_encoded_policy(context, self.observed, self.settings.normalise_states)
        features, actions = self.model.encoder.feature_dim, self.observed.action_dim
        hidden = [self.settings.hidden_dim] * self.settings.layers
        self.q = nn.ModuleList(
            mlp([features + actions, *hidden, 1], layer_norm=True) for _ in range(2)
        ).to(context.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.value = mlp([features, *hidden, 1], layer_norm=True).to(context.device)
        lr = self.settings.lr
        self.optimisers = {
            "q": torch.optim.Adam([*self.q.parameters(), *self.model.encoder.parameters()], lr),
            "value": torch.optim.Adam(self.value.parameters(), lr),
            "actor": torch.optim.Adam(self.model.head.parameters(), lr),
        }

    def _q_values(
        self, networks: nn.ModuleList, features: torch.Tensor, action: torch.Tensor
    ) -> torch.Tensor:
        """Each network's ``Q(s, a)``, stacked ``(2, N)``."""
        inputs = torch.cat([features, action], dim=-1)
        return torch.stack([q(inputs).squeeze(-1) for q in networks])

    def _step(self, name: str, loss: torch.Tensor) -> None:
        optimiser = self.optimisers[name]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    # The SequenceLearner protocol (framework.phases).
    def train_step(self, batch: Mapping[str, np.ndarray], phase: str) -> dict[str, float]:
        device, settings, key = self.context.device, self.settings, self.observed.obs_key
        obs = torch.as_tensor(batch[key][:, 0], device=device)
        next_obs = torch.as_tensor(batch[key][:, 1], device=device)
        action = torch.as_tensor(batch["action"][:, 1], dtype=torch.float32, device=device)
        reward = torch.as_tensor(batch["reward"][:, 1], dtype=torch.float32, device=device)
        alive = 1.0 - torch.as_tensor(batch["terminated"][:, 1], device=device).float()

        features = self.model.features(obs)
        state = features.detach()
        with torch.no_grad():
            target_q = self._q_values(self.q_target, state, action).min(0).values
            next_value = self.value(self.model.features(next_obs)).squeeze(-1)
        value = self.value(state).squeeze(-1)
        value_loss = expectile_loss(target_q - value, settings.expectile)
        self._step("value", value_loss)

        q_target = reward + settings.gamma * alive * next_value
        q_loss = 0.5 * (self._q_values(self.q, features, action) - q_target).pow(2).mean()
        self._step("q", q_loss)

        advantage = target_q - value.detach()
        weight = torch.exp(settings.temperature * advantage).clamp(max=settings.max_weight)
        actor_loss = -(weight * self.model.head.log_prob(state, action)).mean()
        self._step("actor", actor_loss)

        with torch.no_grad():
            for target, online in zip(self.q_target.parameters(), self.q.parameters(), strict=True):
                target.lerp_(online, settings.target_tau)
        return {
            "q_loss": float(q_loss.detach()),
            "value_loss": float(value_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "advantage": float(advantage.mean()),
            "value": float(value.detach().mean()),
        }

    def policy(self, explore: bool) -> Policy:
        return HeadPolicy(self.model, self.observed.obs_key.removeprefix("obs."), explore)

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "value": self.value.state_dict(),
            "optimisers": {name: opt.state_dict() for name, opt in self.optimisers.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        for name in ("model", "q", "q_target", "value"):
            getattr(self, name).load_state_dict(state[name])
        for name, optimiser in self.optimisers.items():
            restore_optimiser(optimiser, state["optimisers"][name])

    def run(self) -> dict[str, float]:
        context, key = self.context, self.observed.obs_key
        episodes = self.observed.offline_episodes(self.data_settings)
        if self.model.normaliser is not None:
            self.model.normaliser.fit_episodes(episodes, key)
        offline = SequenceReplay.from_episodes(episodes, 2, seed=context.seed)
        runner = PhaseRunner.for_run(self, self.observed.factory, context)
        phases = ("offline", "online") if self.online_settings.episodes > 0 else ("offline",)
        return runner.run(
            phases,
            offline,
            self.offline_settings,
            self.online_settings.eval_episodes,
            self.online_settings,
            self.settings.online_capacity_steps,
        )
